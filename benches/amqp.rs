//! Throughput on the real broker, as ratios from one run: the same N pre-loaded ~1 KB persistent
//! messages moved between quorum queues, with publisher confirms, by
//! (a) a raw lapin forwarder written here (consume → publish → ack after confirm, one
//!     `multiple` ack per 100 confirmed messages, the same prefetch),
//! (b) RabbitMQ's shovel plugin (a dynamic shovel, `ack-mode` on-confirm, the same prefetch),
//! (c) `contextgate serve` (the release binary) with a conformist route,
//! (d) `contextgate serve` with an anti-corruption route,
//! (e) `contextgate serve` with the conformist route while 64 clients flood its admin API with
//!     10 000 requests a second (route reads and dry runs: RELIABILITY A9), which says whether
//!     the data plane keeps its throughput; the flood's answers are counted.
//! Each mover is timed from its first message out to its last; the gateway's peak RSS (VmHWM)
//! is read from /proc when it is done.
//!
//! The movers take turns in rounds (N / rounds each), so that the machine's drift in speed
//! falls on all of them alike; the ratios are the summed times and the per-round range.
//!
//! `cargo bench --bench amqp` (N = 200,000 in 4 rounds). `CONTEXTGATE_BENCH_N` and
//! `CONTEXTGATE_BENCH_ROUNDS` change them;
//! `CONTEXTGATE_BENCH_ONLY=conformist,anti-corruption` runs only some movers (use it with
//! `CONTEXTGATE_BENCH_N=1000000` for the RSS check on a 1,000,000-message backlog);
//! `CONTEXTGATE_BENCH_AMQP_URL` picks the broker (default guest@127.0.0.1:5672).

use std::process::{Command, Stdio};
use std::time::Duration;

use contextgate::bus::amqp::Names;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use support::broker::{self, declare, delete_queues, open, preload, time_until};

#[allow(dead_code)]
mod support;

const PREFETCH: u16 = 1_000;

struct Moved {
    seconds: f64,
    peak_rss_kib: Option<u64>,
}

fn main() {
    let setting = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let n = setting("CONTEXTGATE_BENCH_N", 200_000);
    let rounds = setting("CONTEXTGATE_BENCH_ROUNDS", 4).max(1);
    let per_round = n / rounds;
    let only = std::env::var("CONTEXTGATE_BENCH_ONLY").unwrap_or_default();
    let movers: Vec<&'static str> = [
        "raw",
        "shovel",
        "conformist",
        "conformist-flooded",
        "anti-corruption",
    ]
    .into_iter()
    .filter(|name| only.is_empty() || only.split(',').any(|one| one == *name))
    .collect();
    let url = broker::amqp_url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = support::event_data();
    println!(
        "amqp bench: N = {n} in {rounds} interleaved rounds of {per_round}, body {} bytes, prefetch {PREFETCH}, quorum queues, confirms",
        data.len()
    );
    // Per mover: seconds of every round, peak RSS.
    let mut results: Vec<(&'static str, Vec<f64>, Option<u64>)> = movers
        .iter()
        .map(|name| (*name, Vec::new(), None))
        .collect();
    runtime.block_on(async {
        let client = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("RabbitMQ is not reachable at {url}: {error}"));
        for round in 1..=rounds {
            println!("round {round} of {rounds}");
            for (name, seconds, peak) in &mut results {
                let moved = match *name {
                    "raw" => raw_forwarder(&url, &client, per_round, &data).await,
                    "shovel" => shovel(&client, per_round, &data)
                        .await
                        .expect("the shovel plugin could not be enabled"),
                    "conformist" | "conformist-flooded" => {
                        gateway(&url, &client, per_round, &data, name, "shop-to-audit").await
                    }
                    _ => gateway(&url, &client, per_round, &data, name, "shop-to-warehouse").await,
                };
                seconds.push(moved.seconds);
                *peak = (*peak).max(moved.peak_rss_kib);
            }
        }
    });
    let shovel_rounds = results
        .iter()
        .find(|(name, ..)| *name == "shovel")
        .map(|(_, seconds, _)| seconds.clone());
    println!();
    println!(
        "| mover | seconds (sum) | msg/s | × shovel (sum) | × shovel (per round, median [min, max]) | peak RSS |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    for (name, seconds, peak) in &results {
        let total: f64 = seconds.iter().sum();
        let rate = (per_round * rounds) as f64 / total;
        let (sum_ratio, round_ratios) = match &shovel_rounds {
            Some(shovel) => {
                let mut ratios: Vec<f64> = shovel
                    .iter()
                    .zip(seconds)
                    .map(|(shovel, mine)| shovel / mine)
                    .collect();
                ratios.sort_by(f64::total_cmp);
                (
                    format!("{:.2}", shovel.iter().sum::<f64>() / total),
                    format!(
                        "{:.2} [{:.2}, {:.2}]",
                        ratios[ratios.len() / 2],
                        ratios[0],
                        ratios[ratios.len() - 1]
                    ),
                )
            }
            None => ("–".to_owned(), "–".to_owned()),
        };
        println!(
            "| {name} | {total:.2} | {rate:.0} | {sum_ratio} | {round_ratios} | {} |",
            peak.map_or("–".to_owned(), |kib| format!(
                "{:.1} MiB",
                kib as f64 / 1024.0
            )),
        );
    }
}

