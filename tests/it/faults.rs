//! The ledger check of RELIABILITY.md under faults: a backlog of events with unique ids is
//! published with confirms (the accepted set A), the gateway works through it, a fault hits
//! mid-stream, and after healing every id of A must come out forwarded (O) or dead-lettered (D):
//! `lost = A − ids(O ∪ D) = ∅`, `unexpected = ids(O ∪ D) − A = ∅`; duplicates are reported.
//!
//! Faults that would disturb other users of the shared broker (closing every connection,
//! stopping the broker application) run on a private node the test starts on its own ports.
//! These tests run one at a time (`.config/nextest.toml`, group `private-broker`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use contextgate::registry::Registry;

use crate::broker::{self, Cleanup, Client, PrivateNode};
use crate::helpers::Fixture;

/// Inputs in the backlog.
const N: usize = 20_000;
const INBOX: &str = "inbox.down";

/// Declares the topology, subscribes `down`, and publishes the backlog with confirms: the ids
/// the broker accepted.
async fn preload(client: &Client, names: &Names, registry: &Registry) -> BTreeSet<String> {
    broker::declare(client, names, registry).await;
    let inbox = format!("{}{INBOX}", names.prefix());
    client
        .subscribe(&inbox, &names.inbound(&broker::context("down")))
        .await;
    broker::publish_backlog(client, names, "l", N).await
}

