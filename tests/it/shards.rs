//! Ordered routes on RabbitMQ (issue 11, part 2): the sequencer, the shards and the fleet.
//!
//! The ledger of an ordered route: events with unique ids and an ordering key `k` (`n` counts
//! up per key) are published with confirms; every accepted id must come out (lost = ∅), and
//! within each key the first time each input comes out must follow `n` (a redelivered input may
//! repeat, never overtake). One instance in this process on the shared broker first; then three
//! real binaries sharing the work (balance, a kill, a return, a SIGTERM).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::{InstanceId, Names};
use futures_util::StreamExt;
use lapin::Confirmation;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;

use crate::broker::{self, Cleanup, Client};
use crate::helpers::{Fixture, KillOnDrop, serve_binary};

/// The route of the fixture.
pub(crate) const ROUTE: &str = "up-to-down";
/// The queue the downstream team reads the outputs from.
pub(crate) const INBOX: &str = "inbox.down";

/// A conformist route `up-to-down` ordered by `/k`, with `shards` shards (the default 12
/// without).
pub(crate) fn ordered(shards: Option<u16>) -> Fixture {
    let shards = shards.map_or_else(String::new, |n| format!("shards = {n}\n"));
    Fixture::new(
        "conformist",
        None,
        &format!("ordering_key = \"/k\"\n{shards}"),
    )
}

/// Publishes `n` events `{"id": "<tag>-<i>", "k": "k<i % keys>", "n": i}` with confirms, in
/// batches: the ids the broker accepted.
pub(crate) async fn publish_keyed(
    client: &Client,
    names: &Names,
    tag: &str,
    range: std::ops::Range<usize>,
    keys: usize,
) -> BTreeSet<String> {
    let exchange = names.outbound(&broker::context("up"));
    let mut accepted = BTreeSet::new();
    for batch in range.collect::<Vec<_>>().chunks(500) {
        let mut pending = Vec::with_capacity(batch.len());
        for &i in batch {
            let id = format!("{tag}-{i}");
            let data = format!(r#"{{"id":"{id}","k":"k{}","n":{i}}}"#, i % keys);
            let confirm = client
                .channel
                .basic_publish(
                    exchange.as_str().into(),
                    "up.Thing".into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    data.as_bytes(),
                    broker::binary_event("up/Thing@1", &id).with_delivery_mode(2),
                )
                .await
                .unwrap();
            pending.push((id, confirm));
        }
        for (id, confirm) in pending {
            if confirm.await.unwrap() == Confirmation::Ack(None) {
                accepted.insert(id);
            }
        }
    }
    accepted
}

/// One output as it came out: its input's id, key and number.
#[derive(Debug, Clone)]
pub(crate) struct Out {
    pub(crate) id: String,
    key: String,
    n: u64,
}

/// Reads `queue` (without acks) in arrival order until `expected` messages came and nothing
/// more for `settle`, or nothing at all for `idle`.
pub(crate) async fn outputs(
    url: &str,
    queue: &str,
    expected: usize,
    settle: Duration,
    idle: Duration,
) -> Vec<Out> {
    let connection = broker::connect_retrying(url).await;
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let wait = if out.len() >= expected { settle } else { idle };
        let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await else {
            break;
        };
        let delivery = delivery.unwrap();
        let data: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        out.push(Out {
            id: data["id"].as_str().unwrap().to_owned(),
            key: data["k"].as_str().unwrap().to_owned(),
            n: data["n"].as_u64().unwrap(),
        });
    }
    let _ = connection.close(200, "read".into()).await;
    out
}