async fn raw_forwarder(url: &str, client: &Connection, n: usize, data: &[u8]) -> Moved {
    println!("raw lapin forwarder");
    let channel = &open(client).await;
    let (source, target) = ("bench.raw.source".to_owned(), "bench.raw.target".to_owned());
    declare(channel, &source).await;
    declare(channel, &target).await;
    preload(channel, "", &source, n, data, None).await;
    let consume = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let publish = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let input = consume.create_channel().await.unwrap();
    input
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let output = publish.create_channel().await.unwrap();
    output
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut consumer = input
        .basic_consume(
            source.as_str().into(),
            "raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (sent, mut confirmed) = tokio::sync::mpsc::channel(usize::from(PREFETCH));
    let forward = tokio::spawn({
        let target = target.clone();
        async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let confirm = output
                    .basic_publish(
                        "".into(),
                        target.as_str().into(),
                        BasicPublishOptions::default(),
                        &delivery.data,
                        delivery.properties,
                    )
                    .await
                    .unwrap();
                if sent.send((delivery.delivery_tag, confirm)).await.is_err() {
                    break;
                }
            }
        }
    });
    let acks = tokio::spawn({
        let input = input.clone();
        async move {
            let mut since_ack = 0;
            while let Some((tag, confirm)) = confirmed.recv().await {
                assert!(confirm.await.unwrap().is_ack());
                since_ack += 1;
                if since_ack == 100 || confirmed.is_empty() {
                    input
                        .basic_ack(tag, BasicAckOptions { multiple: true })
                        .await
                        .unwrap();
                    since_ack = 0;
                }
            }
        }
    });
    let seconds = time_until(channel, &target, n).await.seconds();
    forward.abort();
    acks.abort();
    let _ = consume.close(200, "done".into()).await;
    let _ = publish.close(200, "done".into()).await;
    delete_queues(client, &[source, target]).await;
    report("raw lapin", n, seconds);
    Moved {
        seconds,
        peak_rss_kib: None,
    }
}

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

