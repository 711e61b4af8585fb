//! End-to-end latency in the benches on a broker: each event carries its send time.

use std::sync::OnceLock;
use std::time::Instant;

/// The bench's clock: send times are microseconds since this instant.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The event with its send time (µs since [`epoch`]) as its `order_id`, `o-<µs>`.
pub(crate) fn stamped(data: &serde_json::Value, micros: u128) -> Vec<u8> {
    let mut data = data.clone();
    data["order_id"] = format!("o-{micros}").into();
    serde_json::to_vec(&data).unwrap()
}

/// The send time in a delivered body: the digits after `"order_id":"o-` (the conformist route
/// forwards the input's bytes; the anti-corruption route's translator copies `order_id`).
pub(crate) fn sent_at(body: &[u8]) -> Option<u128> {
    let marker = b"\"order_id\":\"o-";
    let at = body
        .windows(marker.len())
        .position(|window| window == marker)?
        + marker.len();
    let digits = body[at..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The steady sender: from `started` (since [`epoch`]) on a connection of its own, each 1 ms
/// tick `batch(sent)` copies of `template` stamped with their send time (0 ends it), a tick's
/// publishes side by side (each resolves once lapin's I/O thread wrote it: one after another
/// they would fall behind at 8,000 a second), confirms awaited at most 5,000 behind and all at
/// the end. The `n`-th event gets `properties(n)`. Returns how many it sent.
pub(crate) async fn steady(
    url: &str,
    (exchange, routing_key): (&str, &str),
    template: &serde_json::Value,
    started: std::time::Duration,
    batch: impl Fn(usize) -> usize,
    properties: impl Fn(usize) -> lapin::BasicProperties,
) -> usize {
    use futures_util::StreamExt;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    tokio::time::sleep_until(tokio::time::Instant::from_std(epoch() + started)).await;
    let sender = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = &super::broker::open(&sender).await;
    let mut confirms = futures_util::stream::FuturesOrdered::new();
    let mut sent = 0;
    loop {
        let batch = batch(sent);
        if batch == 0 {
            break;
        }
        ticks.tick().await;
        let bodies: Vec<Vec<u8>> = (0..batch)
            .map(|_| stamped(template, epoch().elapsed().as_micros()))
            .collect();
        let publishes = bodies.iter().enumerate().map(|(i, body)| {
            channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties(sent + i),
            )
        });
        for confirm in futures_util::future::join_all(publishes).await {
            confirms.push_back(confirm.unwrap());
        }
        sent += batch;
        while confirms.len() > 5_000 {
            assert!(confirms.next().await.unwrap().unwrap().is_ack());
        }
    }
    while let Some(confirm) = confirms.next().await {
        assert!(confirm.unwrap().is_ack());
    }
    let _ = sender.close(200, "done".into()).await;
    sent
}
