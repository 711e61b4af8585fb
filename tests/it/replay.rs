//! Archive and replay (issue 14): a window of a context's archive replayed through the routes as
//! they are now — in process through the file archive under `--data-dir`, and on RabbitMQ
//! through the context's archive stream — with idempotent routes dropping what they already
//! forwarded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use contextgate::bus::{Bus, InProcessBus};
use contextgate::gateway::{Gateway, Options};
use serde_json::{Value, json};

use crate::helpers::{Fixture, event_body, http, serve_gateway, write};

/// Dead-letters every input with `n` over 5 — the bug the replay comes after.
const BROKEN: &str = r#"
fn translate(input, meta) {
    if input.n > 5 { throw "n over 5 is not handled yet"; }
    #{ id: input.id, total: input.n }
}
"#;
/// The fix.
const FIXED: &str = r#"
fn translate(input, meta) {
    #{ id: input.id, total: input.n }
}
"#;

/// The fixture's anti-corruption route `up-to-down` with a 10-minute dedup window.
pub(crate) fn idempotent_route() -> Fixture {
    let fixture = Fixture::new("anti-corruption", Some(BROKEN), "dedup = \"10m\"");
    fixture.append("\n[contexts.up.archive]\nmax_age = \"1d\"\n");
    fixture
}

pub(crate) fn fix(fixture: &Fixture) {
    write(fixture.root(), "translators/down/map.rhai", FIXED);
}

async fn post_input(base: &str, n: u32) {
    let body = event_body(
        "up/Thing@1",
        &format!("e-{n}"),
        &json!({"id": format!("t-{n}"), "n": n}).to_string(),
    );
    let answer = http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
}