async fn shovel(client: &Connection, n: usize, data: &[u8]) -> Option<Moved> {
    println!("RabbitMQ shovel");
    let channel = &open(client).await;
    let enabled = Command::new("rabbitmq-plugins")
        .args(["enable", "rabbitmq_shovel"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !enabled {
        return None;
    }
    let (source, target) = (
        "bench.shovel.source".to_owned(),
        "bench.shovel.target".to_owned(),
    );
    declare(channel, &source).await;
    declare(channel, &target).await;
    preload(channel, "", &source, n, data, None).await;
    let definition = serde_json::json!({
        "src-protocol": "amqp091",
        "src-uri": "amqp://",
        "src-queue": source,
        "src-prefetch-count": PREFETCH,
        "dest-protocol": "amqp091",
        "dest-uri": "amqp://",
        "dest-queue": target,
        "ack-mode": "on-confirm",
    })
    .to_string();
    assert!(rabbitmqctl(&[
        "set_parameter",
        "shovel",
        "bench-shovel",
        &definition
    ]));
    let seconds = time_until(channel, &target, n).await.seconds();
    rabbitmqctl(&["clear_parameter", "shovel", "bench-shovel"]);
    delete_queues(client, &[source, target]).await;
    report("shovel", n, seconds);
    Some(Moved {
        seconds,
        peak_rss_kib: None,
    })
}

/// The bench registry with only `route` (and its contexts), written to a temporary folder.
fn registry_with(route: &str) -> tempfile::TempDir {
    let mode = if route == "shop-to-audit" {
        "mode = \"conformist\"\ndownstream = \"audit\"\naccepts = [\"shop/OrderPlaced@1\"]"
    } else {
        "mode = \"anti-corruption\"\ndownstream = \"warehouse\"\ntranslator = \"warehouse/pick_list\""
    };
    broker::registry_with(&format!(
        "name = \"{route}\"\nupstream = \"shop\"\n{mode}\n"
    ))
}

async fn gateway(
    url: &str,
    client: &Connection,
    n: usize,
    data: &[u8],
    name: &'static str,
    route: &str,
) -> Moved {
    println!("contextgate, {name} route");
    let channel = &open(client).await;
    let registry_dir = registry_with(route);
    let registry = contextgate::registry::load(registry_dir.path()).expect("the registry loads");
    let prefix = format!("bench.{name}.");
    let names = Names::new(prefix.clone());
    let (target, upstream) = broker::declare_with_target(channel, &names, &registry).await;
    preload(channel, &upstream, "shop.OrderPlaced", n, data, None).await;

    let gateway = broker::Gateway::start(url, &prefix, registry_dir.path(), PREFETCH, "bench");
    let route = &registry.routes[0];
    let flood = (name == "conformist-flooded").then(|| flood(&gateway.base, route.name.as_str()));
    let seconds = time_until(channel, &target, n).await.seconds();
    if let Some((stop, clients)) = flood {
        stop.send_replace(true);
        let mut answers = std::collections::BTreeMap::<u16, usize>::new();
        for client in clients {
            for (status, count) in client.await.unwrap() {
                *answers.entry(status).or_default() += count;
            }
        }
        let total: usize = answers.values().sum();
        println!(
            "  admin flood: {total} requests answered in {seconds:.2} s ({:.0}/s), by status: {answers:?}",
            total as f64 / seconds
        );
    }
    let peak_rss_kib = gateway.peak_rss_kib();
    drop(gateway);
    broker::delete_topology(client, &names, &registry, &[target]).await;
    report(name, n, seconds);
    Moved {
        seconds,
        peak_rss_kib,
    }
}

/// One flooding client: its answers by status when it stops.
type Client = tokio::task::JoinHandle<Vec<(u16, usize)>>;

/// 64 clients calling the admin API of the gateway at `base` until told to stop, 10 000 requests
/// a second in all: each loop reads the routes, reads one route, and dry-runs one message through
/// it. Returns the answers by status.
fn flood(base: &str, route: &str) -> (tokio::sync::watch::Sender<bool>, Vec<Client>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // reqwest has rustls without a default provider (the gateway configures its own): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let body = serde_json::json!({
        "specversion": "1.0", "id": "flood", "source": "bench", "type": "shop.OrderPlaced",
        "dataschema": "contextgate:shop/OrderPlaced@1",
        "datacontenttype": "application/json",
        "data": serde_json::from_slice::<serde_json::Value>(&support::event_data()).unwrap(),
    })
    .to_string();
    let clients = (0..64)
        .map(|_| {
            let (http, stopped, body) = (http.clone(), stopped.clone(), body.clone());
            let urls = [
                format!("{base}/v1/routes"),
                format!("{base}/v1/routes/{route}"),
            ];
            let dry_run = format!("{base}/v1/routes/{route}/dry-run");
            tokio::spawn(async move {
                let mut answers = std::collections::BTreeMap::<u16, usize>::new();
                // 64 clients × 3 requests every 19.2 ms: 10 000 requests a second in all.
                let mut pace = tokio::time::interval(Duration::from_micros(19_200));
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                while !*stopped.borrow() {
                    pace.tick().await;
                    let mut statuses = Vec::with_capacity(3);
                    for url in &urls {
                        if let Ok(response) = http.get(url).send().await {
                            statuses.push(response.status().as_u16());
                        }
                    }
                    if let Ok(response) = http
                        .post(&dry_run)
                        .header("content-type", "application/cloudevents+json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        statuses.push(response.status().as_u16());
                    }
                    for status in statuses {
                        *answers.entry(status).or_default() += 1;
                    }
                }
                answers.into_iter().collect()
            })
        })
        .collect();
    (stop, clients)
}

fn report(name: &str, n: usize, seconds: f64) {
    println!(
        "  {name}: {n} in {seconds:.2} s = {:.0} msg/s",
        n as f64 / seconds
    );
}
