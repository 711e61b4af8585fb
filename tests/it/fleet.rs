//! A fleet's registry store on the real PostgreSQL, with the real binary (issue 11): `registry
//! push | pull | log`, instances that follow the head within a second, conflicting
//! registrations on two instances, and a store that stops for 30 s.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    KillOnDrop, compatible_order_placed_v3, event_body, example, http, serve_binary,
    shipped_registry_copy,
};
use crate::postgres::{Database, PrivateServer};
use crate::registration::put;

fn contextgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_contextgate"))
}

/// Runs `contextgate registry …`: exit code, stdout, stderr.
fn registry(args: &[&str]) -> (i32, String, String) {
    let output = contextgate().arg("registry").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `contextgate registry push --registry folder --store url extra…`.
fn push(folder: &str, url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["push", "--registry", folder, "--store", url];
    args.extend_from_slice(extra);
    registry(&args)
}

/// An instance of the fleet: `serve` on the in-process bus, following the store at `url`.
fn instance(seed: &Path, url: &str) -> (KillOnDrop, String) {
    let (child, base) = serve_binary(
        contextgate()
            .arg("serve")
            .arg("--registry")
            .arg(seed)
            .args(["--registry-store", url, "--listen", "127.0.0.1:0"])
            .env_remove("CONTEXTGATE_CREDENTIALS")
            .env_remove("CONTEXTGATE_AMQP_URL"),
    );
    (KillOnDrop(child), base)
}

const V3: &str = "/v1/contexts/orders/contracts/OrderPlaced/versions/3";

fn v3_schema(seed: &Path) -> String {
    serde_json::to_string_pretty(&compatible_order_placed_v3(seed)).unwrap()
}

/// Another compatible v3, different from [`v3_schema`].
fn other_v3_schema(seed: &Path) -> String {
    let mut schema = compatible_order_placed_v3(seed);
    schema["description"] = json!("the other instance's v3");
    serde_json::to_string_pretty(&schema).unwrap()
}

/// Posts an `orders/OrderPlaced@<version>` event to `base`: the status.
async fn post_order(base: &str, version: u32, id: &str) -> u16 {
    let data = example("orders/OrderPlaced/examples/v2/store-two-warehouses.json");
    http()
        .post(format!("{base}/v1/contexts/orders/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(event_body(
            &format!("orders/OrderPlaced@{version}"),
            id,
            &data.to_string(),
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn ready(base: &str) -> String {
    http()
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `base` takes `orders/OrderPlaced@3` (202): how long it took.
async fn until_v3_runs(base: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if post_order(base, 3, &format!("probe-{attempt}")).await == 202 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{base} did not run v3 within {within:?}: {}",
            ready(base).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn registry_push_pull_and_log_keep_every_revision_and_refuse_a_moved_head() {
    let database = Database::create("push").await;
    let url = database.url.as_str();
    let dir = shipped_registry_copy();
    let folder = dir.path().to_str().unwrap();
    let first = contextgate::store::files::snapshot(dir.path()).unwrap();
    let n = first.len();

    let (code, out, err) = push(folder, url, &["--author", "ci", "--summary", "first"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("revision 1 ({n} changed file(s))").as_str()),
        "{err}"
    );
    let (code, out, _) = push(folder, url, &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("nothing to push"), "{out}");

    std::fs::write(
        dir.path().join("contracts/orders/OrderPlaced/v3.json"),
        v3_schema(dir.path()),
    )
    .unwrap();
    let (code, out, err) = push(
        folder,
        url,
        &[
            "--expect-revision",
            "1",
            "--author",
            "ci",
            "--summary",
            "OrderPlaced v3",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "revision 2 (1 changed file(s))"),
        "{err}"
    );

    // CI checked against revision 1; the head is 2 now.
    std::fs::write(
        dir.path().join("contracts/orders/OrderPlaced/contract.toml"),
        "kind = \"event\"\nvisibility = \"published\"\ncompatibility = \"backward\"\ndescription = \"changed\"\n",
    )
    .unwrap();
    let (code, _, err) = push(folder, url, &["--expect-revision", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("head is revision 2, not 1"), "{err}");

    // A published version changed: refused by the findings against the head.
    std::fs::write(
        dir.path().join("contracts/orders/OrderPlaced/v3.json"),
        other_v3_schema(dir.path()),
    )
    .unwrap();
    let (code, _, err) = push(folder, url, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("v3.json: error"), "{err}");

    let pulled = tempfile::tempdir().unwrap();
    let target = pulled.path().join("at-1");
    let (code, out, err) = registry(&[
        "pull",
        "--store",
        url,
        "--revision",
        "1",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("revision 1: {n} file(s)")),
        "{out}"
    );
    assert_eq!(contextgate::store::files::snapshot(&target).unwrap(), first);
    let (code, out, _) = registry(&["pull", "--store", url, target.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("revision 2: {} file(s)", n + 1)),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("contracts/orders/OrderPlaced/v3.json")).unwrap(),
        v3_schema(dir.path())
    );
    let (code, _, err) = registry(&["pull", "--store", url, "--revision", "9", "/tmp"]);
    assert_eq!(code, 1, "{err}");

    let (code, out, err) = registry(&["log", "--store", url, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let log: Value = serde_json::from_str(&out).unwrap();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{out}");
    assert_eq!(log[0]["number"], 2);
    assert_eq!(log[0]["parent"], 1);
    assert_eq!(log[0]["author"], "ci");
    assert_eq!(log[0]["instance"], "cli");
    assert_eq!(log[0]["summary"], "OrderPlaced v3");
    assert_eq!(
        log[0]["changes"],
        json!([{
            "path": "contracts/orders/OrderPlaced/v3.json",
            "change": "added",
            "digest": contextgate::store::files::digest(v3_schema(dir.path()).as_bytes()),
        }])
    );
    let findings = log[0]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(
            |finding| finding["file"] == "contracts/orders/OrderPlaced/v3.json"
                && finding["rule"] == "compatible"
                && finding["severity"] == "notice"
        ),
        "the compatibility verdict on v3 is logged: {out}"
    );
    assert_eq!(log[1]["number"], 1);
    assert_eq!(log[1]["parent"], Value::Null);
    let (code, text, _) = registry(&["log", "--store", url]);
    assert_eq!(code, 0);
    assert!(
        text.contains("revision 2 (parent 1)")
            && text.contains("by ci on cli")
            && text.contains("added    contracts/orders/OrderPlaced/v3.json"),
        "{text}"
    );
}

#[tokio::test]
async fn a_registration_on_one_instance_runs_on_every_instance_within_a_second() {
    let database = Database::create("follow").await;
    let seed = shipped_registry_copy();
    // All three start at once: one seeds the empty store, the others run its revision.
    let (_a, a) = instance(seed.path(), &database.url);
    let (_b, b) = instance(seed.path(), &database.url);
    let (_c, c) = instance(seed.path(), &database.url);
    for base in [&a, &b, &c] {
        assert!(
            ready(base).await.contains("registry revision 1 "),
            "{}",
            ready(base).await
        );
        assert_eq!(
            post_order(base, 3, "before").await,
            400,
            "v3 is unknown yet"
        );
    }

    let sent = Instant::now();
    let (status, body) = put(&a, V3, None, &v3_schema(seed.path())).await;
    assert_eq!(status, 201, "{body}");
    let answered = sent.elapsed();
    let (on_b, on_c) = tokio::join!(
        until_v3_runs(&b, Duration::from_secs(1)),
        until_v3_runs(&c, Duration::from_secs(1))
    );
    println!(
        "registration answered in {answered:?}; after the answer B ran it in {on_b:?}, C in {on_c:?}"
    );
    assert_eq!(post_order(&a, 3, "on-a").await, 202);
    for base in [&a, &b, &c] {
        assert!(ready(base).await.contains("registry revision 2 "));
    }
    // The seed folder is not written by a fleet's registration.
    assert!(
        !seed
            .path()
            .join("contracts/orders/OrderPlaced/v3.json")
            .exists()
    );
}

#[tokio::test]
async fn conflicting_registrations_on_two_instances_one_wins_and_the_log_shows_one_revision() {
    let database = Database::create("conflict").await;
    let seed = shipped_registry_copy();
    let (_a, a) = instance(seed.path(), &database.url);
    let (_b, b) = instance(seed.path(), &database.url);
    let mine = v3_schema(seed.path());
    let theirs = other_v3_schema(seed.path());
    let ((on_a, body_a), (on_b, body_b)) =
        tokio::join!(put(&a, V3, None, &mine), put(&b, V3, None, &theirs));
    let mut statuses = [on_a, on_b];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "A: {body_a}, B: {body_b}");
    let winner = if on_a == 201 { &mine } else { &theirs };

    let store = contextgate::store::Store::connect(&database.url)
        .await
        .unwrap();
    assert_eq!(
        store.head().await.unwrap(),
        Some(2),
        "one revision, not two"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    for base in [&a, &b] {
        loop {
            let (status, schema) = crate::registration::get(base, V3, "none").await;
            if status == 200 {
                assert_eq!(schema, serde_json::from_str::<Value>(winner).unwrap());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base} did not run the winner's v3"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn with_the_store_stopped_messages_flow_registrations_get_503_and_every_instance_converges() {
    let server = PrivateServer::start();
    let url = server.url();
    let seed = shipped_registry_copy();
    let (_a, a) = instance(seed.path(), &url);
    let (_b, b) = instance(seed.path(), &url);

    server.stop();
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(10);
    while !ready(&a).await.contains("registry store unreachable") {
        assert!(Instant::now() < deadline, "{}", ready(&a).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = http()
        .put(format!("{a}{V3}"))
        .header("content-type", "application/json")
        .body(v3_schema(seed.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let mut sent = 0;
    while stopped.elapsed() < Duration::from_secs(30) {
        for base in [&a, &b] {
            sent += 1;
            assert_eq!(
                post_order(base, 2, &format!("while-down-{sent}")).await,
                202,
                "messages keep flowing on the registry the instance runs"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    server.start_again();
    let back = Instant::now();
    let (status, body) = loop {
        let (status, body) = put(&a, V3, None, &v3_schema(seed.path())).await;
        if status != 503 || back.elapsed() > Duration::from_secs(20) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, 201, "{body}");
    until_v3_runs(&b, Duration::from_secs(3)).await;
    for base in [&a, &b] {
        let line = ready(base).await;
        assert!(
            line.contains("registry revision 2 (registry store reachable)"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn the_store_is_reached_over_tls_and_its_certificate_is_checked() {
    let (server, ca) = PrivateServer::start_with_tls();
    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let verified = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let dir = shipped_registry_copy();
    let (code, out, err) = registry(&[
        "push",
        "--registry",
        dir.path().to_str().unwrap(),
        "--store",
        &verified,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revision 1 "), "{out}");

    // The server takes TLS connections only.
    let (code, _, err) = registry(&["log", "--store", &format!("{base}?sslmode=disable")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    // A CA that did not sign the server's certificate.
    let (code, _, err) = registry(&[
        "log",
        "--store",
        &format!("{base}?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let (_instance, instance) = instance(dir.path(), &verified);
    assert!(
        ready(&instance)
            .await
            .contains("registry revision 1 (registry store reachable)")
    );
}
