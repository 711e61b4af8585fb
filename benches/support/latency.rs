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
