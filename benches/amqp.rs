//! The AMQP path on the real broker, in one table: throughput, CPU per message and latency.
//!
//! **Throughput.** The same N pre-loaded ~1 KB persistent messages moved between quorum queues,
//! with publisher confirms and prefetch 1,000, by
//! (a) `raw`: a raw lapin forwarder, in a process of its own (this bench binary, started again
//!     as a child, on mimalloc as the gateway is), one task: consume → publish (never waiting
//!     for one publish's frames before the next) → one `multiple` ack per 100 confirmed
//!     messages,
//! (b) `shovel`: RabbitMQ's shovel plugin (a dynamic shovel, `ack-mode` on-confirm),
//! (c) `conformist`: `contextgate serve` (the release binary) with a conformist route,
//! (d) `anti-corruption`: the same with an anti-corruption route (a Rhai translator),
//! (e) `conformist-flooded`: the conformist route while 64 clients flood its admin API with
//!     10 000 requests a second (route reads and dry runs).
//! Each mover is timed from its first message out to its last, and the CPU time (user + system,
//! from `/proc/<pid>/stat`) of the mover's process and of the broker's is read at those two
//! moments: CPU per message. The shovel runs inside the broker: its CPU is the broker's. The
//! gateway's peak RSS (VmHWM) is read when it is done. The movers take turns in rounds
//! (N / rounds each), so that the machine's drift in speed falls on all of them alike.
//!
//! **Latency.** With the mover idle and running, the bench publishes at a steady rate (each
//! 1 ms tick, rate/1000 messages, with confirms) for some seconds, the send time written into
//! the event's `order_id`, and consumes the downstream queue: end-to-end latency from just
//! before the upstream publish to the delivery from the downstream queue (so after the
//! mover's output was stored there). The first second is warm-up and not counted.
//!
//! **Separate machines, simulated.** `CONTEXTGATE_BENCH_PINNED=1` starts a RabbitMQ node of the
//! bench's own pinned to CPU 0 (`taskset -c 0`, port 5871) and pins the movers' processes to
//! CPU 1: a broker on a machine of its own. The shovel then has only the broker's CPU.
//!
//! Settings: `CONTEXTGATE_BENCH_N` (200,000), `CONTEXTGATE_BENCH_ROUNDS` (4),
//! `CONTEXTGATE_BENCH_ONLY=raw,shovel,conformist,conformist-flooded,anti-corruption` (a subset;
//! with `CONTEXTGATE_BENCH_N=1000000 CONTEXTGATE_BENCH_ROUNDS=1` the RSS check on a
//! 1,000,000-message backlog), `CONTEXTGATE_BENCH_LATENCY` (rates, default `2000,8000`; `0`
//! for none), `CONTEXTGATE_BENCH_LATENCY_SECONDS` (10), `CONTEXTGATE_BENCH_AMQP_URL` (the
//! shared broker, default guest@127.0.0.1:5672; not with `PINNED`), `CONTEXTGATE_BENCH_ARCHIVE=0`
//! (the upstream context without its archive, which the latency rows otherwise pay for).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::broker::{self, PinnedNode, declare, delete_queues, open, preload, time_with_cpu};
use support::latency::{epoch, sent_at};

#[allow(dead_code)]
mod support;

/// The raw forwarder (this binary, as a child) allocates through mimalloc, as the `contextgate`
/// binary does: on glibc's malloc it spent ~15 k instructions per message in the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PREFETCH: u16 = 1_000;
/// The environment variable that makes this binary the raw forwarder: `url source target`.
const RAW_CHILD: &str = "CONTEXTGATE_BENCH_RAW_CHILD";
/// The CPUs of the movers and of the bench's own broker node with `CONTEXTGATE_BENCH_PINNED`.
const MOVER_CPUS: &str = "1";
const BROKER_CPUS: &str = "0";
const PINNED_PORT: u16 = 5871;

/// One mover's run of one round.
struct Moved {
    seconds: f64,
    /// CPU seconds of the mover's process between the first and the last message.
    mover_cpu: Option<f64>,
    /// CPU seconds of the broker's process between the first and the last message.
    broker_cpu: Option<f64>,
    peak_rss_kib: Option<u64>,
}