/// The ledger of an ordered route: nothing lost, nothing unexpected, each key's first
/// occurrences in input order. Returns the repeats.
pub(crate) fn check_ordered(what: &str, out: &[Out], accepted: &BTreeSet<String>) -> usize {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    let mut overtaken = Vec::new();
    let mut repeats = 0;
    for output in out {
        if !seen.insert(&output.id) {
            repeats += 1;
            continue;
        }
        if let Some(before) = last.insert(&output.key, output.n)
            && before > output.n
        {
            overtaken.push((output.key.clone(), before, output.n));
        }
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    let unexpected: Vec<&&str> = seen.iter().filter(|id| !accepted.contains(**id)).collect();
    eprintln!(
        "{what}: accepted {}, out {}, lost {}, unexpected {}, repeats {repeats}, overtaken {}",
        accepted.len(),
        out.len(),
        lost.len(),
        unexpected.len(),
        overtaken.len()
    );
    assert!(
        lost.is_empty(),
        "{what}: lost {} ids, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(unexpected.is_empty(), "{what}: unexpected {unexpected:?}");
    assert!(
        overtaken.is_empty(),
        "{what}: inputs overtook earlier ones of their key (key, before, after): {:?}",
        &overtaken[..overtaken.len().min(10)]
    );
    repeats
}

/// The prefix, names, clean-up and a subscribed inbox for an ordered fixture.
async fn ordered_topology(
    url: &str,
    test: &str,
    fixture: &Fixture,
) -> (String, Names, Cleanup, Client) {
    let prefix = broker::unique_prefix(test);
    let names = Names::new(prefix.clone());
    let pipeline = fixture.pipeline();
    let cleanup = Cleanup::new(url, &names, pipeline.registry());
    cleanup.queue(&format!("{prefix}{INBOX}"));
    let client = Client::connect(url).await;
    broker::declare(&client, &names, pipeline.registry()).await;
    client
        .subscribe(
            &format!("{prefix}{INBOX}"),
            &names.inbound(&broker::context("down")),
        )
        .await;
    (prefix, names, cleanup, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_holds_every_shard_and_keeps_each_keys_order() {
    // The recorder first, or the gauges would go nowhere.
    contextgate::telemetry::metrics();
    let url = broker::amqp_url();
    let fixture = ordered(None);
    let (prefix, names, _cleanup, client) = ordered_topology(&url, "ordered", &fixture).await;
    let mut settings = broker::settings(&url, &prefix);
    settings.instance = InstanceId::parse("solo").unwrap();
    let gateway = broker::start(fixture.pipeline(), settings).await;

    let n = 4_000;
    let accepted = publish_keyed(&client, &names, "o", 0..n, 40).await;
    assert_eq!(accepted.len(), n);
    let out = outputs(
        &url,
        &format!("{prefix}{INBOX}"),
        n,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    let repeats = check_ordered("one instance", &out, &accepted);
    assert_eq!(repeats, 0, "no fault, no repeat");

    let metrics = contextgate::telemetry::metrics().render();
    assert_eq!(held_in(&metrics), Some(12), "{metrics}");
    // The keys spread over the shards: every shard took some (40 keys, 12 shards).
    for shard in 0..12 {
        let queue = names.shard_queue(ROUTE, shard);
        assert_eq!(client.count(&queue).await, 0, "{queue} was drained");
    }
    assert_eq!(
        client.count(&names.sequencer_queue(ROUTE)).await,
        0,
        "the sequencer queue was drained"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_routes_queues_have_a_single_active_consumer() {
    let url = broker::amqp_url();
    let fixture = ordered(Some(3));
    let (_prefix, names, _cleanup, _client) = ordered_topology(&url, "sac", &fixture).await;
    // A queue declared without the argument is refused: the broker has it with it.
    for queue in [
        names.sequencer_queue(ROUTE),
        names.shard_queue(ROUTE, 0),
        names.shard_queue(ROUTE, 2),
    ] {
        let connection = broker::connect_retrying(&url).await;
        let channel = connection.create_channel().await.unwrap();
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        let refused = channel
            .queue_declare(
                queue.as_str().into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..lapin::options::QueueDeclareOptions::default()
                },
                arguments,
            )
            .await;
        assert!(
            refused.is_err(),
            "{queue} was declared with other arguments (x-single-active-consumer)"
        );
        let _ = connection.close(200, "checked".into()).await;
    }
}

/// `contextgate_shards_held` of the fixture's route in a `/metrics` text.
fn held_in(metrics: &str) -> Option<u32> {
    metrics
        .lines()
        .find(|line| {
            line.starts_with("contextgate_shards_held{") && line.contains(&format!("\"{ROUTE}\""))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u32)
}

/// One `contextgate serve` of a fleet, with its base URL.
pub(crate) struct Instance {
    id: String,
    process: Option<KillOnDrop>,
    base: String,
}

impl Instance {
    pub(crate) fn start(fixture: &Fixture, url: &str, prefix: &str, id: &str) -> Self {
        let (child, base) = serve_binary(
            Command::new(env!("CARGO_BIN_EXE_contextgate"))
                .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", prefix])
                .args(["--instance-id", id, "--shutdown-timeout", "10s"])
                .arg("--registry")
                .arg(fixture.root())
                .env("CONTEXTGATE_AMQP_URL", url),
        );
        Self {
            id: id.to_owned(),
            process: Some(KillOnDrop(child)),
            base,
        }
    }

    /// The process id (to stop and continue it).
    pub(crate) fn pid(&mut self) -> String {
        self.child().id().to_string()
    }

    fn child(&mut self) -> &mut Child {
        &mut self.process.as_mut().expect("the instance runs").0
    }

    /// The shards it holds now; `None` when it does not answer.
    async fn held(&self, http: &reqwest::Client) -> Option<u32> {
        let response = http
            .get(format!("{}/metrics", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        held_in(&response.text().await.ok()?)
    }

    pub(crate) fn kill(&mut self) {
        let child = self.child();
        child.kill().unwrap();
        child.wait().unwrap();
        self.process = None;
    }

    /// SIGTERM, and waits for it to exit; its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.child().wait().unwrap();
        self.process = None;
        status
    }
}

/// Waits until the live instances hold `total` shards between them, each `fair`; what each
/// holds then.
pub(crate) async fn wait_for_balance(
    instances: &[&Instance],
    total: u32,
    fair: std::ops::RangeInclusive<u32>,
    within: Duration,
) -> Vec<u32> {
    let http = crate::helpers::http();
    let deadline = Instant::now() + within;
    loop {
        let mut held = Vec::new();
        for instance in instances {
            held.push(instance.held(&http).await.unwrap_or(0));
        }
        if held.iter().sum::<u32>() == total && held.iter().all(|n| fair.contains(n)) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet {:?} did not balance {total} shards within {within:?}: {held:?}",
            instances.iter().map(|i| &i.id).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_shards_and_keep_order_through_a_kill_and_a_return() {
    let url = broker::amqp_url();
    let fixture = ordered(None);
    let (prefix, names, _cleanup, client) = ordered_topology(&url, "fleet", &fixture).await;
    let mut a = Instance::start(&fixture, &url, &prefix, "gw-a");
    let b = Instance::start(&fixture, &url, &prefix, "gw-b");
    let c = Instance::start(&fixture, &url, &prefix, "gw-c");
    let held = wait_for_balance(&[&a, &b, &c], 12, 3..=5, Duration::from_secs(30)).await;
    eprintln!("three instances hold {held:?}");

    // A stream runs through a kill and a return.
    let publishing = {
        let url = url.clone();
        let names = names.clone();
        tokio::spawn(async move {
            let client = Client::connect(&url).await;
            let mut accepted = BTreeSet::new();
            for part in 0..12 {
                let from = part * 1_000;
                accepted.extend(publish_keyed(&client, &names, "f", from..from + 1_000, 60).await);
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    let killed = Instant::now();
    let held = wait_for_balance(&[&b, &c], 12, 6..=6, Duration::from_secs(10)).await;
    eprintln!(
        "after the kill, two hold {held:?} within {:?}",
        killed.elapsed()
    );
    let a = Instance::start(&fixture, &url, &prefix, "gw-a");
    let held = wait_for_balance(&[&a, &b, &c], 12, 3..=5, Duration::from_secs(30)).await;
    eprintln!("after the return, three hold {held:?}");

    let accepted = publishing.await.unwrap();
    assert_eq!(accepted.len(), 12_000);
    let out = outputs(
        &url,
        &format!("{prefix}{INBOX}"),
        accepted.len(),
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    let repeats = check_ordered("kill and return", &out, &accepted);
    assert!(
        repeats <= 2 * 500 * 2,
        "repeats are bounded by what the killed instance had in flight: {repeats}"
    );
    drop((a, b, c));
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_an_instance_hands_its_shards_over_and_exits_cleanly() {
    let url = broker::amqp_url();
    let fixture = ordered(None);
    let (prefix, names, _cleanup, _client) = ordered_topology(&url, "sigterm", &fixture).await;
    let mut a = Instance::start(&fixture, &url, &prefix, "gw-a");
    let b = Instance::start(&fixture, &url, &prefix, "gw-b");
    wait_for_balance(&[&a, &b], 12, 6..=6, Duration::from_secs(30)).await;

    // A stream runs through the SIGTERM, so that the instance holds work when it stops.
    let publishing = {
        let (url, names) = (url.clone(), names.clone());
        tokio::spawn(async move {
            let client = Client::connect(&url).await;
            let mut accepted = BTreeSet::new();
            for part in 0..8 {
                let from = part * 750;
                accepted.extend(publish_keyed(&client, &names, "t", from..from + 750, 30).await);
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let terminated = Instant::now();
    let status = a.terminate();
    assert!(
        status.success(),
        "a SIGTERM ends the instance cleanly: {status}"
    );
    eprintln!(
        "the instance stopped {:?} after its SIGTERM",
        terminated.elapsed()
    );
    let held = wait_for_balance(&[&b], 12, 12..=12, Duration::from_secs(10)).await;
    eprintln!("after the SIGTERM, one holds {held:?}");
    let accepted = publishing.await.unwrap();
    assert_eq!(accepted.len(), 6_000);
    let out = outputs(
        &url,
        &format!("{prefix}{INBOX}"),
        accepted.len(),
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await;
    let repeats = check_ordered("SIGTERM hand-over", &out, &accepted);
    // A hand-over settles what it took before its channel closes: repeats come only from acks
    // the broker had not applied yet when the channel closed.
    eprintln!("repeats after a SIGTERM: {repeats}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_names_itself_in_every_log_line_and_metric() {
    use std::io::{BufRead, BufReader};
    let fixture = ordered(None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--instance-id", "gw-log-7"])
        .arg("--registry")
        .arg(fixture.root())
        .env_remove("CONTEXTGATE_AMQP_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let child = KillOnDrop(child);
    let mut before = Vec::new();
    let started: serde_json::Value = loop {
        let line = lines.next().expect("serve logged its start").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["fields"]["message"] == "Gateway started." {
            break event;
        }
        before.push(event);
    };
    for event in before.iter().chain([&started]) {
        assert_eq!(
            event["span"]["instance"], "gw-log-7",
            "every event carries the instance: {event}"
        );
    }
    let address = started["fields"]["address"].as_str().unwrap();
    let metrics = crate::helpers::http()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("contextgate_"))
        .collect();
    assert!(!series.is_empty(), "{metrics}");
    for line in series {
        assert!(line.contains(r#"instance="gw-log-7""#), "{line}");
    }
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_gets_an_ordering_key_moves_its_earlier_queue_into_the_shards_first() {
    contextgate::telemetry::metrics();
    let url = broker::amqp_url();
    // The route as it was: no ordering key, its inputs waiting in `route.up-to-down`.
    let unordered = Fixture::new("conformist", None, "");
    let (prefix, names, _cleanup, client) = ordered_topology(&url, "moved", &unordered).await;
    let mut accepted = publish_keyed(&client, &names, "m", 0..2_000, 20).await;
    assert_eq!(client.count(&names.route_queue(ROUTE)).await, 2_000);

    let fixture = ordered(Some(4));
    let mut settings = broker::settings(&url, &prefix);
    settings.instance = InstanceId::parse("mover").unwrap();
    let gateway = broker::start(fixture.pipeline(), settings).await;
    accepted.extend(publish_keyed(&client, &names, "m", 2_000..4_000, 20).await);
    let out = outputs(
        &url,
        &format!("{prefix}{INBOX}"),
        accepted.len(),
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .await;
    check_ordered("moved", &out, &accepted);
    // The earlier queue is gone: declaring it as a classic queue now succeeds.
    let connection = broker::connect_retrying(&url).await;
    let channel = connection.create_channel().await.unwrap();
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("classic".into()),
    );
    channel
        .queue_declare(
            names.route_queue(ROUTE).as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..lapin::options::QueueDeclareOptions::default()
            },
            classic,
        )
        .await
        .expect("the earlier quorum queue was deleted");
    let _ = connection.close(200, "checked".into()).await;
    gateway.stop().await;
}

#[test]
fn shards_are_refused_without_an_ordering_key_or_out_of_range() {
    let unordered = Fixture::new("conformist", None, "shards = 4\n");
    let problems = crate::helpers::problems(unordered.root());
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("shards applies only to a route with an ordering_key")),
        "{problems:?}"
    );
    for shards in [0, 257] {
        let fixture = ordered(Some(shards));
        let problems = crate::helpers::problems(fixture.root());
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("shards must be between 1 and 256")),
            "{shards}: {problems:?}"
        );
    }
    assert_eq!(ordered(Some(3)).pipeline().registry().routes[0].shards, 3);
    assert_eq!(ordered(None).pipeline().registry().routes[0].shards, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_that_adds_an_ordering_key_keeps_each_keys_order_through_the_switch() {
    contextgate::telemetry::metrics();
    let url = broker::amqp_url();
    let unordered = Fixture::new("conformist", None, "");
    let (prefix, names, _cleanup, _client) = ordered_topology(&url, "switch", &unordered).await;
    let mut settings = broker::settings(&url, &prefix);
    settings.instance = InstanceId::parse("switcher").unwrap();
    // One lane: the route without a key then keeps queue order too, so that the ledger can
    // check order across the switch.
    settings.lanes = 1;
    let gateway = broker::start(unordered.pipeline(), settings).await;
    let publishing = {
        let (url, names) = (url.clone(), names.clone());
        tokio::spawn(async move {
            let client = Client::connect(&url).await;
            let mut accepted = BTreeSet::new();
            for part in 0..8 {
                let from = part * 750;
                accepted.extend(publish_keyed(&client, &names, "s", from..from + 750, 30).await);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // What a registration does: the route gets an ordering key while inputs flow.
    gateway.pipeline.send_replace(ordered(Some(4)).pipeline());
    let accepted = publishing.await.unwrap();
    assert_eq!(accepted.len(), 6_000);
    let out = outputs(
        &url,
        &format!("{prefix}{INBOX}"),
        accepted.len(),
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await;
    check_ordered("through the switch", &out, &accepted);
    gateway.stop().await;
}
