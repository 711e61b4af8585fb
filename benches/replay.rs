//! A replay under live traffic on the real broker (issue 14): the live route's end-to-end
//! latency while idle and while a replay of at least N archived inputs runs, and the replay's
//! own rate.
//!
//! 1. `contextgate serve` (the release binary, `--data-dir`) with the bench's conformist route
//!    `shop-to-audit`; `shop` is archived (the default).
//! 2. N ~1 KB persistent events are published to `shop`'s outbound exchange; the gateway
//!    forwards them and its archiver appends them to `shop`'s archive stream; the bench waits
//!    until the archive holds them all (a dry run) and empties the target queue.
//! 3. **Idle**: live events at a steady rate (each 1 ms tick, rate/1000 events, with confirms)
//!    for some seconds, each with its send time; the target queue's consumer measures the
//!    latency from just before the publish to the delivery. The first second is warm-up.
//! 4. **Replay**: `POST /v1/replays` of `shop`'s archive from the run's start (everything
//!    above, the idle run's events too) at the replay rate, and the same live traffic, until the job
//!    is done (at least the same seconds). Replayed outputs (they carry the
//!    `cloudEvents_contextgatereplay` header) are counted, not timed.
//! 5. **Idle again**, as long as the replay ran: the broker stalls now and then by itself (a
//!    quorum WAL rollover), so idle is the two idle runs pooled, over about as long as the
//!    replay's run, not 10 s against minutes.
//!
//! The topology (prefix `bench.replay.`) is kept from run to run and purged at the start:
//! deleting quorum queues makes RabbitMQ 3.10's log writer stall every quorum queue for a
//! while later on, which would land in the next run's figures.
//!
//! The replay's rate is the inputs it read over the time from its creation to its last
//! update. The target: live p99 while the replay runs within 2× of idle (before and after
//! pooled); the p50 and p90 ratios are printed beside it.
//!
//! Settings: `CONTEXTGATE_BENCH_N` (100,000), `CONTEXTGATE_BENCH_LIVE_RATE` (1,000/s),
//! `CONTEXTGATE_BENCH_REPLAY_RATE` (the job's `rate`, default 2,000/s; 50,000 is the most a job takes),
//! `CONTEXTGATE_BENCH_REPLAY_FIXED` (1: the job keeps exactly its rate; by default it adapts, and
//! the bench prints the pace it went at, sampled every 200 ms),
//! `CONTEXTGATE_BENCH_LATENCY_SECONDS` (10), `CONTEXTGATE_BENCH_AMQP_URL` (default
//! guest@127.0.0.1:5672).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contextgate::bus::amqp::Names;
use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use support::broker::{self, open, preload, purge};
use support::latency::{epoch, sent_at, steady};

#[allow(dead_code)]
mod support;

const PREFETCH: u16 = 1_000;
const ROUTE: &str = "name = \"shop-to-audit\"\nupstream = \"shop\"\ndownstream = \"audit\"\nmode = \"conformist\"\naccepts = [\"shop/OrderPlaced@1\"]\n";
/// The header replayed outputs carry (binary mode).
const REPLAY_HEADER: &str = "cloudEvents_contextgatereplay";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The live route's latency over one run, and the replayed outputs that came meanwhile.
struct Live {
    /// Every latency measured (ms), least first.
    measured: Vec<f64>,
    replayed: usize,
    /// The worst latencies (ms) and when their events were sent (s into the run).
    worst: Vec<(f64, f64)>,
}

impl Live {
    fn at(&self, q: f64) -> f64 {
        let measured = &self.measured;
        measured[((measured.len() as f64 * q) as usize).min(measured.len() - 1)]
    }

    /// Two runs as one.
    fn pooled(one: &Live, other: &Live) -> Live {
        let mut measured = [one.measured.as_slice(), other.measured.as_slice()].concat();
        measured.sort_by(f64::total_cmp);
        Live {
            measured,
            replayed: one.replayed + other.replayed,
            worst: Vec::new(),
        }
    }
}