/// Where the bench runs: the broker's URL, its process, how to run its tools, and the CPUs the
/// movers are pinned to (none on the shared broker).
struct Place {
    url: String,
    broker_pid: Option<u32>,
    node: Option<PinnedNode>,
    mover_cpus: Option<&'static str>,
}

impl Place {
    /// `rabbitmq-plugins`/`rabbitmqctl` on the broker in use.
    fn ctl(&self, args: &[&str]) -> bool {
        match &self.node {
            Some(node) => node.ctl(args),
            None => Command::new("rabbitmqctl")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
        }
    }

    fn enable_shovel(&self) -> bool {
        match &self.node {
            // The node starts with the plugin enabled.
            Some(_) => true,
            None => Command::new("rabbitmq-plugins")
                .args(["enable", "rabbitmq_shovel"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
        }
    }
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(spec) = std::env::var(RAW_CHILD) {
        raw_child(&spec);
        return;
    }
    let n = setting("CONTEXTGATE_BENCH_N", 200_000);
    let rounds = setting("CONTEXTGATE_BENCH_ROUNDS", 4).max(1);
    let per_round = n / rounds;
    let latency_seconds = setting("CONTEXTGATE_BENCH_LATENCY_SECONDS", 10).max(2);
    let rates: Vec<usize> = std::env::var("CONTEXTGATE_BENCH_LATENCY")
        .unwrap_or_else(|_| "2000,8000".to_owned())
        .split(',')
        .filter_map(|rate| rate.trim().parse().ok())
        .filter(|rate| *rate > 0)
        .collect();
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
    let pinned = std::env::var("CONTEXTGATE_BENCH_PINNED").is_ok_and(|value| value == "1");
    let place = if pinned {
        println!(
            "starting a RabbitMQ node of the bench's own on CPU {BROKER_CPUS}, port {PINNED_PORT}; movers on CPU {MOVER_CPUS}"
        );
        let node = PinnedNode::start(PINNED_PORT, BROKER_CPUS);
        Place {
            url: node.url(),
            broker_pid: node.os_pid(),
            node: Some(node),
            mover_cpus: Some(MOVER_CPUS),
        }
    } else {
        let url = broker::amqp_url();
        Place {
            broker_pid: broker::broker_pid(&url),
            url,
            node: None,
            mover_cpus: None,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = support::event_data();
    println!(
        "amqp bench: N = {n} in {rounds} interleaved rounds of {per_round}, body {} bytes, prefetch {PREFETCH}, quorum queues, confirms; broker process {}",
        data.len(),
        place
            .broker_pid
            .map_or("not found (no broker CPU)".to_owned(), |pid| pid
                .to_string())
    );
    let mut results: Vec<(&'static str, Vec<Moved>)> =
        movers.iter().map(|name| (*name, Vec::new())).collect();
    let mut latencies = Vec::new();
    runtime.block_on(async {
        let client = Connection::connect(&place.url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("RabbitMQ is not reachable at {}: {error}", place.url));
        if per_round > 0 {
            for round in 1..=rounds {
                println!("round {round} of {rounds}");
                for (name, moved) in &mut results {
                    moved.push(run_mover(&place, &client, name, per_round, &data).await);
                }
            }
        }
        for rate in &rates {
            for name in ["raw", "conformist", "anti-corruption"] {
                if movers.contains(&name) {
                    let measured =
                        latency(&place, &client, name, *rate, latency_seconds, &data).await;
                    latencies.push((name, *rate, measured));
                }
            }
        }
    });
    if per_round > 0 {
        print_throughput(&results, per_round * rounds);
    }
    if !latencies.is_empty() {
        print_latencies(&latencies, latency_seconds);
    }
}

async fn run_mover(
    place: &Place,
    client: &Connection,
    name: &'static str,
    n: usize,
    data: &[u8],
) -> Moved {
    match name {
        "raw" => raw_forwarder(place, client, n, data).await,
        "shovel" => shovel(place, client, n, data)
            .await
            .expect("the shovel plugin could not be enabled"),
        "conformist" | "conformist-flooded" => {
            gateway(place, client, n, data, name, "shop-to-audit").await
        }
        _ => gateway(place, client, n, data, name, "shop-to-warehouse").await,
    }
}

/// The movers' figures: throughput, ratios, CPU per message, peak RSS; then the targets.
fn print_throughput(results: &[(&'static str, Vec<Moved>)], n: usize) {
    let seconds = |name: &str| -> Option<Vec<f64>> {
        results
            .iter()
            .find(|(mover, _)| *mover == name)
            .map(|(_, moved)| moved.iter().map(|one| one.seconds).collect())
    };
    let per_message = |moved: &[Moved], cpu: fn(&Moved) -> Option<f64>| -> Option<f64> {
        let total: Option<f64> = moved.iter().map(cpu).sum();
        total.map(|cpu| cpu * 1e6 / n as f64)
    };
    let ratio = |base: &Option<Vec<f64>>, mine: &[f64]| -> (String, String) {
        let Some(base) = base else {
            return ("–".to_owned(), "–".to_owned());
        };
        let mut ratios: Vec<f64> = base
            .iter()
            .zip(mine)
            .map(|(base, mine)| base / mine)
            .collect();
        ratios.sort_by(f64::total_cmp);
        (
            format!("{:.2}", base.iter().sum::<f64>() / mine.iter().sum::<f64>()),
            format!(
                "{:.2} [{:.2}, {:.2}]",
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1]
            ),
        )
    };
    let (shovel, raw) = (seconds("shovel"), seconds("raw"));
    println!();
    println!(
        "| mover | seconds (sum) | msg/s | × shovel | × raw | × raw per round: median [min, max] | mover CPU µs/msg | broker CPU µs/msg | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|");
    let mut figures = std::collections::BTreeMap::new();
    for (name, moved) in results {
        let mine: Vec<f64> = moved.iter().map(|one| one.seconds).collect();
        let total: f64 = mine.iter().sum();
        let (by_shovel, _) = ratio(&shovel, &mine);
        let (by_raw, by_raw_rounds) = ratio(&raw, &mine);
        let mover_cpu = per_message(moved, |one| one.mover_cpu);
        let broker_cpu = per_message(moved, |one| one.broker_cpu);
        let peak = moved.iter().filter_map(|one| one.peak_rss_kib).max();
        figures.insert(*name, (n as f64 / total, mover_cpu));
        println!(
            "| {name} | {total:.2} | {:.0} | {by_shovel} | {by_raw} | {by_raw_rounds} | {} | {} | {} |",
            n as f64 / total,
            mover_cpu.map_or("–".to_owned(), |cpu| if *name == "shovel" {
                format!("(in broker) {cpu:.1}")
            } else {
                format!("{cpu:.1}")
            }),
            broker_cpu.map_or("–".to_owned(), |cpu| format!("{cpu:.1}")),
            peak.map_or("–".to_owned(), |kib| format!(
                "{:.1} MiB",
                kib as f64 / 1024.0
            )),
        );
    }
    println!();
    let rate = |name: &str| figures.get(name).map(|(rate, _)| *rate);
    let cpu = |name: &str| figures.get(name).and_then(|(_, cpu)| *cpu);
    let target = |what: &str, figure: Option<f64>, bound: f64, at_least: bool| {
        if let Some(figure) = figure {
            let met = if at_least {
                figure >= bound
            } else {
                figure <= bound
            };
            println!(
                "target: {what} {} {bound}: {figure:.2} — {}",
                if at_least { "≥" } else { "≤" },
                if met { "met" } else { "NOT met" }
            );
        }
    };
    let over = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    for (what, figure, bound, at_least) in [
        (
            "raw ÷ shovel",
            over(rate("raw"), rate("shovel")),
            0.75,
            true,
        ),
        (
            "conformist ÷ raw",
            over(rate("conformist"), rate("raw")),
            0.95,
            true,
        ),
        (
            "conformist CPU/msg ÷ raw CPU/msg",
            over(cpu("conformist"), cpu("raw")),
            1.3,
            false,
        ),
        (
            "anti-corruption ÷ raw",
            over(rate("anti-corruption"), rate("raw")),
            0.85,
            true,
        ),
        (
            "conformist flooded ÷ conformist",
            over(rate("conformist-flooded"), rate("conformist")),
            0.9,
            true,
        ),
    ] {
        target(what, figure, bound, at_least);
    }
}

fn print_latencies(latencies: &[(&str, usize, Latency)], seconds: usize) {
    println!();
    println!(
        "latency: publish upstream → delivered from the downstream queue, steady rate for {seconds} s (the first second not counted)"
    );
    println!("| mover | rate (msg/s) | counted | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, rate, measured) in latencies {
        println!(
            "| {name} | {rate} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            measured.counted, measured.p50_ms, measured.p99_ms, measured.max_ms
        );
    }
    for (name, rate, measured) in latencies {
        if *rate == 2_000 && *name != "raw" {
            println!(
                "target: {name} p99 at 2,000 msg/s < 10 ms: {:.2} ms — {}",
                measured.p99_ms,
                if measured.p99_ms < 10.0 {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
}

/// The raw forwarder's child process, killed when dropped.
struct RawChild(Child);

impl RawChild {
    /// Starts this binary as the raw forwarder from `source` to `target` (pinned to `cpus` when
    /// given) and waits until it consumes.
    fn start(url: &str, source: &str, target: &str, cpus: Option<&str>) -> Self {
        // `CONTEXTGATE_BENCH_RAW_WRAP="valgrind --tool=callgrind"` runs it under a profiler.
        let me = std::env::current_exe().unwrap();
        let mut command = broker::wrapped("CONTEXTGATE_BENCH_RAW_WRAP", cpus, &me);
        let mut child = command
            .env(RAW_CHILD, format!("{url} {source} {target}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the bench starts itself as the raw forwarder");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the raw forwarder said it consumes");
        assert_eq!(line.unwrap(), "consuming");
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for RawChild {
    /// Closes its stdin (it exits), and kills it if it has not within 10 s.
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The raw forwarder, in this process (started by [`RawChild`]): one task on a current-thread
/// runtime, consume and publish on two connections (each with lapin's I/O thread). Publishes are
/// polled side by side (lapin resolves one once its I/O thread wrote the frames: awaiting each
/// before taking the next delivery costs a thread round trip per message), confirms in order,
/// and one `multiple` ack per 100 confirmed messages or when none is left in flight.
fn raw_child(spec: &str) {
    let mut parts = spec.split(' ');
    let (url, source, target) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    // Exits when the bench closes its stdin.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let consume = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        // One connection for both sides unless told otherwise (each has an I/O thread).
        let publish = if std::env::var("CONTEXTGATE_BENCH_RAW_CONNECTIONS").as_deref() == Ok("2") {
            Some(
                Connection::connect(&url, ConnectionProperties::default())
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let input = consume.create_channel().await.unwrap();
        input
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .unwrap();
        let output = publish
            .as_ref()
            .unwrap_or(&consume)
            .create_channel()
            .await
            .unwrap();
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
        println!("consuming");
        let mut sending = FuturesOrdered::new();
        let mut confirming = FuturesOrdered::new();
        let mut acking = futures_util::stream::FuturesUnordered::new();
        let mut since_ack = 0;
        let publish = |delivery: lapin::message::Delivery| {
            let (output, target) = (output.clone(), target.clone());
            async move {
                let sent = output
                    .basic_publish(
                        "".into(),
                        target.as_str().into(),
                        BasicPublishOptions::default(),
                        &delivery.data,
                        delivery.properties,
                    )
                    .await;
                (delivery.delivery_tag, sent)
            }
        };
        loop {
            tokio::select! {
                biased;
                Some(acked) = acking.next() => {
                    let acked: lapin::Result<()> = acked;
                    acked.unwrap();
                }
                Some((tag, confirmation)) = confirming.next() => {
                    let confirmation: lapin::Result<lapin::Confirmation> = confirmation;
                    assert!(confirmation.unwrap().is_ack());
                    since_ack += 1;
                    if since_ack >= 100 || (confirming.is_empty() && sending.is_empty()) {
                        let input = input.clone();
                        acking.push(async move {
                            input.basic_ack(tag, BasicAckOptions { multiple: true }).await
                        });
                        since_ack = 0;
                    }
                }
                Some((tag, sent)) = sending.next() => {
                    let sent: lapin::Result<lapin::PublisherConfirm> = sent;
                    let confirm = sent.unwrap();
                    confirming.push_back(async move { (tag, confirm.await) });
                }
                delivery = consumer.next() => {
                    let Some(Ok(delivery)) = delivery else { return };
                    sending.push_back(publish(delivery));
                    // Every delivery already here, before their publishes are polled: their
                    // frames go to the I/O thread together.
                    while let Some(Some(Ok(delivery))) = consumer.next().now_or_never() {
                        sending.push_back(publish(delivery));
                    }
                }
            }
        }
    });
}

async fn raw_forwarder(place: &Place, client: &Connection, n: usize, data: &[u8]) -> Moved {
    println!("raw lapin forwarder");
    let channel = &open(client).await;
    let (source, target) = ("bench.raw.source".to_owned(), "bench.raw.target".to_owned());
    declare(channel, &source).await;
    declare(channel, &target).await;
    preload(channel, "", &source, n, data, None).await;
    let child = RawChild::start(&place.url, &source, &target, place.mover_cpus);
    let pids: Vec<u32> = [Some(child.pid()), place.broker_pid]
        .into_iter()
        .flatten()
        .collect();
    let sampled = time_with_cpu(channel, &target, n, &pids).await;
    drop(child);
    delete_queues(client, &[source, target]).await;
    let moved = Moved {
        seconds: sampled.timing.seconds(),
        mover_cpu: sampled.cpu[0],
        broker_cpu: place.broker_pid.and(sampled.cpu.get(1).copied().flatten()),
        peak_rss_kib: None,
    };
    report("raw lapin", n, &moved);
    moved
}

async fn shovel(place: &Place, client: &Connection, n: usize, data: &[u8]) -> Option<Moved> {
    println!("RabbitMQ shovel");
    let channel = &open(client).await;
    if !place.enable_shovel() {
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
    assert!(place.ctl(&["set_parameter", "shovel", "bench-shovel", &definition]));
    let pids: Vec<u32> = place.broker_pid.into_iter().collect();
    let sampled = time_with_cpu(channel, &target, n, &pids).await;
    place.ctl(&["clear_parameter", "shovel", "bench-shovel"]);
    delete_queues(client, &[source, target]).await;
    let broker_cpu = sampled.cpu.first().copied().flatten();
    let moved = Moved {
        seconds: sampled.timing.seconds(),
        mover_cpu: broker_cpu,
        broker_cpu,
        peak_rss_kib: None,
    };
    report("shovel", n, &moved);
    Some(moved)
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
    place: &Place,
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

    let gateway = broker::Gateway::start_on(
        &place.url,
        &prefix,
        registry_dir.path(),
        PREFETCH,
        "bench",
        place.mover_cpus,
    );
    let route = &registry.routes[0];
    let flood = (name == "conformist-flooded").then(|| flood(&gateway.base, route.name.as_str()));
    let pids: Vec<u32> = [Some(gateway.pid()), place.broker_pid]
        .into_iter()
        .flatten()
        .collect();
    let sampled = time_with_cpu(channel, &target, n, &pids).await;
    let seconds = sampled.timing.seconds();
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
    gateway.stop();
    broker::delete_topology(client, &names, &registry, &[target]).await;
    let moved = Moved {
        seconds,
        mover_cpu: sampled.cpu[0],
        broker_cpu: place.broker_pid.and(sampled.cpu.get(1).copied().flatten()),
        peak_rss_kib,
    };
    report(name, n, &moved);
    moved
}

/// A mover waiting for the latency run's messages.
enum Idle {
    Raw(RawChild),
    Gateway {
        gateway: broker::Gateway,
        names: Names,
        registry: Box<contextgate::registry::Registry>,
        _dir: tempfile::TempDir,
    },
}

/// End-to-end latency at a steady rate.
struct Latency {
    counted: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

async fn latency(
    place: &Place,
    client: &Connection,
    name: &'static str,
    rate: usize,
    seconds: usize,
    data: &[u8],
) -> Latency {
    println!("latency: {name} at {rate} msg/s for {seconds} s");
    let channel = &open(client).await;
    let template: serde_json::Value = serde_json::from_slice(data).unwrap();
    // The mover, idle on empty queues: (where to publish, the routing key, the target queue).
    let (exchange, routing_key, target, mover) = if name == "raw" {
        let (source, target) = ("bench.raw.source".to_owned(), "bench.raw.target".to_owned());
        declare(channel, &source).await;
        declare(channel, &target).await;
        let child = RawChild::start(&place.url, &source, &target, place.mover_cpus);
        (String::new(), source, target, Idle::Raw(child))
    } else {
        let route = if name == "conformist" {
            "shop-to-audit"
        } else {
            "shop-to-warehouse"
        };
        let registry_dir = registry_with(route);
        let registry =
            contextgate::registry::load(registry_dir.path()).expect("the registry loads");
        let prefix = format!("bench.latency.{name}.");
        let names = Names::new(prefix.clone());
        let (target, upstream) = broker::declare_with_target(channel, &names, &registry).await;
        let gateway = broker::Gateway::start_on(
            &place.url,
            &prefix,
            registry_dir.path(),
            PREFETCH,
            "bench",
            place.mover_cpus,
        );
        (
            upstream,
            "shop.OrderPlaced".to_owned(),
            target,
            Idle::Gateway {
                gateway,
                names,
                registry: Box::new(registry),
                _dir: registry_dir,
            },
        )
    };
    // The receiver: every delivery's latency, from its send time to now.
    let receiving = client.create_channel().await.unwrap();
    let mut deliveries = receiving
        .basic_consume(
            target.as_str().into(),
            "latency".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let total = rate * seconds;
    let warm_up = Duration::from_secs(1);
    let started = epoch().elapsed() + Duration::from_millis(100);
    let receiver = tokio::spawn(async move {
        let mut measured = Vec::with_capacity(total);
        let mut received = 0;
        while received < total {
            let next = tokio::time::timeout(Duration::from_secs(30), deliveries.next()).await;
            let Ok(Some(Ok(delivery))) = next else {
                panic!("latency: {received} of {total} messages arrived");
            };
            let now = epoch().elapsed().as_micros();
            received += 1;
            let sent = sent_at(&delivery.data).expect("the output carries its send time");
            if Duration::from_micros(sent as u64) >= started + warm_up {
                measured.push((now - sent) as f64 / 1_000.0);
            }
        }
        measured
    });
    // The sender: rate/1000 messages each 1 ms tick, with confirms.
    let per_tick = rate / 1_000;
    support::latency::steady(
        &place.url,
        (&exchange, &routing_key),
        &template,
        started,
        |sent| per_tick.min(total - sent),
        latency_properties,
    )
    .await;
    let mut measured = receiver.await.unwrap();
    match mover {
        Idle::Gateway {
            gateway,
            names,
            registry,
            _dir,
        } => {
            drop(gateway);
            broker::delete_topology(client, &names, &registry, &[target]).await;
        }
        Idle::Raw(child) => {
            drop(child);
            delete_queues(client, &[routing_key, target]).await;
        }
    }
    measured.sort_by(f64::total_cmp);
    let at = |q: f64| measured[((measured.len() as f64 * q) as usize).min(measured.len() - 1)];
    let latency = Latency {
        counted: measured.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: measured[measured.len() - 1],
    };
    println!(
        "  {name} at {rate}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} counted)",
        latency.p50_ms, latency.p99_ms, latency.max_ms, latency.counted
    );
    latency
}

/// A binary-mode `shop/OrderPlaced@1`, persistent, as the preloaded inputs are.
fn latency_properties(i: usize) -> BasicProperties {
    broker::properties(i, None)
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

fn report(name: &str, n: usize, moved: &Moved) {
    let per_message = |cpu: Option<f64>| {
        cpu.map_or("–".to_owned(), |cpu| {
            format!("{:.1} µs", cpu * 1e6 / n as f64)
        })
    };
    println!(
        "  {name}: {n} in {:.2} s = {:.0} msg/s; CPU per message: mover {}, broker {}",
        moved.seconds,
        n as f64 / moved.seconds,
        per_message(moved.mover_cpu),
        per_message(moved.broker_cpu),
    );
}
