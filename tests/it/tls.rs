//! TLS end to end, with a CA the test makes (rcgen) and hands to the real binary as files:
//! `amqps://` against a TLS listener on a private RabbitMQ node (one that does not ask for a
//! client certificate, one that requires it), https look-ups against an https server the test
//! starts, and the start-up refusals of TLS settings that cannot work (exit 2, which file, why).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use contextgate::bus::amqp::Names;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::broker::{self, Client, PrivateNode};
use crate::helpers::{Fixture, KillOnDrop, event_body, http};

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA, for a server
    /// or a client: its PEM and its key's PEM.
    fn issue(&self, common_name: &str, names: &[&str], client: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages.push(if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        });
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}

/// The files of one test: `ca.pem`, `server.pem`/`server.key` (127.0.0.1 and localhost),
/// `client.pem`/`client.key`, and `other-ca.pem` (a CA that signed none of them).
struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let ca = TestCa::new("contextgate test CA");
        let (server, server_key) = ca.issue("broker", &["127.0.0.1", "localhost"], false);
        let (client, client_key) = ca.issue("contextgate-test-client", &[], true);
        for (name, text) in [
            ("ca.pem", ca.pem.as_str()),
            ("server.pem", &server),
            ("server.key", &server_key),
            ("client.pem", &client),
            ("client.key", &client_key),
            ("other-ca.pem", &TestCa::new("someone else's CA").pem),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `rabbitmq.conf` for a TLS listener on `tls_port` with the test's server certificate; with
/// `require_client_certificate`, a client without one signed by the CA is refused.
fn tls_listener(files: &Files, tls_port: u16, require_client_certificate: bool) -> String {
    let (verify, fail) = if require_client_certificate {
        ("verify_peer", "true")
    } else {
        ("verify_none", "false")
    };
    format!(
        "listeners.ssl.default = {tls_port}\n\
         ssl_options.cacertfile = {}\n\
         ssl_options.certfile = {}\n\
         ssl_options.keyfile = {}\n\
         ssl_options.verify = {verify}\n\
         ssl_options.fail_if_no_peer_cert = {fail}\n",
        files.path("ca.pem").display(),
        files.path("server.pem").display(),
        files.path("server.key").display(),
    )
}

/// The real binary's `serve --listen 127.0.0.1:0 --registry <registry> <args>`, its base URL
/// and the lines it writes on standard error (collected as they come).
fn serve(registry: &Path, args: &[&str]) -> (KillOnDrop, String, Arc<Mutex<Vec<String>>>) {
    serve_with_env(registry, args, &[])
}

/// [`serve`] with environment variables set.
fn serve_with_env(
    registry: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
) -> (KillOnDrop, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(registry)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("CONTEXTGATE_CREDENTIALS")
        .env_remove("CONTEXTGATE_AMQP_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = KillOnDrop(child);
    let base = loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let collected = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            collected.lock().unwrap().push(line);
        }
    });
    (child, base, log)
}

