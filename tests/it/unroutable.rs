//! Every input ends exactly once — forwarded or dead-lettered, never both, never neither — when
//! outputs are unroutable: nothing bound downstream, or one route's downstream bound while
//! another's is not. The broker's `basic.return`s must be attributed to their own publishes on a
//! confirm channel that every lane and route shares (issue 10, item 1). The same under a fault
//! is in `faults`.

use std::collections::BTreeMap;
use std::time::Duration;

use contextgate::bus::amqp::Names;

use crate::broker::{self, Cleanup, Client, assert_exactly_once};
use crate::helpers::Fixture;

/// A route with a dedup window (issue 14).
pub(crate) const IDEMPOTENT: &str = "dedup = \"10m\"";
/// `up`'s inputs archived (issue 14).
pub(crate) const ARCHIVED: &str = "\n[contexts.up.archive]\nmax_age = \"1d\"\n";

/// Inputs in the backlog.
const N: usize = 2_000;
/// How long a queue must stay quiet after the last expected message: repeats would come by then.
const SETTLE: Duration = Duration::from_secs(2);

/// The fixture's conformist `up-to-down`, and a second conformist route `up-to-side` from the
/// same upstream to a context `side` that nobody subscribed to; `route_extra` on both routes (an
/// ordering key, say).
pub(crate) fn two_routes_with(route_extra: &str) -> Fixture {
    let fixture = Fixture::new("conformist", None, route_extra);
    fixture.append(&format!(
        r#"
[[routes]]
name = "up-to-side"
upstream = "up"
downstream = "side"
mode = "conformist"
accepts = ["up/Thing@1"]
{route_extra}

[contexts.side]
"#
    ));
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_whose_output_nobody_takes_is_dead_lettered_exactly_once() {
    unbound_outputs_are_dead_lettered_exactly_once("", "unbound", false).await;
}

/// The same on an idempotent route of an archived context (issue 14): dedup and the archive
/// change no input's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_of_an_idempotent_archived_route_whose_output_nobody_takes_is_dead_lettered_exactly_once()
 {
    unbound_outputs_are_dead_lettered_exactly_once(IDEMPOTENT, "unbound-dedup", true).await;
}

/// The same through an ordered route: the sequencer and the shards in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_of_an_ordered_route_whose_output_nobody_takes_is_dead_lettered_exactly_once() {
    unbound_outputs_are_dead_lettered_exactly_once(
        "ordering_key = \"/n\"",
        "unbound-ordered",
        false,
    )
    .await;
}

