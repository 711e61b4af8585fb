//! A fleet on one machine, measured, in two parts (`CONTEXTGATE_BENCH_ONLY=follow` or
//! `=throughput` runs one; both by default).
//!
//! **follow**: how fast every instance runs a registration made on another (the registry
//! store's head followed through LISTEN/NOTIFY). Three `contextgate serve` release binaries on
//! the in-process bus share a registry store (a database of the bench's own on the PostgreSQL
//! at 127.0.0.1:5432). Each round registers a new contract on one instance, in turn, and polls
//! the two others every millisecond until they serve it. Two figures per follower: from the
//! registration's 201 (the commit happened before it) and from the request's start (an upper
//! bound on the time since the commit).
//!
//! `CONTEXTGATE_BENCH_ROUNDS` (default 60) registrations; `CONTEXTGATE_BENCH_PG`, default
//! postgres://postgres@127.0.0.1:5432/postgres.
//!
//! **throughput**: 1, 2 and 3 `contextgate serve` release binaries (distinct `--instance-id`s,
//! one `--amqp-prefix` per route kind, unique to the run) on one broker, for a conformist route
//! and for the same route with `ordering_key = "subject"` (sequencer, consistent-hash exchange,
//! 12 shards with single active consumers, balanced over the instances). For each of the six
//! configurations N ~1 KB persistent inputs (1,000 subjects) are pre-loaded into the upstream's
//! exchange, then the instances start together; the clock runs from the first output on a
//! quorum queue bound to the downstream to the last (and, second figure, from the instances'
//! start, which counts their start and, for the ordered route, the 1.5 s an instance listens
//! for the others before it takes shards while its sequencer already moves inputs). CPU per
//! message: the instances' utime + stime (`/proc/<pid>/stat`, from the moment each listens —
//! what it spent loading the registry is printed apart — to the last output) and the broker's
//! (`beam.smp`, from the instances' start to the last output; on a shared broker it includes
//! what others do) divided by N; each instance's share is printed too. The instances stop with
//! SIGTERM after each configuration; everything declared is deleted at the end.
//! `CONTEXTGATE_BENCH_N` (default 100,000), `CONTEXTGATE_BENCH_AMQP_URL` (default
//! guest@127.0.0.1:5672), `CONTEXTGATE_BENCH_BROKER_PID` (default: the `beam.smp` listening on
//! the URL's port).
//!
//! `cargo bench --bench fleet`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use sqlx::Connection as _;
use support::broker::{self, Gateway};

#[allow(dead_code)]
mod support;

/// The prefetch of every instance (as the amqp bench).
const PREFETCH: u16 = 1_000;
/// How many distinct ordering keys (CloudEvents subjects) the inputs carry.
const KEYS: usize = 1_000;

fn main() {
    let only = std::env::var("CONTEXTGATE_BENCH_ONLY").unwrap_or_default();
    let runs = |part: &str| only.is_empty() || only.split(',').any(|one| one == part);
    assert!(
        runs("follow") || runs("throughput"),
        "CONTEXTGATE_BENCH_ONLY is follow or throughput, not {only:?}"
    );
    if runs("follow") {
        follow();
    }
    if runs("throughput") {
        throughput();
    }
}

struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance(seed: &std::path::Path, store: &str) -> Instance {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contextgate"))
        .arg("serve")
        .arg("--registry")
        .arg(seed)
        .args(["--registry-store", store, "--listen", "127.0.0.1:0"])
        .env_remove("CONTEXTGATE_AMQP_URL")
        .env_remove("CONTEXTGATE_CREDENTIALS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the release binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("serve printed its address")
            .expect("stderr reads");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Instance { child, base }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn follow() {
    let rounds: usize = std::env::var("CONTEXTGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(60);
    let admin = std::env::var("CONTEXTGATE_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let database = format!("cg_bench_fleet_{}", std::process::id());
    let store = format!(
        "{}/{database}",
        admin.rsplit_once('/').expect("a database in the URL").0
    );
    runtime.block_on(async {
        let mut connection = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL answers");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut connection)
            .await
            .expect("a database of the bench's own");
    });

    let seed = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let instances: Vec<Instance> = (0..3).map(|_| instance(&seed, &store)).collect();
    // reqwest's rustls has no default crypto provider: the one the gateway uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let (mut after_answer, mut after_request, mut answered) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        for round in 0..rounds {
            let writer = &instances[round % 3];
            let path =
                format!("/v1/contexts/orders/contracts/BenchProbe{round}/versions/1?kind=event");
            let schema = r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#;
            let started = Instant::now();
            let response = client
                .put(format!("{}{path}", writer.base))
                .header("content-type", "application/json")
                .body(schema)
                .send()
                .await
                .expect("the writer answers");
            assert_eq!(response.status(), 201, "{:?}", response.text().await);
            let done = Instant::now();
            answered.push(done - started);
            let read = format!("/v1/contexts/orders/contracts/BenchProbe{round}/versions/1");
            for follower in instances.iter().filter(|other| other.base != writer.base) {
                loop {
                    let status = client
                        .get(format!("{}{read}", follower.base))
                        .send()
                        .await
                        .expect("the follower answers")
                        .status();
                    if status == 200 {
                        after_answer.push(done.elapsed());
                        after_request.push(started.elapsed());
                        break;
                    }
                    assert!(done.elapsed() < Duration::from_secs(10), "never followed");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
    drop(instances);
    runtime.block_on(async {
        if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&mut connection)
            .await;
        }
    });

    println!(
        "registry store: {rounds} registrations, each on one of 3 instances, followed by the 2 others"
    );
    println!("| measure | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, mut figures) in [
        ("registration answered (201)", answered),
        ("follower runs it, from the 201", after_answer),
        ("follower runs it, from the request", after_request),
    ] {
        figures.sort_unstable();
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
            percentile(&figures, 0.5).as_secs_f64() * 1e3,
            percentile(&figures, 0.99).as_secs_f64() * 1e3,
            figures.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
}

/// One configuration's figures.
struct Measured {
    route: &'static str,
    instances: usize,
    /// First output to last.
    seconds: f64,
    /// The instances' start to the last output.
    seconds_from_start: f64,
    gateway_cpu: f64,
    broker_cpu: Option<f64>,
}

fn throughput() {
    let n: usize = std::env::var("CONTEXTGATE_BENCH_N")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let url = broker::amqp_url();
    let broker_pid = broker::broker_pid(&url);
    let data = support::event_data();
    let run = format!("bench.fleet.{}.", std::process::id());
    println!(
        "fleet throughput: N = {n} per configuration, body {} bytes, {KEYS} subjects, prefetch {PREFETCH}, quorum queues, confirms; broker process {}",
        data.len(),
        broker_pid.map_or("not found (no broker CPU)".to_owned(), |pid| pid
            .to_string())
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let conformist = "name = \"shop-to-audit\"\nupstream = \"shop\"\ndownstream = \"audit\"\nmode = \"conformist\"\naccepts = [\"shop/OrderPlaced@1\"]\n";
    let mut results = Vec::new();
    runtime.block_on(async {
        let client = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("RabbitMQ is not reachable at {url}: {error}"));
        let channel = &broker::open(&client).await;
        for (kind, route) in [
            ("conformist", conformist.to_owned()),
            (
                "ordered",
                format!("{conformist}ordering_key = \"subject\"\n"),
            ),
        ] {
            let registry_dir = broker::registry_with(&route);
            let registry =
                contextgate::registry::load(registry_dir.path()).expect("the registry loads");
            let prefix = format!("{run}{kind}.");
            let names = Names::new(prefix.clone());
            let (target, upstream) = broker::declare_with_target(channel, &names, &registry).await;
            let inputs: Vec<String> = match &registry.routes[0] {
                route if route.ordering_key.is_some() => {
                    std::iter::once(names.sequencer_queue(route.name.as_str()))
                        .chain(
                            (0..route.shards)
                                .map(|shard| names.shard_queue(route.name.as_str(), shard)),
                        )
                        .collect()
                }
                route => vec![names.route_queue(route.name.as_str())],
            };
            for instances in 1..=3 {
                println!("{kind} route, {instances} instance(s)");
                broker::preload(channel, &upstream, "shop.OrderPlaced", n, &data, Some(KEYS)).await;
                let broker_before = broker_pid.and_then(broker::cpu_seconds);
                let started = Instant::now();
                // Each instance with its CPU time once it listens: its start (loading and compiling
                // the registry) is not counted per message.
                let (gateways, at_start): (Vec<Gateway>, Vec<f64>) = std::thread::scope(|scope| {
                    let starting: Vec<_> = (1..=instances)
                        .map(|i| {
                            let (url, prefix, dir) = (&url, &prefix, registry_dir.path());
                            scope.spawn(move || {
                                let gateway = Gateway::start(
                                    url,
                                    prefix,
                                    dir,
                                    PREFETCH,
                                    &format!("bench-{i}"),
                                );
                                let cpu =
                                    broker::cpu_seconds(gateway.pid()).expect("the instance runs");
                                (gateway, cpu)
                            })
                        })
                        .collect();
                    starting
                        .into_iter()
                        .map(|handle| handle.join().unwrap())
                        .unzip()
                });
                println!(
                    "  CPU to start (s): {}",
                    at_start
                        .iter()
                        .map(|cpu| format!("{cpu:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let timing = broker::time_until(channel, &target, n).await;
                let each: Vec<f64> = gateways
                    .iter()
                    .zip(&at_start)
                    .map(|(gateway, start)| {
                        broker::cpu_seconds(gateway.pid()).expect("the instance runs") - start
                    })
                    .collect();
                let gateway_cpu: f64 = each.iter().sum();
                let broker_cpu = broker_pid
                    .and_then(broker::cpu_seconds)
                    .zip(broker_before)
                    .map(|(after, before)| after - before);
                std::thread::scope(|scope| {
                    for gateway in gateways {
                        scope.spawn(move || gateway.stop());
                    }
                });
                let measured = Measured {
                    route: kind,
                    instances,
                    seconds: timing.seconds(),
                    seconds_from_start: (timing.last - started).as_secs_f64(),
                    gateway_cpu,
                    broker_cpu,
                };
                println!(
                    "  {n} in {:.2} s = {:.0} msg/s; gateway {:.1} µs/msg, broker {}",
                    measured.seconds,
                    n as f64 / measured.seconds,
                    measured.gateway_cpu / n as f64 * 1e6,
                    measured.broker_cpu.map_or("–".to_owned(), |cpu| format!(
                        "{:.1} µs/msg",
                        cpu / n as f64 * 1e6
                    ))
                );
                // Which instance did the most: on an ordered route, the one that ran the sequencer.
                println!(
                    "  per instance (µs/msg): {}",
                    each.iter()
                        .map(|cpu| format!("{:.1}", cpu / n as f64 * 1e6))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                results.push(measured);
                let moved = broker::purge(channel, &target).await as usize;
                if moved != n {
                    println!("  the target held {moved}, not {n} (repeats after a handover)");
                }
                for queue in &inputs {
                    let left = broker::purge(channel, queue).await;
                    if left > 0 {
                        println!("  {queue} still held {left}: purged");
                    }
                }
            }
            broker::delete_topology(&client, &names, &registry, &[target]).await;
        }
        let _ = client.close(200, "done".into()).await;
    });
    print_table(n, &results);
}

fn print_table(n: usize, results: &[Measured]) {
    println!();
    println!(
        "| route | instances | msg/s (first → last output) | × 1 instance | msg/s (from start) | gateway CPU µs/msg | broker CPU µs/msg | gateway cores | broker cores |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for measured in results {
        let rate = n as f64 / measured.seconds;
        let single = results
            .iter()
            .find(|one| one.route == measured.route && one.instances == 1)
            .map_or(rate, |one| n as f64 / one.seconds);
        let per_message = |cpu: f64| cpu / n as f64 * 1e6;
        println!(
            "| {} | {} | {rate:.0} | {:.2} | {:.0} | {:.1} | {} | {:.2} | {} |",
            measured.route,
            measured.instances,
            rate / single,
            n as f64 / measured.seconds_from_start,
            per_message(measured.gateway_cpu),
            measured
                .broker_cpu
                .map_or("–".to_owned(), |cpu| format!("{:.1}", per_message(cpu))),
            measured.gateway_cpu / measured.seconds_from_start,
            measured.broker_cpu.map_or("–".to_owned(), |cpu| format!(
                "{:.2}",
                cpu / measured.seconds_from_start
            )),
        );
    }
}
