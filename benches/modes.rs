//! Criterion benches: one ~1 KB event through each mode, beside the naive reference pipeline
//! (`serde_json::from_slice` → `is_valid` → `rhai::serde::to_dynamic` → `Engine::call_fn` →
//! `rhai::serde::from_dynamic` → `is_valid` → `serde_json::to_vec`, default `Engine`), and the
//! stages one by one so that BENCHMARKS.md can say where the time goes.
//!
//! Run: `cargo bench --bench modes`. The registry is `benches/registry/`.

use std::hint::black_box;

use contextgate::message::json::parse_strict;
use contextgate::pipeline::Outcome;
use contextgate::registry::ContractId;
use contextgate::scripting;
use contextgate::stages::translate::{self, Meta};
use contextgate::stages::{Stage, validate};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use support::{Bench, Naive};

mod support;

fn modes(c: &mut Criterion) {
    let bench = Bench::new();
    println!("event data: {} bytes", bench.data.len());

    let mut group = c.benchmark_group("modes");
    for (name, route, delivery) in bench.modes() {
        // Sanity: each mode forwards.
        let verdict = bench.run(&route, delivery);
        assert!(
            matches!(verdict.outcome, Outcome::Forward { .. }),
            "{name}: {verdict:?}"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let verdict = bench.run(&route, black_box(delivery));
                // What a transport does next: the output bytes.
                if let Outcome::Forward { messages } = &verdict.outcome {
                    black_box(messages[0].data.len());
                }
                verdict
            })
        });
    }

    // The naive reference, with the same schemas and the same script.
    let naive = Naive::new();
    let data = &bench.data;
    group.bench_function("naive reference (anti-corruption)", |b| {
        b.iter(|| naive.run(black_box(data)))
    });
    group.finish();

    // The stages one by one, on the anti-corruption route.
    let placed = &bench.placed;
    let contract = bench
        .registry
        .contract_version(&ContractId::parse("shop/OrderPlaced@1").unwrap())
        .unwrap()
        .clone();
    let translator = bench.route("shop-to-warehouse").translator.clone().unwrap();
    let value: Value = serde_json::from_slice(data).unwrap();
    let dynamic = scripting::to_dynamic(&value).unwrap();
    let outputs = translate::run(&translator, &value, &Meta::default()).unwrap();
    let output_dynamic = scripting::to_dynamic(&outputs[0]).unwrap();
    let mut group = c.benchmark_group("stages");
    group.bench_function("decode binary headers", |b| {
        b.iter(|| {
            contextgate::stages::receive::decode(
                placed.content_type.as_deref(),
                placed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                black_box(data.clone()),
            )
        })
    });
    group.bench_function("serde_json::from_slice", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(data)).unwrap())
    });
    group.bench_function("parse_strict", |b| {
        b.iter(|| parse_strict(black_box(data)).unwrap())
    });
    group.bench_function("validate in", |b| {
        b.iter(|| validate::against(&contract, black_box(&value), Stage::ValidateIn))
    });
    group.bench_function("rhai::serde::to_dynamic", |b| {
        b.iter(|| rhai::serde::to_dynamic(black_box(&value)).unwrap())
    });
    group.bench_function("scripting::to_dynamic", |b| {
        b.iter(|| scripting::to_dynamic(black_box(&value)).unwrap())
    });
    group.bench_function("call translate (default engine)", |b| {
        b.iter(|| {
            naive
                .engine
                .call_fn::<rhai::Dynamic>(
                    &mut rhai::Scope::new(),
                    &naive.ast,
                    "translate",
                    (dynamic.clone(),),
                )
                .unwrap()
        })
    });
    group.bench_function("call translate (sandboxed engine)", |b| {
        b.iter(|| {
            scripting::with_deadline(|| {
                scripting::engine()
                    .call_fn_with_options::<rhai::Dynamic>(
                        rhai::CallFnOptions::new()
                            .eval_ast(false)
                            .rewind_scope(false),
                        &mut rhai::Scope::new(),
                        &translator.ast,
                        "translate",
                        (dynamic.clone(),),
                    )
                    .unwrap()
            })
        })
    });
    group.bench_function("rhai::serde::from_dynamic", |b| {
        b.iter(|| rhai::serde::from_dynamic::<Value>(black_box(&output_dynamic)).unwrap())
    });
    group.bench_function("scripting::to_json", |b| {
        b.iter(|| scripting::to_json(black_box(&output_dynamic)).unwrap())
    });
    group.bench_function("translate::run (convert + call + convert)", |b| {
        b.iter(|| translate::run(&translator, black_box(&value), &Meta::default()).unwrap())
    });
    group.bench_function("validate out", |b| {
        b.iter(|| {
            validate::against(
                &translator.output,
                black_box(&outputs[0]),
                Stage::ValidateOut,
            )
        })
    });
    group.bench_function("serde_json::to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&outputs[0])).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = modes
}
criterion_main!(benches);
