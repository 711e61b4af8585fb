//! The ledger of a fleet under faults (issue 11): a 3-node RabbitMQ cluster on private ports
//! (quorum queues with a replica on each node), three real gateway binaries, each connected to
//! its own node, and 20,000 inputs taken by an ordered route (`up-to-down`, 12 shards) and an
//! unordered one (`up-to-side`, competing consumers). A fault hits mid-stream — an instance
//! killed, a broker node stopped, an instance frozen past its heartbeat — and afterwards every
//! accepted id must come out of both routes (lost = ∅), the ordered route's with each key in
//! order except repeats. Repeats are reported.
//!
//! Each test starts its own cluster (ports 5801–5809, their distribution ports 20,000 higher);
//! they run one at a time with the other private-node tests (`.config/nextest.toml`, group
//! `private-broker`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;

use crate::broker::{self, Client, Cluster};
use crate::helpers::Fixture;
use crate::shards::{self, INBOX, Instance, ROUTE};

/// Inputs in the backlog.
const N: usize = 20_000;
/// The unordered route's downstream reads here.
const SIDE_INBOX: &str = "inbox.side";

/// The ordered route of `shards::ordered` and an unordered one to `side`.
fn two_routes() -> Fixture {
    let fixture = shards::ordered(None);
    fixture.append(
        r#"
[[routes]]
name = "up-to-side"
upstream = "up"
downstream = "side"
mode = "conformist"
accepts = ["up/Thing@1"]

[contexts.side]
"#,
    );
    fixture
}

/// What the fault is given: the cluster and the three instances (instance `i` on node `i`).
type Fault = Box<dyn FnOnce(&Cluster, &mut [Instance])>;

/// Runs the fleet's ledger with `fault` injected once the fleet is mid-stream.
async fn fleet_ledger_under(tag: &str, port: u16, fault: Fault) {
    let started = Instant::now();
    let cluster = Cluster::start(tag, port);
    eprintln!("cluster of three up in {:?}", started.elapsed());
    let urls: Vec<String> = cluster.nodes.iter().map(broker::PrivateNode::url).collect();
    let fixture = two_routes();
    let prefix = format!("{tag}.");
    let names = Names::new(prefix.clone());
    let (inbox, side_inbox) = (format!("{prefix}{INBOX}"), format!("{prefix}{SIDE_INBOX}"));
    let client = Client::connect(&urls[0]).await;
    broker::declare(&client, &names, fixture.pipeline().registry()).await;
    client
        .subscribe(&inbox, &names.inbound(&broker::context("down")))
        .await;
    client
        .subscribe(&side_inbox, &names.inbound(&broker::context("side")))
        .await;
    for queue in [
        names.shard_queue(ROUTE, 0),
        names.sequencer_queue(ROUTE),
        names.route_queue("up-to-side"),
    ] {
        let members = cluster.members(&queue);
        assert_eq!(
            members.len(),
            3,
            "{queue} has a replica on each node: {members:?}"
        );
    }
    let accepted = shards::publish_keyed(&client, &names, "c", 0..N, 100).await;
    assert_eq!(accepted.len(), N, "the broker accepted the whole backlog");

    let mut instances: Vec<Instance> = ["gw-0", "gw-1", "gw-2"]
        .iter()
        .zip(&urls)
        .map(|(id, url)| Instance::start(&fixture, url, &prefix, id))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.count(&inbox).await < (N / 5) as u32 {
        assert!(Instant::now() < deadline, "the fleet did not start working");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client.count(&inbox).await < N as u32,
        "the backlog was done before the fault: not mid-stream"
    );
    let at = Instant::now();
    fault(&cluster, &mut instances);
    eprintln!("fault injected and healed in {:?}", at.elapsed());

    let settle = Duration::from_secs(3);
    let idle = Duration::from_secs(60);
    let out = shards::outputs(&urls[0], &inbox, N, settle, idle).await;
    let repeats = shards::check_ordered("ordered route", &out, &accepted);
    let side = shards::outputs(&urls[0], &side_inbox, N, settle, idle).await;
    let seen: BTreeSet<&str> = side.iter().map(|out| out.id.as_str()).collect();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    eprintln!(
        "unordered route: accepted {N}, out {}, lost {}, repeats {}",
        side.len(),
        lost.len(),
        side.len() - seen.len()
    );
    assert!(
        lost.is_empty(),
        "unordered route: lost {} ids, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        seen.iter().all(|id| accepted.contains(*id)),
        "unordered route: unexpected ids"
    );
    eprintln!(
        "ordered repeats {repeats}; whole test {:?}",
        started.elapsed()
    );
    drop(instances);
    drop(cluster);
}

fn signal(instance: &mut Instance, signal: &str) {
    let pid = instance.pid();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_nor_reordered_when_an_instance_of_the_fleet_is_killed() {
    fleet_ledger_under("fkill", 5801, Box::new(|_, instances| instances[1].kill())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_nor_reordered_when_a_broker_node_of_the_cluster_stops() {
    fleet_ledger_under(
        "fnode",
        5804,
        Box::new(|cluster, _| {
            assert!(cluster.nodes[1].ctl(&["stop_app"]));
            std::thread::sleep(Duration::from_secs(10));
            assert!(cluster.nodes[1].ctl(&["start_app"]));
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_nor_reordered_when_an_instance_is_frozen_past_its_heartbeat() {
    fleet_ledger_under(
        "ffreeze",
        5807,
        Box::new(|_, instances| {
            // The node URLs ask for a 5 s heartbeat: the broker drops the frozen instance's
            // connections after 10 s, and the others stop hearing it after 3.
            signal(&mut instances[1], "-STOP");
            std::thread::sleep(Duration::from_secs(13));
            signal(&mut instances[1], "-CONT");
        }),
    )
    .await;
}