/// `GET /health/ready`: its status and body.
async fn readiness(base: &str) -> (u16, String) {
    let response = http()
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits up to `within` for readiness to answer `status`; the last answer.
async fn wait_readiness(base: &str, status: u16, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let answer = readiness(base).await;
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits up to `within` for a line of `log` that contains every one of `needles`.
fn wait_for_line(log: &Mutex<Vec<String>>, needles: &[&str], within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
            .cloned();
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const INBOX: &str = "inbox.down";
const MESSAGES: usize = 200;

/// Over the node's plain port (the test's own client): declares the gateway's topology under
/// `names`, subscribes `down`'s inbox and publishes [`MESSAGES`] events: the accepted ids.
async fn preload(
    url: &str,
    names: &Names,
    fixture: &Fixture,
) -> std::collections::BTreeSet<String> {
    let client = Client::connect(url).await;
    broker::declare(&client, names, fixture.pipeline().registry()).await;
    client
        .subscribe(
            &format!("{}{INBOX}", names.prefix()),
            &names.inbound(&broker::context("down")),
        )
        .await;
    broker::publish_backlog(&client, names, "tls", MESSAGES).await
}

/// The gateway's connections to `node` as rabbitmqctl lists them: name, ssl, peer_cert_subject.
fn gateway_connections(node: &PrivateNode) -> Vec<String> {
    node.ctl_output(&[
        "list_connections",
        "client_properties",
        "ssl",
        "peer_cert_subject",
    ])
    .lines()
    // Connection names are `contextgate <instance> consume|publish`.
    .filter(|line| {
        line.contains("contextgate ") && (line.contains(" consume") || line.contains(" publish"))
    })
    .map(str::to_owned)
    .collect()
}

#[tokio::test]
async fn amqps_carries_a_route_end_to_end_and_a_broker_the_ca_file_does_not_vouch_for_is_refused() {
    let files = Files::new();
    let node = PrivateNode::start_with("tls", 5791, &tls_listener(&files, 5792, false));
    let amqps = "amqps://guest:guest@127.0.0.1:5792/%2f?heartbeat=5";
    let fixture = Fixture::new("conformist", None, "");
    let names = Names::new("tls.");
    let accepted = preload(&node.url(), &names, &fixture).await;

    let ca = files.path("ca.pem");
    let (_gateway, base, _log) = serve(
        fixture.root(),
        &[
            "--amqp-url",
            amqps,
            "--amqp-prefix",
            "tls.",
            "--amqp-ca-file",
            ca.to_str().unwrap(),
        ],
    );
    let (status, body) = wait_readiness(&base, 200, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "the gateway connected over amqps: {body}");
    let counts = broker::ids_in(
        &node.url(),
        &format!("tls.{INBOX}"),
        MESSAGES,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    broker::assert_exactly_once(&accepted, &counts, "through the route over amqps");
    let connections = gateway_connections(&node);
    assert_eq!(connections.len(), 2, "{connections:?}");
    assert!(
        connections.iter().all(|line| line.contains("\ttrue")),
        "both of the gateway's connections use TLS: {connections:?}"
    );

    // The same broker, but the CA file names a CA that did not sign its certificate (and the
    // system's roots do not know the test's CA either).
    let other = files.path("other-ca.pem");
    let (_refused, base, log) = serve(
        fixture.root(),
        &[
            "--amqp-url",
            amqps,
            "--amqp-prefix",
            "tls-refused.",
            "--amqp-ca-file",
            other.to_str().unwrap(),
        ],
    );
    let line = wait_for_line(
        &log,
        &["Broker session lost", "certificate"],
        Duration::from_secs(15),
    );
    let seen = log.lock().unwrap().join("\n");
    let line = line.unwrap_or_else(|| panic!("no log line says why it cannot connect:\n{seen}"));
    assert!(line.contains("UnknownIssuer"), "{line}");
    let (status, body) = readiness(&base).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not connected to the broker"), "{body}");
    // It keeps trying (with backoff) rather than exiting.
    std::thread::sleep(Duration::from_secs(2));
    let attempts = log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("Broker session lost"))
        .count();
    assert!(attempts >= 2, "it retried: {attempts} attempts");

    // SSL_CERT_FILE replaces the system's roots (README: to trust only one CA).
    let (_pinned, base, _log) = serve_with_env(
        fixture.root(),
        &["--amqp-url", amqps, "--amqp-prefix", "tls-pinned."],
        &[("SSL_CERT_FILE", &ca)],
    );
    let (status, body) = wait_readiness(&base, 200, Duration::from_secs(20)).await;
    assert_eq!(status, 200, "SSL_CERT_FILE named the CA: {body}");
}

#[tokio::test]
async fn a_broker_that_requires_a_client_certificate_takes_the_gateways() {
    let files = Files::new();
    let node = PrivateNode::start_with("tls-peer", 5793, &tls_listener(&files, 5794, true));
    let amqps = "amqps://guest:guest@127.0.0.1:5794/%2f?heartbeat=5";
    let fixture = Fixture::new("conformist", None, "");
    let ca = files.path("ca.pem");
    let (certificate, key) = (files.path("client.pem"), files.path("client.key"));

    // Without a client certificate the broker ends the handshake.
    let (_refused, base, log) = serve(
        fixture.root(),
        &[
            "--amqp-url",
            amqps,
            "--amqp-prefix",
            "no-cert.",
            "--amqp-ca-file",
            ca.to_str().unwrap(),
        ],
    );
    // Over TLS 1.3 the broker's alert comes after the client's side of the handshake: an
    // attempt may see it (`CertificateRequired`) or only the closed connection, so some
    // attempt within a few retries names it.
    let line = wait_for_line(
        &log,
        &["Broker session lost", "CertificateRequired"],
        Duration::from_secs(15),
    );
    let seen = log.lock().unwrap().join("\n");
    assert!(
        line.is_some(),
        "no log line says why it cannot connect:\n{seen}"
    );
    assert_eq!(readiness(&base).await.0, 503);

    // With one, signed by the CA the broker trusts, messages go through.
    let names = Names::new("tls.");
    let accepted = preload(&node.url(), &names, &fixture).await;
    let (_gateway, base, _log) = serve(
        fixture.root(),
        &[
            "--amqp-url",
            amqps,
            "--amqp-prefix",
            "tls.",
            "--amqp-ca-file",
            ca.to_str().unwrap(),
            "--amqp-client-cert",
            certificate.to_str().unwrap(),
            "--amqp-client-key",
            key.to_str().unwrap(),
        ],
    );
    let (status, body) = wait_readiness(&base, 200, Duration::from_secs(20)).await;
    assert_eq!(
        status, 200,
        "the gateway connected with its certificate: {body}"
    );
    let counts = broker::ids_in(
        &node.url(),
        &format!("tls.{INBOX}"),
        MESSAGES,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    broker::assert_exactly_once(&accepted, &counts, "through the route over amqps");
    let connections = gateway_connections(&node);
    assert!(
        connections
            .iter()
            .any(|line| line.contains("CN=contextgate-test-client")),
        "the broker saw the gateway's certificate: {connections:?}"
    );
}

/// An https server on 127.0.0.1 with the certificate `server.pem` of `files`, answering
/// `GET /customers/{id}` with `{"name": "name of <id>"}`: its base URL.
async fn spawn_https_stub(files: &Files) -> String {
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(files.path("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(files.path("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(
        "/customers/{id}",
        get(|UrlPath(id): UrlPath<String>| async move {
            axum::Json(json!({"name": format!("name of {id}")}))
        }),
    );
    let service = TowerToHyperService::new(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, service) = (acceptor.clone(), service.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    base
}

const SCRIPT: &str =
    r#"fn translate(data, meta) { #{ id: meta.lookups.customer.name, total: data.n } }"#;

/// Posts one `up/Thing@1` to the gateway at `base`: the report of its one route.
async fn post_thing(base: &str, id: &str) -> Value {
    let response = http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(event_body(
            "up/Thing@1",
            "e-1",
            &json!({"id": id, "n": 3}).to_string(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["routes"][0].clone()
}

#[tokio::test]
async fn an_https_look_up_trusts_the_lookup_ca_file() {
    let files = Files::new();
    let base = spawn_https_stub(&files).await;
    let fixture = Fixture::new(
        "enrich",
        Some(SCRIPT),
        &format!(
            "[routes.on_failure]\nenrich = \"dead-letter\"\n\
             [[routes.lookups]]\nname = \"customer\"\nurl = \"{base}customers/{{/id}}\"\n"
        ),
    );
    fixture.allow(&base);

    let ca = files.path("ca.pem");
    let (_gateway, gateway, _log) =
        serve(fixture.root(), &["--lookup-ca-file", ca.to_str().unwrap()]);
    let report = post_thing(&gateway, "c-1").await;
    assert_eq!(report["outcome"], "forward", "{report}");
    let inbox = http()
        .get(format!("{gateway}/v1/contexts/down/inbox"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let inbox: Vec<Value> = serde_json::from_slice(&inbox).unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["data"], json!({"id": "name of c-1", "total": 3}));

    // `translate` makes the look-up too, trusting the same file.
    let event = fixture.root().join("event.json");
    std::fs::write(
        &event,
        event_body(
            "up/Thing@1",
            "e-3",
            &json!({"id": "c-3", "n": 3}).to_string(),
        ),
    )
    .unwrap();
    let mut translate = Command::new(env!("CARGO_BIN_EXE_contextgate"));
    translate
        .args(["translate", "--route", "up-to-down", "--registry"])
        .arg(fixture.root())
        .arg("--lookup-ca-file")
        .arg(&ca)
        .arg(&event);
    // Off the runtime's thread: the https server answers on it meanwhile.
    let output = tokio::task::spawn_blocking(move || translate.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("name of c-3"), "{stdout}");

    // Without the CA file the same look-up is refused, and the reason says why.
    let (_untrusting, gateway, _log) = serve(fixture.root(), &[]);
    let report = post_thing(&gateway, "c-2").await;
    assert_eq!(report["outcome"], "dead-letter", "{report}");
    let reason = report["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not connect") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
}

/// `serve` with `args` on the shipped registry: its exit code and standard error. It must exit
/// by itself (a refused setting), within 10 s.
fn refused(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
        .arg(crate::helpers::repo())
        .args(args)
        .env_remove("CONTEXTGATE_CREDENTIALS")
        .env_remove("CONTEXTGATE_AMQP_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} did not exit: it should have refused its settings");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tls_settings_that_cannot_work_stop_serve_with_the_file_and_why() {
    let files = Files::new();
    let path = |name: &str| files.path(name).to_str().unwrap().to_owned();
    std::fs::write(files.path("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        files.path("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    // The key of another certificate than the one given.
    let other = TestCa::new("x").issue("someone", &[], true);
    std::fs::write(files.path("other.key"), &other.1).unwrap();
    let amqps = "amqps://guest:guest@127.0.0.1:5671/%2f";
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-ca-file".into(),
                path("missing.pem"),
            ],
            vec![path("missing.pem"), "cannot read".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-ca-file".into(),
                path("garbage.pem"),
            ],
            vec![path("garbage.pem"), "no PEM certificate".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-ca-file".into(),
                path("broken.pem"),
            ],
            vec![path("broken.pem"), "not usable".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-client-cert".into(),
                path("client.pem"),
                "--amqp-client-key".into(),
                path("other.key"),
            ],
            vec![path("other.key"), "not the key of the certificate".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-client-cert".into(),
                path("client.pem"),
                "--amqp-client-key".into(),
                path("ca.pem"),
            ],
            vec![path("ca.pem"), "no PEM private key".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                amqps.into(),
                "--amqp-client-cert".into(),
                path("client.pem"),
            ],
            vec!["--amqp-client-key".into()],
        ),
        (
            vec![
                "--amqp-url".into(),
                "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                "--amqp-ca-file".into(),
                path("ca.pem"),
            ],
            vec!["amqp://".into(), "use amqps://".into()],
        ),
        (
            vec!["--amqp-ca-file".into(), path("ca.pem")],
            vec!["no --amqp-url".into()],
        ),
        (
            vec!["--lookup-ca-file".into(), path("garbage.pem")],
            vec![path("garbage.pem"), "no PEM certificate".into()],
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = refused(&args);
        assert_eq!(code, 2, "serve {args:?}: {stderr}");
        for needle in &expected {
            assert!(
                stderr.contains(needle.as_str()),
                "serve {args:?}: expected {needle:?} in {stderr}"
            );
        }
    }
}