fn main() {
    let n = setting("CONTEXTGATE_BENCH_N", 100_000);
    let rate = setting("CONTEXTGATE_BENCH_LIVE_RATE", 1_000).max(1_000);
    let replay_rate = setting("CONTEXTGATE_BENCH_REPLAY_RATE", 2_000);
    let adaptive = setting("CONTEXTGATE_BENCH_REPLAY_FIXED", 0) == 0;
    let seconds = setting("CONTEXTGATE_BENCH_LATENCY_SECONDS", 10).max(2);
    let url = broker::amqp_url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = support::event_data();
    println!(
        "replay bench: N = {n} archived, live {rate}/s, replay rate {replay_rate}/s, body {} bytes, prefetch {PREFETCH}",
        data.len()
    );
    // reqwest has rustls without a default provider (the gateway configures its own): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    runtime.block_on(async {
        let client = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("RabbitMQ is not reachable at {url}: {error}"));
        let channel = &open(&client).await;
        let registry_dir = broker::registry_with(ROUTE);
        let registry = contextgate::registry::load(registry_dir.path()).expect("the registry loads");
        let prefix = "bench.replay.";
        let names = Names::new(prefix);
        // The topology stays from run to run: deleting quorum queues makes this broker's log
        // writer stall every quorum queue for a while later on (`segment_writer … enoent`),
        // which would land in a later run's figures. So what a run left is purged, and the
        // replay's window starts with this run (the archive keeps earlier runs' inputs).
        let (target, upstream) = broker::declare_with_target(channel, &names, &registry).await;
        let shop = contextgate::registry::ContextName::parse("shop").unwrap();
        purge(channel, &target).await;
        for queue in [names.route_queue("shop-to-audit"), names.archiving(&shop)] {
            // Not there before the first run (the gateway declares them): a channel of its own.
            let own = client.create_channel().await.unwrap();
            let _ = own
                .queue_purge(queue.as_str().into(), Default::default())
                .await;
        }
        let from = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let data_dir = tempfile::tempdir().unwrap();
        let gateway = broker::Gateway::start_with(
            &url,
            prefix,
            registry_dir.path(),
            PREFETCH,
            "bench",
            None,
            &["--data-dir".as_ref(), data_dir.path().as_os_str()],
        );
        let base = gateway.base.clone();
        wait_ready(&http, &base).await;

        preload(channel, &upstream, "shop.OrderPlaced", n, &data, None).await;
        let archived = Instant::now();
        while survey(&http, &base, &from).await < n as u64 {
            assert!(
                archived.elapsed() < Duration::from_secs(600),
                "the archive did not get the {n} inputs"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        broker::time_until(channel, &target, n).await;
        println!(
            "  {n} forwarded and archived {:.1} s after the last publish",
            archived.elapsed().as_secs_f64()
        );
        purge(channel, &target).await;

        let template: Value = serde_json::from_slice(&data).unwrap();
        println!("idle: live {rate}/s for {seconds} s");
        let idle = live(&url, &client, (&upstream, &target), &template, rate, seconds, None).await;
        report("idle", &idle);

        let total = survey(&http, &base, &from).await;
        println!(
            "replay of {total} archived inputs at most {replay_rate}/s ({}), live {rate}/s alongside",
            if adaptive { "adaptive" } else { "fixed rate" }
        );
        let answer = http
            .post(format!("{base}/v1/replays"))
            .header("content-type", "application/json")
            .body(
                json!({"context": "shop", "from": from, "rate": replay_rate, "adaptive": adaptive})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
        let job: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        let running = Arc::new(AtomicBool::new(true));
        let watcher = {
            let (http, url, running) = (http.clone(), format!("{base}/v1/replays/{id}"), running.clone());
            tokio::spawn(async move {
                let mut paces = Vec::new();
                loop {
                    let job = get(&http, &url).await;
                    if job["status"] != "running" {
                        running.store(false, Ordering::Relaxed);
                        return (job, paces);
                    }
                    paces.extend(job["pace"].as_u64().filter(|pace| *pace > 0));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let replaying = Instant::now();
        let during = live(
            &url,
            &client,
            (&upstream, &target),
            &template,
            rate,
            seconds,
            Some(&running),
        )
        .await;
        let (job, mut paces) = watcher.await.unwrap();
        report("during the replay", &during);
        paces.sort_unstable();
        if let (Some(least), Some(most)) = (paces.first(), paces.last()) {
            println!(
                "  replay pace (every 200 ms, {} samples): least {least}/s, median {}/s, most {most}/s",
                paces.len(),
                paces[paces.len() / 2]
            );
        }
        assert_eq!(job["status"], "done", "{job}");
        let counts = &job["counts"];
        let read = counts["read"].as_u64().unwrap_or(0);
        let took_ms = job["updated_ms"].as_i64().unwrap() - job["created_ms"].as_i64().unwrap();
        println!(
            "  replay: {read} read in {:.1} s = {:.0} inputs/s; counts {counts}; {} replayed outputs seen during the live run",
            took_ms as f64 / 1_000.0,
            read as f64 * 1_000.0 / took_ms.max(1) as f64,
            during.replayed
        );
        // The broker stalls now and then by itself (a quorum WAL rollover every few minutes of
        // this traffic), so idle is measured as long as the replay ran, too, after it: a p99
        // over 10 s against one over minutes would count those stalls on one side only.
        let after_seconds = (replaying.elapsed().as_secs_f64().round() as usize).max(seconds);
        println!("idle again: live {rate}/s for {after_seconds} s");
        let after = live(&url, &client, (&upstream, &target), &template, rate, after_seconds, None).await;
        report("idle, after the replay", &after);
        let idle = Live::pooled(&idle, &after);
        report("idle, before and after", &idle);
        let ratio = during.at(0.99) / idle.at(0.99);
        println!(
            "target: live p99 during the replay within 2x of idle: {:.2} ms vs {:.2} ms = {ratio:.2}x — {} \
             (p50 {:.2}x, p90 {:.2}x)",
            during.at(0.99),
            idle.at(0.99),
            if ratio <= 2.0 { "met" } else { "NOT met" },
            during.at(0.5) / idle.at(0.5),
            during.at(0.9) / idle.at(0.9),
        );
        println!("  gateway peak RSS {} MiB", gateway.peak_rss_kib().unwrap_or(0) / 1024);
        gateway.stop();
    });
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(answer) = http.get(format!("{base}/health/ready")).send().await
            && answer.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway at {base} did not get ready");
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// How many inputs `shop`'s archive holds from `from` on (a dry run).
async fn survey(http: &reqwest::Client, base: &str, from: &str) -> u64 {
    let answer = http
        .post(format!("{base}/v1/replays?dry_run=true"))
        .header("content-type", "application/json")
        .body(json!({"context": "shop", "from": from}).to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(status.is_success(), "the dry run failed: {status} {text}");
    let survey: Value = serde_json::from_str(&text).unwrap();
    survey["total"].as_u64().expect("a dry run's total")
}

/// Live events at `rate` for `seconds` — and on while `running` is set — and their latency
/// to the target queue; replayed outputs there are counted apart.
async fn live(
    url: &str,
    client: &Connection,
    (exchange, target): (&str, &str),
    template: &Value,
    rate: usize,
    seconds: usize,
    running: Option<&AtomicBool>,
) -> Live {
    let receiving = client.create_channel().await.unwrap();
    let mut deliveries = receiving
        .basic_consume(
            target.into(),
            "latency".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let started = epoch().elapsed() + Duration::from_millis(100);
    let warm_up = Duration::from_secs(1);
    let sent_total = Arc::new(AtomicUsize::new(usize::MAX));
    let replayed = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let (sent_total, replayed) = (sent_total.clone(), replayed.clone());
        tokio::spawn(async move {
            let mut measured = Vec::new();
            let mut received = 0;
            // Woken every 200 ms to see whether the sender is done and all its events came.
            let mut quiet = Duration::ZERO;
            while received < sent_total.load(Ordering::Relaxed) {
                let next =
                    tokio::time::timeout(Duration::from_millis(200), deliveries.next()).await;
                let delivery = match next {
                    Err(_) => {
                        quiet += Duration::from_millis(200);
                        assert!(
                            quiet < Duration::from_secs(60),
                            "live: {received} messages arrived, then none for 60 s"
                        );
                        continue;
                    }
                    Ok(Some(Ok(delivery))) => delivery,
                    Ok(other) => panic!("live: the consumer ended after {received}: {other:?}"),
                };
                quiet = Duration::ZERO;
                let now = epoch().elapsed().as_micros();
                let is_replay = delivery
                    .properties
                    .headers()
                    .as_ref()
                    .is_some_and(|headers| headers.inner().contains_key(REPLAY_HEADER));
                if is_replay {
                    replayed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                received += 1;
                let sent = sent_at(&delivery.data).expect("the output carries its send time");
                let at = Duration::from_micros(sent as u64);
                if at >= started + warm_up {
                    let into = (at - started).as_secs_f64();
                    measured.push(((now - sent) as f64 / 1_000.0, into));
                }
            }
            measured
        })
    };
    let per_tick = rate / 1_000;
    let at_least = rate * seconds;
    let going = |sent: usize| {
        sent < at_least || running.is_some_and(|running| running.load(Ordering::Relaxed))
    };
    let sent = steady(
        url,
        (exchange, "shop.OrderPlaced"),
        template,
        started,
        |sent| if going(sent) { per_tick } else { 0 },
        |n| broker::properties(1_000_000_001 + n, None),
    )
    .await;
    sent_total.store(sent, Ordering::Relaxed);
    let mut timed = receiver.await.unwrap();
    let _ = receiving.close(200, "done".into()).await;
    timed.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut worst: Vec<(f64, f64)> = Vec::new();
    for &(latency, into) in &timed {
        // One per stall: the worst of each second.
        if worst.len() < 5 && worst.iter().all(|(_, at)| (at - into).abs() > 1.0) {
            worst.push((latency, into));
        }
    }
    let mut measured: Vec<f64> = timed.iter().map(|(latency, _)| *latency).collect();
    measured.sort_by(f64::total_cmp);
    assert!(!measured.is_empty(), "live: nothing measured");
    Live {
        measured,
        replayed: replayed.load(Ordering::Relaxed),
        worst,
    }
}

fn report(what: &str, live: &Live) {
    println!(
        "  live, {what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} counted)",
        live.at(0.50),
        live.at(0.90),
        live.at(0.99),
        live.at(1.0),
        live.measured.len()
    );
    if live.worst.is_empty() {
        return;
    }
    let worst: Vec<String> = live
        .worst
        .iter()
        .map(|(latency, at)| format!("{latency:.0} ms at {at:.1} s"))
        .collect();
    println!("    worst (one per second): {}", worst.join(", "));
}
