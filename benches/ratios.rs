//! The ratios the targets are stated in, measured interleaved: this machine's speed drifts by
//! tens of percent between one criterion bench and the next, so each round times a batch of the
//! naive reference and a batch of every mode back to back, and the ratios are taken per round.
//! Prints the median time per event of each and the median ratio over the rounds.
//!
//! The bench runs on mimalloc, as the `contextgate` binary does (naive reference included).
//!
//! Run: `cargo bench --bench ratios` (`-- --rounds N` to change the 60 rounds of 2 000 events,
//! `-- --only NAME` to time the naive reference and the modes whose name starts with NAME, as
//! when profiling one of them).

use std::hint::black_box;
use std::time::Instant;

use contextgate::pipeline::Outcome;
use support::{Bench, Naive};

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u32 = 2_000;

fn main() {
    let option = |name: &str| std::env::args().skip_while(|arg| arg != name).nth(1);
    let rounds: usize =
        option("--rounds").map_or(60, |n| n.parse().expect("--rounds takes a number"));
    let only = option("--only");
    let bench = Bench::new();
    let naive = Naive::new();
    let modes: Vec<_> = bench
        .modes()
        .into_iter()
        .filter(|(name, _, _)| only.as_deref().is_none_or(|only| name.starts_with(only)))
        .collect();
    let time = |run: &mut dyn FnMut()| -> f64 {
        let started = Instant::now();
        for _ in 0..BATCH {
            run();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
    };
    let mut naive_times = Vec::new();
    let mut mode_times = vec![Vec::new(); modes.len()];
    let mut ratios = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        let naive_time = time(&mut || {
            black_box(naive.run(black_box(&bench.data)));
        });
        naive_times.push(naive_time);
        for (index, (_, route, delivery)) in modes.iter().enumerate() {
            let mode_time = time(&mut || {
                let verdict = bench.run(route, black_box(delivery));
                assert!(matches!(verdict.outcome, Outcome::Forward { .. }));
                black_box(verdict);
            });
            mode_times[index].push(mode_time);
            ratios[index].push(naive_time / mode_time);
        }
    }
    println!(
        "event data: {} bytes; {rounds} rounds of {BATCH} events each",
        bench.data.len()
    );
    println!(
        "{:<28} {:>12} {:>22}",
        "pipeline", "µs/event", "naive ÷ this (median)"
    );
    println!(
        "{:<28} {:>12.2} {:>22}",
        "naive reference",
        median(&mut naive_times),
        "1.00"
    );
    for (index, (name, _, _)) in modes.iter().enumerate() {
        println!(
            "{:<28} {:>12.2} {:>22.2}",
            name,
            median(&mut mode_times[index]),
            median(&mut ratios[index])
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
