//! A fleet on one machine, measured: how fast every instance runs a registration made on another
//! (the registry store's head followed through LISTEN/NOTIFY).
//!
//! Three `contextgate serve` release binaries on the in-process bus share a registry store (a
//! database of the bench's own on the PostgreSQL at 127.0.0.1:5432). Each round registers a new
//! contract on one instance, in turn, and polls the two others every millisecond until they
//! serve it. Two figures per follower: from the registration's 201 (the commit happened before
//! it) and from the request's start (an upper bound on the time since the commit).
//!
//! `cargo bench --bench fleet` (`CONTEXTGATE_BENCH_ROUNDS`, default 60;
//! `CONTEXTGATE_BENCH_PG`, default postgres://postgres@127.0.0.1:5432/postgres).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;

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

fn main() {
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