/// Waits until at least `n` outputs are in the inbox: the gateway is mid-stream.
async fn wait_for_outputs(url: &str, names: &Names, n: u32) {
    let client = Client::connect(url).await;
    let inbox = format!("{}{INBOX}", names.prefix());
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.count(&inbox).await < n {
        assert!(
            Instant::now() < deadline,
            "the gateway did not start working"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        client.count(&inbox).await < N as u32,
        "the backlog was done before the fault: not mid-stream"
    );
}

/// Reads the inbox (O) and the route's dead letters (D) until every accepted id came out or
/// the time is up; checks the ledger and returns the duplicates.
async fn drain_and_check(url: &str, names: &Names, accepted: &BTreeSet<String>) -> usize {
    let inbox = format!("{}{INBOX}", names.prefix());
    let mut counts = broker::ids_in(
        url,
        &inbox,
        accepted.len(),
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .await;
    let dead = broker::kept_dead_letters(
        url,
        &names.dead_letter_queue(Some("up-to-down")),
        0,
        Duration::from_secs(2),
        Duration::from_secs(2),
    )
    .await;
    for message in dead {
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        for name in ["x-gateway-reason", "x-gateway-stage", "x-gateway-contract"] {
            assert!(headers.contains_key(name), "a dead letter without {name}");
        }
        let data: serde_json::Value = serde_json::from_slice(&message.delivery.data).unwrap();
        *counts
            .entry(data["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let seen: BTreeSet<String> = counts.keys().cloned().collect();
    let lost: Vec<&String> = accepted.difference(&seen).collect();
    let unexpected: Vec<&String> = seen.difference(accepted).collect();
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "ledger: accepted {}, out {}, lost {}, unexpected {}, duplicates {duplicates}",
        accepted.len(),
        counts.values().sum::<usize>(),
        lost.len(),
        unexpected.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} ids, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(unexpected.is_empty(), "unexpected ids: {unexpected:?}");
    duplicates
}

/// Runs the ledger with `fault` injected on a private node once the gateway is mid-stream.
async fn ledger_under(
    tag: &str,
    port: u16,
    reconnect: bool,
    fault: impl FnOnce(&PrivateNode, &contextgate::bus::AmqpBus),
) {
    contextgate::telemetry::metrics();
    let node = PrivateNode::start(tag, port);
    let url = node.url();
    let fixture = Fixture::new("conformist", None, "");
    let pipeline = fixture.pipeline();
    let names = Names::new("ledger.");
    let accepted = {
        let client = Client::connect(&url).await;
        preload(&client, &names, pipeline.registry()).await
    };
    let gateway = broker::start(pipeline, broker::settings(&url, names.prefix())).await;
    wait_for_outputs(&url, &names, (N / 5) as u32).await;
    fault(&node, &gateway.bus);
    let duplicates = drain_and_check(&url, &names, &accepted).await;
    if reconnect {
        assert!(
            gateway.bus.status().reconnects() >= 1,
            "the gateway reconnected"
        );
    }
    assert!(
        duplicates <= 2 * 500,
        "duplicates are bounded by what was in flight: {duplicates}"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_closes_every_connection() {
    ledger_under("close", 5781, true, |node, _| {
        assert!(node.ctl(&["close_all_connections", "fault injected by the test"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_application_stops_and_starts() {
    ledger_under("restart", 5782, true, |node, _| {
        assert!(node.ctl(&["stop_app"]));
        std::thread::sleep(Duration::from_secs(5));
        assert!(node.ctl(&["start_app"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_hangs_past_two_heartbeats() {
    // The node's URL asks for a 5 s heartbeat: a peer silent for 10 s is dead.
    ledger_under("hang", 5784, true, |node, bus| {
        let pid = node.os_pid();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success()
        );
        let stopped = Instant::now();
        while bus.status().is_ready() && stopped.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let detected = stopped.elapsed();
        // Continue the node before any assertion, so that a failure never leaves it frozen.
        assert!(
            Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success()
        );
        eprintln!("hung broker detected after {detected:?}");
        assert!(
            detected < Duration::from_secs(20),
            "the hung broker was not detected within 20 s"
        );
    })
    .await;
}

/// `contextgate serve` on the shared broker with the fixture registry; its stderr is drained.
fn spawn_serve(fixture: &Fixture, url: &str, prefix: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--amqp-prefix", prefix])
        .arg("--registry")
        .arg(fixture.root())
        .env("CONTEXTGATE_AMQP_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    std::thread::spawn(move || for _ in lines {});
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_gateway_is_killed_and_started_again() {
    let url = broker::amqp_url();
    let fixture = Fixture::new("conformist", None, "");
    let pipeline = fixture.pipeline();
    let prefix = broker::unique_prefix("sigkill");
    let names = Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    cleanup.queue(&format!("{prefix}{INBOX}"));
    let accepted = {
        let client = Client::connect(&url).await;
        preload(&client, &names, pipeline.registry()).await
    };
    let mut first = spawn_serve(&fixture, &url, &prefix);
    wait_for_outputs(&url, &names, (N / 5) as u32).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_serve(&fixture, &url, &prefix);
    let duplicates = drain_and_check(&url, &names, &accepted).await;
    assert!(
        duplicates <= 500,
        "at most one prefetch of redeliveries: {duplicates}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_pauses_the_work_and_loses_nothing() {
    ledger_under("alarm", 5783, false, |node, bus| {
        assert!(node.ctl(&["set_vm_memory_high_watermark", "0.00001"]));
        std::thread::sleep(Duration::from_secs(4));
        assert!(bus.status().is_blocked(), "the gateway saw the block");
        std::thread::sleep(Duration::from_secs(4));
        assert!(node.ctl(&["set_vm_memory_high_watermark", "0.4"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_ends_forwarded_or_dead_lettered_when_connections_close_with_one_downstream_unbound()
 {
    half_bound_under_a_fault("returns", 5785, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ordered_routes_every_input_ends_forwarded_or_dead_lettered_when_connections_close()
{
    // The same through the sequencers and shards of two ordered routes.
    half_bound_under_a_fault("returns-ordered", 5786, "ordering_key = \"/n\"", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_idempotent_routes_of_an_archived_context_every_input_ends_forwarded_or_dead_lettered_when_connections_close()
 {
    // Issue 14: dedup claims released on a requeue, the archive stream bound beside the routes.
    half_bound_under_a_fault("returns-dedup", 5787, crate::unroutable::IDEMPOTENT, true).await;
}

/// `up-to-down`'s downstream has a queue, `up-to-side`'s has none: on each route every input
/// must come out (repeats allowed after the fault), forwarded on the first, a dead letter on
/// the second, and never both on one route — every connection closed mid-stream.
async fn half_bound_under_a_fault(tag: &str, port: u16, route_extra: &str, archived: bool) {
    let node = PrivateNode::start(tag, port);
    let url = node.url();
    let fixture = crate::unroutable::two_routes_with(route_extra);
    if archived {
        fixture.append(crate::unroutable::ARCHIVED);
    } else {
        fixture.not_archived("up");
    }
    let pipeline = fixture.pipeline();
    let names = Names::new("returns.");
    let inbox = format!("{}{INBOX}", names.prefix());
    let n = 5_000;
    let accepted = {
        let client = Client::connect(&url).await;
        broker::declare(&client, &names, pipeline.registry()).await;
        client
            .subscribe(&inbox, &names.inbound(&broker::context("down")))
            .await;
        broker::publish_backlog(&client, &names, "r", n).await
    };
    let gateway = broker::start(pipeline, broker::settings(&url, names.prefix())).await;
    wait_for_outputs(&url, &names, (n / 5) as u32).await;
    assert!(node.ctl(&["close_all_connections", "fault injected by the test"]));

    let settle = Duration::from_secs(3);
    let forwarded = broker::ids_in(&url, &inbox, n, settle, Duration::from_secs(60)).await;
    let dead_side = broker::dead_letter_ids(&url, &names, Some("up-to-side"), n, settle).await;
    let dead_down = broker::dead_letter_ids(&url, &names, Some("up-to-down"), 0, settle).await;
    for (what, counts) in [
        ("forwarded on up-to-down", &forwarded),
        ("dead-lettered on up-to-side", &dead_side),
    ] {
        let lost: Vec<&String> = accepted
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        let repeats: usize = counts.values().map(|count| count - 1).sum();
        eprintln!(
            "{what}: {} ids, lost {}, repeats {repeats}",
            counts.len(),
            lost.len()
        );
        assert!(
            lost.is_empty(),
            "{what}: lost {} ids, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        assert!(
            counts.keys().all(|id| accepted.contains(id)),
            "{what}: unexpected ids"
        );
    }
    assert!(
        dead_down.is_empty(),
        "inputs forwarded on up-to-down were also dead-lettered there: {dead_down:?}"
    );
    gateway.stop().await;
}

/// Issue 14: a replay cut off by every connection closing, then by the broker application
/// stopping for 3 s, goes on from its last stored batch and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cut_off_by_closed_connections_and_a_broker_restart_resumes_and_loses_nothing() {
    const N: usize = 3_000;
    let node = PrivateNode::start("replay-faults", 5788);
    let fixture = Fixture::new("conformist", None, "");
    let live = crate::replay::on_broker_at(&fixture, "replay-faults", &node.url()).await;
    let sent = broker::publish_backlog(&live.client, &live.names, "f", N).await;
    live.client
        .take(&live.inbox, N, Duration::from_secs(60))
        .await;
    let base = &live.base;
    let (status, job) = crate::replay::post_json(
        &format!("{base}/v1/replays"),
        &serde_json::json!({"context": "up", "from": "1h", "rate": 300, "dedup": false}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let job_url = format!("{base}/v1/replays/{id}");
    let job_now = || crate::replay::get_json(&job_url);

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = job_now().await;
    assert_eq!(before["status"], "running", "cut off mid-replay: {before}");
    assert!(node.ctl(&["close_all_connections", "fault injected by the test"]));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let between = job_now().await;
    assert_eq!(between["status"], "running", "cut off again: {between}");
    assert!(node.ctl(&["stop_app"]));
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.ctl(&["start_app"]));

    let mut job = serde_json::Value::Null;
    for _ in 0..900 {
        job = job_now().await;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["status"], "done", "{job}");
    assert!(job["resumed"].as_u64().unwrap() >= 1, "{job}");
    let contextgate::bus::Bus::Amqp(bus) = live.gateway.bus() else {
        unreachable!("on RabbitMQ")
    };
    assert!(
        bus.status().reconnects() >= 2,
        "both faults broke the session"
    );
    let replayed = broker::ids_in(
        &node.url(),
        &live.inbox,
        N,
        Duration::from_secs(2),
        Duration::from_secs(15),
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
    live.stop.send_replace(true);
}
