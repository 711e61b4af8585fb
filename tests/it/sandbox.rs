//! Each case registers a translator that misbehaves and runs one message through it: the
//! failure is a dead letter at the translate stage with its reason, and the process lives on.

use std::time::{Duration, Instant};

use contextgate::pipeline::Outcome;
use contextgate::stages::{Reason, Stage};
use serde_json::json;

use crate::helpers::*;

async fn translate_failure(script: &str, reason: Reason) -> String {
    let fixture = Fixture::new("anti-corruption", Some(script), "");
    let started = Instant::now();
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{script} took {:?}",
        started.elapsed()
    );
    dead_letter(&verdict, Stage::Translate, reason).to_string()
}

#[tokio::test]
async fn endless_loops_are_stopped_by_the_budget() {
    // C6
    translate_failure("fn translate(data) { loop {} }", Reason::ScriptTimeout).await;
    translate_failure(
        "fn translate(data) { while true {} }",
        Reason::ScriptTimeout,
    )
    .await;
}

#[tokio::test]
async fn sleep_fails_at_once() {
    // C7
    let started = Instant::now();
    let text = translate_failure(
        "fn translate(data) { sleep(100); #{} }",
        Reason::ScriptError,
    )
    .await;
    assert!(text.contains("sleep is not available"), "{text}");
    translate_failure(
        "fn translate(data) { sleep(1e9); #{} }",
        Reason::ScriptError,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn endless_recursion_is_a_limit() {
    // C8
    translate_failure(
        "fn f(x) { f(x) } fn translate(data) { f(1) }",
        Reason::ScriptLimit,
    )
    .await;
}

#[tokio::test]
async fn deeply_nested_source_is_refused_at_load() {
    // C8
    let nested = format!(
        "fn translate(data) {{ {}1{} }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let fixture = Fixture::new("anti-corruption", Some(&nested), "");
    let problems = problems(fixture.root());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("translators/down/map.rhai")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn growing_strings_hit_the_size_limit() {
    // C9
    translate_failure(
        "fn translate(data) { let s = \"x\"; loop { s += s; } }",
        Reason::ScriptLimit,
    )
    .await;
}

#[tokio::test]
async fn output_nested_too_deep_is_refused_by_the_converter() {
    // C10
    let text = translate_failure(
        "fn translate(data) { let m = #{}; for i in 0..300 { m = #{ x: m }; } m }",
        Reason::OutputTooDeep,
    )
    .await;
    assert!(text.contains("deeper than"), "{text}");
}

#[tokio::test]
async fn a_shared_string_copied_into_a_huge_output_is_refused_at_the_message_cap() {
    // Issue 10: 130 bytes of script, 650 MB of JSON if converted to the end.
    let script = "fn translate(data) { let s = \"a\"; for i in 0..16 { s += s; } s.truncate(65000); \
                  let m = #{}; for i in 0..9999 { m[\"k\" + i] = s; } m }";
    let fixture = Fixture::new("anti-corruption", Some(script), "");
    // The script needs ~15 ms of its 50 ms budget; on a machine too busy for that it runs out
    // of time first, which is not what is under test: it is run again (ten times at most: a
    // suite sharing two cores with a compile has seen three in a row run out).
    let mut failure = None;
    for _ in 0..10 {
        let started = Instant::now();
        let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        let Outcome::DeadLetter { failure: found } = verdict.outcome else {
            panic!("{verdict:?}");
        };
        if found.reason != Reason::ScriptTimeout {
            failure = Some(found);
            break;
        }
    }
    let failure = failure.expect("the script ran out of time ten times");

    assert_eq!(
        (failure.stage, failure.reason),
        (Stage::Translate, Reason::OutputTooLarge)
    );
    assert!(
        failure
            .to_string()
            .contains("more than 1048576 bytes of JSON in one output"),
        "{failure}"
    );
    // The process never held the 650 MB (Linux: the peak resident set of this test process).
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let peak_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("/proc/self/status has VmHWM");
        assert!(peak_kib < 400 * 1024, "peak resident set {peak_kib} KiB");
    }
}

#[tokio::test]
async fn import_and_eval_are_refused_at_load_with_their_line() {
    // C11
    for script in [
        "import \"/etc/passwd\" as x;\nfn translate(data) { data }",
        "fn translate(data) {\n  eval(\"data\")\n}",
    ] {
        let fixture = Fixture::new("anti-corruption", Some(script), "");
        let problems = problems(fixture.root());
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("translators/down/map.rhai:")
                    && p.contains("does not compile")),
            "{problems:?}"
        );
    }
}

#[tokio::test]
async fn print_in_a_loop_does_not_fail_the_translation() {
    // C12
    let fixture = Fixture::new(
        "anti-corruption",
        Some(
            "fn translate(data) { for i in 0..500 { print(i); debug(i); } #{ id: data.id, total: 1 } }",
        ),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    assert_eq!(forwarded(&verdict).len(), 1);
}

#[tokio::test]
async fn throws_and_non_messages_are_script_errors_with_a_short_message() {
    // C13
    let text =
        translate_failure("fn translate(data) { throw \"boom\" }", Reason::ScriptError).await;
    assert!(text.contains("boom"), "{text}");
    let long = format!("fn translate(data) {{ throw \"{}\" }}", "x".repeat(5000));
    let text = translate_failure(&long, Reason::ScriptError).await;
    assert!(
        text.len() < 1000,
        "messages are truncated: {} bytes",
        text.len()
    );
    translate_failure("fn translate(data) { \"a string\" }", Reason::ScriptError).await;
    translate_failure("fn translate(data) { [1, 2] }", Reason::ScriptError).await;
    translate_failure("fn translate(data) { |x| x }", Reason::ScriptError).await;
}

#[tokio::test]
async fn routing_fields_in_the_output_change_nothing_but_the_data() {
    // C14: the output goes where the route says; a field is just a field (and here, not allowed
    // by the downstream contract).
    let fixture = Fixture::new(
        "anti-corruption",
        Some("fn translate(data) { #{ id: data.id, total: 1, __route: \"other.ctx\" } }"),
        "",
    );
    let verdict = fixture.run(&json!({"id": "a", "n": 1})).await;
    dead_letter(
        &verdict,
        Stage::ValidateOut,
        Reason::OutputContractViolation,
    );
}

#[tokio::test]
async fn exit_and_parse_json_are_errors() {
    // C15
    translate_failure(
        "fn translate(data) { exit(#{ id: \"x\", total: 1 }) }",
        Reason::ScriptError,
    )
    .await;
    translate_failure(
        "fn translate(data) { parse_json(\"{}\") }",
        Reason::ScriptError,
    )
    .await;
}

#[tokio::test]
async fn scripts_without_translate_are_refused_at_load() {
    let fixture = Fixture::new("anti-corruption", Some("fn map(data) { data }"), "");
    let problems = problems(fixture.root());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("defines no fn translate")),
        "{problems:?}"
    );
}