/// POSTs JSON: the status and the answer as JSON.
pub(crate) async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let answer = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// GETs JSON.
pub(crate) async fn get_json(url: &str) -> Value {
    let text = http().get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

async fn take_inbox(base: &str) -> Vec<Value> {
    serde_json::from_value(get_json(&format!("{base}/v1/contexts/down/inbox?max=1000")).await)
        .unwrap()
}

/// Starts a replay and waits for its end: the job as it ended.
pub(crate) async fn replay_to_the_end(base: &str, request: Value) -> Value {
    let (status, job) = post_json(&format!("{base}/v1/replays"), &request).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    for _ in 0..600 {
        let job = get_json(&format!("{base}/v1/replays/{id}")).await;
        if job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replay {id} did not end within a minute");
}

fn ids(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|message| message["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_window_replayed_after_a_fix_sends_the_dead_letters_through_and_drops_duplicates()
 {
    let fixture = idempotent_route();
    let data = tempfile::tempdir().unwrap();
    let gateway = Gateway::with_options(
        fixture.pipeline(),
        Bus::InProcess(InProcessBus::default()),
        None,
        Options {
            data_dir: Some(data.path().to_path_buf()),
        },
    );
    let base = serve_gateway(gateway.clone()).await;
    for n in 1..=10 {
        post_input(&base, n).await;
    }
    let first = take_inbox(&base).await;
    assert_eq!(
        first.len(),
        5,
        "n 1 to 5 went through, 6 to 10 are dead letters"
    );
    assert!(
        data.path().join("archive/up").is_dir(),
        "the inputs are archived under --data-dir"
    );

    // A dry run says what the window holds.
    let (status, survey) = post_json(
        &format!("{base}/v1/replays?dry_run=true"),
        &json!({"context": "up", "from": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{survey}");
    assert_eq!(survey["total"], 10, "{survey}");
    assert_eq!(survey["by_type"]["up.Thing"], 10, "{survey}");
    assert_eq!(survey["by_route"]["up-to-down"], 10, "{survey}");

    fix(&fixture);
    assert!(gateway.reload().await.unwrap(), "the fix is loaded");
    let job = replay_to_the_end(&base, json!({"context": "up", "from": "1h", "rate": 1000})).await;
    assert_eq!(job["status"], "done", "{job}");
    let counts = &job["counts"];
    assert_eq!(counts["read"], 10, "{job}");
    assert_eq!(
        counts["forwarded"], 5,
        "the dead letters went through: {job}"
    );
    assert_eq!(
        counts["duplicate"], 5,
        "what went through before is dropped: {job}"
    );
    assert_eq!(counts["dead_lettered"], 0, "{job}");
    assert_eq!(
        job["spec"]["adaptive"], true,
        "adaptive unless asked: {job}"
    );
    assert_eq!(
        job["pace"], 550,
        "a job starts at a tenth of its rate but at least 500/s, and one batch held at once \
         speeds it up by a twentieth of its rate: {job}"
    );
    let replayed = take_inbox(&base).await;
    assert_eq!(replayed.len(), 5);
    let totals: BTreeSet<i64> = replayed
        .iter()
        .map(|message| message["data"]["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, (6..=10).collect(), "the ones that failed before");
    for message in &replayed {
        assert_eq!(message["contextgatereplay"], job["id"], "{message}");
    }

    // Without dedup everything comes out again, with the ids it had the first time.
    let again = replay_to_the_end(
        &base,
        json!({"context": "up", "from": "1h", "rate": 1000, "dedup": false, "adaptive": false}),
    )
    .await;
    assert_eq!(again["counts"]["forwarded"], 10, "{again}");
    assert_eq!(again["pace"], 1000, "a fixed rate is kept: {again}");
    let all = take_inbox(&base).await;
    assert_eq!(all.len(), 10);
    assert!(
        ids(&first).is_subset(&ids(&all)),
        "same output ids as the first time"
    );
    assert!(ids(&replayed).is_subset(&ids(&all)));

    // A live repeat of an input the route forwarded is dropped too (dedup on the live path).
    post_input(&base, 1).await;
    assert!(
        take_inbox(&base).await.is_empty(),
        "a repeat within the window is a duplicate"
    );

    // The jobs are kept under the data directory, and listed.
    let jobs = get_json(&format!("{base}/v1/replays")).await;
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    assert!(
        data.path()
            .join(format!("replays/{}.json", job["id"].as_str().unwrap()))
            .is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_without_a_data_directory_a_replay_is_refused_with_the_reason() {
    let fixture = idempotent_route();
    let gateway = Gateway::new(fixture.pipeline(), Bus::InProcess(InProcessBus::default()));
    let base = serve_gateway(Arc::clone(&gateway)).await;
    let (status, problem) = post_json(
        &format!("{base}/v1/replays"),
        &json!({"context": "up", "from": "1h"}),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("--data-dir"),
        "{problem}"
    );
}

/// A gateway on RabbitMQ with its HTTP API, over `fixture`, and a queue bound to `down.in`.
pub(crate) struct OnBroker {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) base: String,
    pub(crate) client: crate::broker::Client,
    pub(crate) inbox: String,
    pub(crate) names: contextgate::bus::amqp::Names,
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    _data: tempfile::TempDir,
    _cleanup: crate::broker::Cleanup,
}

async fn on_broker(fixture: &Fixture, tag: &str) -> OnBroker {
    on_broker_at(fixture, tag, &crate::broker::amqp_url()).await
}

/// A gateway with a data directory, on the broker at `url`, serving the API; `down`'s inbox
/// subscribed.
pub(crate) async fn on_broker_at(fixture: &Fixture, tag: &str, url: &str) -> OnBroker {
    use contextgate::bus::AmqpBus;
    use contextgate::bus::amqp::Names;
    let pipeline = fixture.pipeline();
    let url = url.to_owned();
    let prefix = crate::broker::unique_prefix(tag);
    let names = Names::new(prefix.clone());
    let cleanup = crate::broker::Cleanup::new(&url, &names, pipeline.registry());
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    let client = crate::broker::Client::connect(&url).await;
    let data = tempfile::tempdir().unwrap();
    let bus = Arc::new(AmqpBus::new(crate::broker::settings(&url, &prefix)));
    let gateway = Gateway::with_options(
        pipeline,
        Bus::Amqp(bus.clone()),
        None,
        Options {
            data_dir: Some(data.path().to_path_buf()),
        },
    );
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let pipelines = gateway.pipelines();
    tokio::spawn(async move { bus.run(pipelines, stopping).await });
    assert!(
        gateway.settled(Duration::from_secs(20)).await,
        "the gateway did not get ready on RabbitMQ at {url}"
    );
    client
        .subscribe(&inbox, &names.inbound(&crate::broker::context("down")))
        .await;
    let base = serve_gateway(gateway.clone()).await;
    OnBroker {
        gateway,
        base,
        client,
        inbox,
        names,
        stop,
        _data: data,
        _cleanup: cleanup,
    }
}

fn message_id(message: &lapin::message::BasicGetMessage) -> String {
    message
        .delivery
        .properties
        .message_id()
        .as_ref()
        .expect("outputs carry their id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_window_replayed_after_a_fix_sends_the_dead_letters_through_and_drops_duplicates()
 {
    let fixture = idempotent_route();
    let live = on_broker(&fixture, "replay-fix").await;
    let base = &live.base;
    for n in 1..=10 {
        post_input(base, n).await;
    }
    // An event no route takes reaches the archive through the unrouted consumer.
    let body = event_body(
        "up/Published@1",
        "p-1",
        &json!({"id": "p", "n": 1}).to_string(),
    );
    let answer = http()
        .post(format!("{base}/v1/contexts/up/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let first = live
        .client
        .take(&live.inbox, 5, Duration::from_secs(20))
        .await;
    live.client
        .assert_empty(&live.inbox, Duration::from_millis(500))
        .await;
    let first_ids: BTreeSet<String> = first.iter().map(message_id).collect();

    // Wait for the unrouted event's copy, then a dry run sees all eleven.
    let mut survey = Value::Null;
    for _ in 0..50 {
        let (status, found) = post_json(
            &format!("{base}/v1/replays?dry_run=true"),
            &json!({"context": "up", "from": "1h"}),
        )
        .await;
        assert_eq!(status, 200, "{found}");
        survey = found;
        if survey["total"] == 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(survey["total"], 11, "{survey}");
    assert_eq!(survey["by_type"]["up.Thing"], 10, "{survey}");
    assert_eq!(survey["skipped"], 1, "the event no route takes: {survey}");

    fix(&fixture);
    assert!(live.gateway.reload().await.unwrap());
    assert!(live.gateway.settled(Duration::from_secs(20)).await);
    let job = replay_to_the_end(base, json!({"context": "up", "from": "1h", "rate": 1000})).await;
    assert_eq!(job["status"], "done", "{job}");
    let counts = &job["counts"];
    assert_eq!(
        counts["read"], 11,
        "the survey's marker is not an input: {job}"
    );
    assert_eq!(counts["forwarded"], 5, "{job}");
    assert_eq!(counts["duplicate"], 5, "{job}");
    assert_eq!(counts["skipped"], 1, "{job}");
    let replayed = live
        .client
        .take(&live.inbox, 5, Duration::from_secs(20))
        .await;
    live.client
        .assert_empty(&live.inbox, Duration::from_millis(500))
        .await;
    for message in &replayed {
        assert_eq!(
            crate::broker::header(message, "cloudEvents_contextgatereplay").as_deref(),
            job["id"].as_str(),
            "outputs name the replay job"
        );
        assert!(!first_ids.contains(&message_id(message)));
    }

    let again = replay_to_the_end(
        base,
        json!({"context": "up", "from": "1h", "rate": 1000, "dedup": false}),
    )
    .await;
    assert_eq!(again["counts"]["forwarded"], 10, "{again}");
    let all = live
        .client
        .take(&live.inbox, 10, Duration::from_secs(20))
        .await;
    let all_ids: BTreeSet<String> = all.iter().map(message_id).collect();
    assert_eq!(all_ids.len(), 10);
    assert!(
        first_ids.is_subset(&all_ids),
        "the inputs forwarded the first time come out with the same ids"
    );
    live.stop.send_replace(true);
    let _ = live.names;
}

/// How many inputs the archive of `up` holds now, by a dry run.
async fn archived(base: &str) -> u64 {
    let (status, survey) = post_json(
        &format!("{base}/v1/replays?dry_run=true"),
        &json!({"context": "up", "from": "30d"}),
    )
    .await;
    assert_eq!(status, 200, "{survey}");
    survey["total"].as_u64().unwrap()
}

async fn publish_inputs(live: &OnBroker, from: u32, count: u32) {
    let names = &live.names;
    for n in from..from + count {
        let data = json!({"id": format!("t-{n}"), "n": n, "pad": "x".repeat(1_000)}).to_string();
        live.client
            .publish_stored(
                &names.outbound(&crate::broker::context("up")),
                "up.Thing",
                data.as_bytes(),
                crate::broker::binary_event("up/Thing@1", &format!("e-{n}")),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_the_archive_keeps_to_its_max_bytes_and_its_max_age() {
    // By size: 64 KiB (segments of 64 KiB); 200 inputs of about 1 KiB overflow it.
    let by_size = Fixture::new("conformist", None, "");
    by_size.append("\n[contexts.up.archive]\nmax_bytes = \"64KiB\"\n");
    let live = on_broker(&by_size, "archive-bytes").await;
    publish_inputs(&live, 0, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = archived(&live.base).await;
    assert!(
        (1..200).contains(&kept),
        "the archive keeps to 64 KiB (whole segments): {kept} of 200 kept"
    );
    live.stop.send_replace(true);

    // By age: 2 s, with room for everything (512 KiB, segments of 64 KiB); what is older than
    // 2 s goes when a segment is full.
    let by_age = Fixture::new("conformist", None, "");
    by_age.append("\n[contexts.up.archive]\nmax_age = \"2s\"\nmax_bytes = \"512KiB\"\n");
    let live = on_broker(&by_age, "archive-age").await;
    publish_inputs(&live, 0, 150).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(archived(&live.base).await, 150, "nothing is over the size");
    tokio::time::sleep(Duration::from_secs(3)).await;
    publish_inputs(&live, 150, 150).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = archived(&live.base).await;
    assert!(
        kept < 200,
        "the first 150 (over 2 s old) are gone but for a part segment: {kept} of 300 kept"
    );
    live.stop.send_replace(true);
}

/// `serve` on RabbitMQ over `root`, with `data` as its data directory.
fn serve_on_broker(
    root: &std::path::Path,
    data: &std::path::Path,
    prefix: &str,
) -> (crate::helpers::KillOnDrop, String) {
    let (child, base) = crate::helpers::serve_binary(
        std::process::Command::new(env!("CARGO_BIN_EXE_contextgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", prefix])
            .arg("--registry")
            .arg(root)
            .arg("--data-dir")
            .arg(data)
            .env("CONTEXTGATE_AMQP_URL", crate::broker::amqp_url()),
    );
    (crate::helpers::KillOnDrop(child), base)
}

/// Waits until the gateway at `base` answers ready (on RabbitMQ: connected, topology declared).
pub(crate) async fn wait_ready(base: &str) {
    for _ in 0..400 {
        if let Ok(answer) = http().get(format!("{base}/health/ready")).send().await
            && answer.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway at {base} did not get ready on RabbitMQ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cut_off_by_a_sigkill_resumes_after_the_restart_and_loses_nothing() {
    const N: usize = 2_000;
    let fixture = Fixture::new("conformist", None, "");
    fixture.append("\n[contexts.up.archive]\nmax_age = \"1d\"\n");
    let url = crate::broker::amqp_url();
    let prefix = crate::broker::unique_prefix("replay-kill");
    let names = contextgate::bus::amqp::Names::new(prefix.clone());
    let cleanup = crate::broker::Cleanup::new(&url, &names, fixture.pipeline().registry());
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    let data = tempfile::tempdir().unwrap();
    let client = crate::broker::Client::connect(&url).await;

    let (gateway, base) = serve_on_broker(fixture.root(), data.path(), &prefix);
    wait_ready(&base).await;
    client
        .subscribe(&inbox, &names.inbound(&crate::broker::context("down")))
        .await;
    let sent = crate::broker::publish_backlog(&client, &names, "k", N).await;
    client.take(&inbox, N, Duration::from_secs(60)).await;

    let (status, job) = post_json(
        &format!("{base}/v1/replays"),
        &json!({"context": "up", "from": "1h", "rate": 1000, "dedup": false}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = get_json(&format!("{base}/v1/replays/{id}")).await;
    assert_eq!(before["status"], "running", "cut off mid-replay: {before}");
    drop(gateway); // SIGKILL

    let (_gateway, base) = serve_on_broker(fixture.root(), data.path(), &prefix);
    wait_ready(&base).await;
    let mut job = Value::Null;
    for _ in 0..600 {
        job = get_json(&format!("{base}/v1/replays/{id}")).await;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "done", "{job}");
    assert!(job["resumed"].as_u64().unwrap() >= 1, "{job}");
    let replayed = crate::broker::ids_in(
        &url,
        &inbox,
        N,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .await;
    let lost: Vec<_> = sent
        .iter()
        .filter(|id| !replayed.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {N}: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        replayed.keys().all(|id| sent.contains(id)),
        "nothing came out that was not sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_with_headers_a_stream_cannot_hold_are_archived_and_break_no_connection() {
    // RabbitMQ 3.10's streams close the publishing connection on a decimal header: neither the
    // producer's connection (routed inputs reach the archive through the gateway's archiver,
    // never straight from the outbound exchange) nor the gateway's session (the unrouted
    // consumer's and the archiver's copies keep such headers as JSON) may break.
    let fixture = idempotent_route();
    let live = on_broker(&fixture, "replay-odd-headers").await;
    let odd = |event_type: &str, id: &str| {
        let properties = crate::broker::binary_event(event_type, id);
        let mut headers = properties.headers().clone().unwrap();
        headers.insert(
            "price".into(),
            lapin::types::AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: 2,
                value: 150,
            }),
        );
        properties.with_headers(headers)
    };
    let outbound = live.names.outbound(&crate::broker::context("up"));
    let inputs = [
        (
            "up/Published@1",
            "up.Published",
            "odd-1",
            r#"{"id":"p","n":1}"#,
        ),
        ("up/Thing@1", "up.Thing", "odd-2", r#"{"id":"t","n":2}"#),
        ("up/Thing@1", "up.Thing", "odd-3", r#"{"id":"u","n":3}"#),
    ];
    for (n, (event_type, key, id, body)) in inputs.into_iter().enumerate() {
        // Each publish is confirmed on the same connection: a closed one fails the next.
        live.client
            .publish_stored(&outbound, key, body.as_bytes(), odd(event_type, id))
            .await;
        let mut survey = Value::Null;
        for _ in 0..100 {
            let (status, found) = post_json(
                &format!("{}/v1/replays?dry_run=true", live.base),
                &json!({"context": "up", "from": "1h"}),
            )
            .await;
            assert_eq!(status, 200, "{found}");
            survey = found;
            if survey["total"] == n + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(survey["total"], n + 1, "each archived once: {survey}");
    }
    let Bus::Amqp(bus) = live.gateway.bus() else {
        unreachable!("on_broker runs on RabbitMQ")
    };
    assert_eq!(bus.status().reconnects(), 0, "the session stayed up");
    live.stop.send_replace(true);
}

/// An idempotent route's window holds across a fleet and outlives an instance: the keys one
/// instance forwarded are duplicates on an instance started after it, which never saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_routes_window_is_shared_by_the_fleet_and_outlives_an_instance() {
    use contextgate::bus::amqp::{Names, fleet::InstanceId};

    use crate::broker::{self, Cleanup, Client};
    let fixture = Fixture::new("conformist", None, crate::unroutable::IDEMPOTENT);
    let pipeline = fixture.pipeline();
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix("dedup-fleet");
    let names = Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    let client = Client::connect(&url).await;
    broker::declare(&client, &names, pipeline.registry()).await;
    client
        .subscribe(&inbox, &names.inbound(&broker::context("down")))
        .await;
    let instance = |id: &str| {
        let mut settings = broker::settings(&url, &prefix);
        settings.instance = InstanceId::parse(id).unwrap();
        settings
    };
    let (settle, idle) = (Duration::from_secs(2), Duration::from_secs(20));

    let a = broker::start(pipeline.clone(), instance("dedup-a")).await;
    let first = broker::publish_backlog(&client, &names, "d", 200).await;
    let out = broker::ids_in(&url, &inbox, 200, settle, idle).await;
    assert_eq!(out.keys().cloned().collect::<BTreeSet<_>>(), first);
    assert!(out.values().all(|&n| n == 1), "each once: {out:?}");
    // Instance `a` confirmed them; `b` starts after and takes over alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = broker::start(pipeline.clone(), instance("dedup-b")).await;
    a.stop().await;

    let again = broker::publish_backlog(&client, &names, "d", 200).await;
    assert_eq!(again, first, "the same ids again");
    let new = broker::publish_backlog(&client, &names, "n", 100).await;
    let out = broker::ids_in(&url, &inbox, 100, settle, idle).await;
    assert_eq!(
        out.keys().cloned().collect::<BTreeSet<_>>(),
        new,
        "only the new ids come out: what `a` forwarded is a duplicate on `b`"
    );
    assert!(out.values().all(|&n| n == 1), "each once: {out:?}");
    assert_eq!(client.count(&names.route_queue("up-to-down")).await, 0);
    let route = contextgate::registry::RouteName::parse("up-to-down").unwrap();
    assert_eq!(b.bus.windows().len(&route), 300, "b holds every key");
    b.stop().await;
}

/// In process, a replay cut off by a SIGKILL resumes from its stored batch when `serve` starts
/// again on the same data directory, and every archived input is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_replay_cut_off_by_a_sigkill_resumes_after_the_restart() {
    const N: u32 = 600;
    let fixture = Fixture::new("conformist", None, "");
    let data = tempfile::tempdir().unwrap();
    let serve = || {
        let (child, base) = crate::helpers::serve_binary(
            std::process::Command::new(env!("CARGO_BIN_EXE_contextgate"))
                .args(["serve", "--listen", "127.0.0.1:0", "--registry"])
                .arg(fixture.root())
                .arg("--data-dir")
                .arg(data.path())
                .env_remove("CONTEXTGATE_AMQP_URL")
                .env_remove("CONTEXTGATE_REGISTRY_STORE"),
        );
        (crate::helpers::KillOnDrop(child), base)
    };
    let (gateway, base) = serve();
    for n in 1..=N {
        post_input(&base, n).await;
    }
    let mut first = 0;
    while first < N as usize {
        let taken = take_inbox(&base).await.len();
        assert!(taken > 0, "{first} of {N} forwarded");
        first += taken;
    }
    let (status, job) = post_json(
        &format!("{base}/v1/replays"),
        &json!({"context": "up", "from": "1h", "rate": 200, "dedup": false}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = get_json(&format!("{base}/v1/replays/{id}")).await;
    assert_eq!(before["status"], "running", "cut off mid-replay: {before}");
    let done_before = before["counts"]["forwarded"].as_u64().unwrap();
    assert!(done_before > 0 && done_before < u64::from(N), "{before}");
    drop(gateway); // SIGKILL

    let (_gateway, base) = serve();
    let mut job = Value::Null;
    for _ in 0..300 {
        job = get_json(&format!("{base}/v1/replays/{id}")).await;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["resumed"], 1, "{job}");
    let counts = &job["counts"];
    // The batch cut off goes again: at least every input, never fewer.
    assert!(counts["read"].as_u64().unwrap() >= u64::from(N), "{job}");
    assert!(
        counts["forwarded"].as_u64().unwrap() >= u64::from(N),
        "{job}"
    );
    // What the restarted process forwarded is in its inbox: everything from the stored batch on.
    let after = take_inbox(&base).await.len() as u64;
    assert!(
        after + done_before >= u64::from(N),
        "{after} after the restart and {done_before} before cover the {N}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_many_chunks_long_is_surveyed_while_it_is_written_and_replayed_whole() {
    // A stream consumer started at an offset or a second first delivers the rest of a chunk,
    // and takes no more than its prefetch without acks: a window of thousands of inputs, dry-run
    // while the archiver writes hundreds a second, then replayed in batches of 100.
    let fixture = Fixture::new("conformist", None, "");
    let live = on_broker(&fixture, "replay-chunks").await;
    let n = 3_000u64;
    crate::broker::publish_backlog(&live.client, &live.names, "c", n as usize).await;
    let mut total = 0;
    let mut surveys = 0;
    let started = std::time::Instant::now();
    while total < n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the archive got {total} of {n} inputs in a minute"
        );
        let (status, survey) = post_json(
            &format!("{}/v1/replays?dry_run=true", live.base),
            &json!({"context": "up", "from": "1h"}),
        )
        .await;
        assert_eq!(
            status, 200,
            "a dry run while the archive is written: {survey}"
        );
        total = survey["total"].as_u64().expect("a dry run's total");
        surveys += 1;
    }
    assert_eq!(total, n, "each input archived once");
    live.client
        .take(&live.inbox, n as usize, Duration::from_secs(60))
        .await;
    let job = replay_to_the_end(
        &live.base,
        json!({"context": "up", "from": "1h", "rate": 50_000}),
    )
    .await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["counts"]["read"], n, "after {surveys} dry runs: {job}");
    assert_eq!(job["counts"]["forwarded"], n, "{job}");
    let replayed = live
        .client
        .take(&live.inbox, n as usize, Duration::from_secs(60))
        .await;
    assert_eq!(replayed.len() as u64, n);
    assert!(
        replayed.iter().all(|message| crate::broker::header(
            message,
            "cloudEvents_contextgatereplay"
        )
        .is_some()),
        "every output names the replay job"
    );
    live.client
        .assert_empty(&live.inbox, Duration::from_millis(500))
        .await;
    live.stop.send_replace(true);
}