async fn unbound_outputs_are_dead_lettered_exactly_once(
    route_extra: &str,
    tag: &str,
    archived: bool,
) {
    let fixture = Fixture::new("conformist", None, route_extra);
    if archived {
        fixture.append(ARCHIVED);
    } else {
        fixture.not_archived("up");
    }
    let pipeline = fixture.pipeline();
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix(tag);
    let names = Names::new(prefix.clone());
    let _cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let client = Client::connect(&url).await;
    broker::declare(&client, &names, pipeline.registry()).await;
    let accepted = broker::publish_backlog(&client, &names, "u", N).await;

    let gateway = broker::start(pipeline, broker::settings(&url, &prefix)).await;
    let dead = broker::dead_letter_ids(&url, &names, Some("up-to-down"), N, SETTLE).await;

    assert_exactly_once(&accepted, &dead, "dead-lettered as unroutable");
    let input_queue = if !route_extra.contains("ordering_key") {
        names.route_queue("up-to-down")
    } else {
        names.sequencer_queue("up-to-down")
    };
    assert_eq!(client.count(&input_queue).await, 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_downstream_bound_and_one_not_each_input_is_forwarded_once_and_dead_lettered_once()
{
    half_bound("", "mixed", false).await;
}

/// The same through two ordered routes: their sequencers and shards in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_ordered_routes_with_one_downstream_bound_each_input_is_forwarded_once_and_dead_lettered_once()
 {
    half_bound("ordering_key = \"/n\"", "mixed-ordered", false).await;
}

/// The same on idempotent routes of an archived context (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_idempotent_routes_of_an_archived_context_each_input_is_forwarded_once_and_dead_lettered_once()
 {
    half_bound(IDEMPOTENT, "mixed-dedup", true).await;
}

async fn half_bound(route_extra: &str, tag: &str, archived: bool) {
    let fixture = two_routes_with(route_extra);
    if archived {
        fixture.append(ARCHIVED);
    } else {
        fixture.not_archived("up");
    }
    let pipeline = fixture.pipeline();
    let url = broker::amqp_url();
    let prefix = broker::unique_prefix(tag);
    let names = Names::new(prefix.clone());
    let cleanup = Cleanup::new(&url, &names, pipeline.registry());
    let client = Client::connect(&url).await;
    broker::declare(&client, &names, pipeline.registry()).await;
    let inbox = format!("{prefix}inbox.down");
    cleanup.queue(&inbox);
    client
        .subscribe(&inbox, &names.inbound(&broker::context("down")))
        .await;
    let accepted = broker::publish_backlog(&client, &names, "m", N).await;

    let gateway = broker::start(pipeline, broker::settings(&url, &prefix)).await;
    let forwarded = broker::ids_in(&url, &inbox, N, SETTLE, Duration::from_secs(30)).await;
    let dead_side = broker::dead_letter_ids(&url, &names, Some("up-to-side"), N, SETTLE).await;
    let dead_down = broker::dead_letter_ids(&url, &names, Some("up-to-down"), 0, SETTLE).await;

    assert_exactly_once(&accepted, &forwarded, "forwarded on up-to-down");
    assert_exactly_once(&accepted, &dead_side, "dead-lettered on up-to-side");
    assert_eq!(
        dead_down,
        BTreeMap::new(),
        "no input forwarded on up-to-down is also its dead letter"
    );
    gateway.stop().await;
}

/// A replay through the same pair of idempotent routes, one downstream bound and one not
/// (issue 14): with dedup (the default for replays) no input comes out forwarded again and each
/// is dead-lettered once more on the unbound route, as it never went through; without dedup each
/// is forwarded once more and dead-lettered once more. Counted per input id on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_a_bound_and_an_unbound_route_ends_each_input_once_per_route() {
    const REPLAYED: usize = 1_000;
    let fixture = two_routes_with(IDEMPOTENT);
    fixture.append(ARCHIVED);
    let live = crate::replay::on_broker_at(&fixture, "replay-mixed", &broker::amqp_url()).await;
    let url = broker::amqp_url();
    let accepted = broker::publish_backlog(&live.client, &live.names, "r", REPLAYED).await;
    let forwarded =
        broker::ids_in(&url, &live.inbox, REPLAYED, SETTLE, Duration::from_secs(30)).await;
    assert_exactly_once(&accepted, &forwarded, "live: forwarded on up-to-down");
    let dead =
        broker::dead_letter_ids(&url, &live.names, Some("up-to-side"), REPLAYED, SETTLE).await;
    assert_exactly_once(&accepted, &dead, "live: dead-lettered on up-to-side");

    // Every input is in the archive before the window is replayed.
    let window = serde_json::json!({"context": "up", "from": "1h", "rate": 2000});
    let mut survey = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, found) =
            crate::replay::post_json(&format!("{}/v1/replays?dry_run=true", live.base), &window)
                .await;
        assert_eq!(status, 200, "{found}");
        survey = found;
        if survey["total"] == REPLAYED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(survey["total"], REPLAYED, "{survey}");

    let job = crate::replay::replay_to_the_end(&live.base, window.clone()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["counts"]["read"], REPLAYED, "{job}");
    assert_eq!(
        job["counts"]["duplicate"], REPLAYED,
        "up-to-down's window: {job}"
    );
    assert_eq!(
        job["counts"]["dead_lettered"], REPLAYED,
        "up-to-side: {job}"
    );
    live.client
        .assert_empty(&live.inbox, Duration::from_secs(1))
        .await;
    let dead =
        broker::dead_letter_ids(&url, &live.names, Some("up-to-side"), 2 * REPLAYED, SETTLE).await;
    assert_each_id_ended(
        &accepted,
        &dead,
        2,
        "dead-lettered on up-to-side, live and replayed",
    );

    let mut without_dedup = window;
    without_dedup["dedup"] = false.into();
    let again = crate::replay::replay_to_the_end(&live.base, without_dedup).await;
    assert_eq!(again["status"], "done", "{again}");
    assert_eq!(again["counts"]["forwarded"], REPLAYED, "{again}");
    assert_eq!(again["counts"]["dead_lettered"], REPLAYED, "{again}");
    let forwarded =
        broker::ids_in(&url, &live.inbox, REPLAYED, SETTLE, Duration::from_secs(30)).await;
    assert_exactly_once(
        &accepted,
        &forwarded,
        "replayed without dedup: forwarded on up-to-down",
    );
    let dead =
        broker::dead_letter_ids(&url, &live.names, Some("up-to-side"), 3 * REPLAYED, SETTLE).await;
    assert_each_id_ended(
        &accepted,
        &dead,
        3,
        "dead-lettered on up-to-side, live and twice replayed",
    );
    live.stop.send_replace(true);
}

/// Every accepted id exactly `times` times in `counts`, and nothing else.
fn assert_each_id_ended(
    accepted: &std::collections::BTreeSet<String>,
    counts: &BTreeMap<String, usize>,
    times: usize,
    what: &str,
) {
    let wrong: Vec<(&String, usize)> = accepted
        .iter()
        .map(|id| (id, counts.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != times)
        .collect();
    let unexpected: Vec<&String> = counts.keys().filter(|id| !accepted.contains(*id)).collect();
    assert!(
        wrong.is_empty() && unexpected.is_empty(),
        "{what}: every input {times} times; {} wrong (first {:?}), unexpected {unexpected:?}",
        wrong.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
}
