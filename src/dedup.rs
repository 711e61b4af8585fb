//! Idempotent routes: the inputs a route forwarded within its dedup window, by `source` and
//! `id`, so that a repeat is dropped as a `duplicate` instead of forwarded again.
//!
//! A key is *claimed* when a route's outcome is to forward the input, *confirmed* once the
//! outputs were delivered (in process at once; on RabbitMQ after the broker's confirms), and
//! *released* when they were not (a requeue, a dead letter, a retry, or the task awaiting the
//! confirms aborted with its session: a [`Held`] claim releases itself when dropped): so a copy that arrives
//! while the first is in flight is a duplicate, and a copy of an input that did not go through
//! is not — nothing is lost to dedup. A confirmed key stays for the window, then leaves.
//!
//! Each process keeps one [`Windows`]: per route, the keys in memory, at most [`MAX_KEYS`]
//! (past that the oldest leave early, counted in `contextgate_dedup_evicted_total`). On
//! RabbitMQ the instances of a fleet share what they confirmed through a stream per route
//! (`bus::amqp::dedup`): each sends its confirmed keys there ([`Windows::take_confirmed`]) and
//! reads everyone's into its own windows ([`Windows::seen`]), also after a restart. A replay's
//! keys on a route without a window of its own stay on its instance ([`Held::confirm_here`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::message::Attributes;
use crate::pipeline::Outcome;
use crate::registry::{Route, RouteName};
use crate::telemetry;

/// The most keys one route's window holds in one process (about 48 bytes each).
pub const MAX_KEYS: usize = 1_000_000;

/// The window of a replay on a route without `dedup` of its own.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(600);

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key is now held by this input: confirm or release it.
    Claimed,
    /// Forwarded within the window, or in flight: a duplicate.
    Duplicate,
}

/// An input's identity on a route: 128 bits of the SHA-256 of its `source` and `id`, the same
/// in every instance and version (the instances of a fleet share keys, see [`Key::to_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(u128);

impl Key {
    /// The key of a message: its `source` and `id`.
    pub fn of(attributes: &Attributes) -> Self {
        Self::of_parts(&attributes.source, &attributes.id)
    }

    fn of_parts(source: &str, id: &str) -> Self {
        let mut digest = Sha256::new();
        digest.update((source.len() as u64).to_be_bytes());
        digest.update(source.as_bytes());
        digest.update(id.as_bytes());
        let digest = digest.finalize();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self::from_bytes(bytes)
    }

    /// The key as 16 bytes, as the instances of a fleet exchange it.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The key of [`Key::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(u128::from_be_bytes(bytes))
    }
}

/// The outcome of an input its route already forwarded within the window: a drop with reason
/// `duplicate`, counted as a duplicate and as dropped.
pub fn duplicate(route: &Route) -> Outcome {
    let name = route.name.to_string();
    metrics::counter!(telemetry::MESSAGES_DUPLICATE, "route" => name.clone()).increment(1);
    metrics::counter!(telemetry::MESSAGES_DROPPED, "route" => name).increment(1);
    Outcome::Drop {
        reason: "duplicate".to_owned(),
    }
}

/// A claimed key: kept for the window once confirmed, released when dropped without.
#[derive(Debug)]
pub struct Held {
    windows: Arc<Windows>,
    route: RouteName,
    key: Key,
    confirmed: bool,
}

impl Held {
    /// The outputs were delivered: the key stays for `window`.
    pub fn confirm(mut self, window: Duration) {
        self.windows.confirm(&self.route, self.key, window);
        self.confirmed = true;
    }

    /// The outputs were delivered on a route without a window of its own (a replay's): the key
    /// stays for `window` on this instance only — the fleet shares the windows routes declare.
    pub fn confirm_here(mut self, window: Duration) {
        self.windows.keep(&self.route, self.key, window);
        self.confirmed = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.confirmed {
            self.windows.release(&self.route, self.key);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    /// Forwarded; leaves the window at this instant.
    Until(Instant),
}

/// One route's keys.
#[derive(Debug, Default)]
struct Window {
    keys: HashMap<Key, State>,
    /// Confirmed keys in the order they leave (with the instant they were queued to leave, so a
    /// key confirmed again is not removed by its older entry).
    leaving: VecDeque<(Instant, Key)>,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while let Some(&(until, key)) = self.leaving.front() {
            if until > now && self.leaving.len() <= MAX_KEYS {
                break;
            }
            self.leaving.pop_front();
            if self.keys.get(&key) == Some(&State::Until(until)) {
                self.keys.remove(&key);
                if until > now {
                    metrics::counter!(telemetry::DEDUP_EVICTED).increment(1);
                }
            }
        }
    }

    fn forwarded(&mut self, key: Key, until: Instant) {
        match self.keys.get(&key) {
            // In flight here: its own confirm decides.
            Some(State::InFlight) => {}
            Some(State::Until(already)) if *already >= until => {}
            _ => {
                self.keys.insert(key, State::Until(until));
                self.leaving.push_back((until, key));
            }
        }
    }
}

/// Every route's window in this process.
#[derive(Debug, Default)]
pub struct Windows {
    routes: Mutex<HashMap<RouteName, Window>>,
    /// Keys confirmed here that the rest of the fleet has not been told of yet (`None`: not
    /// shared, in process).
    outbox: Mutex<Option<Vec<(RouteName, Key)>>>,
}

impl Windows {
    /// Claims `key` on `route`: a duplicate when it was forwarded within the window or is in
    /// flight.
    pub fn claim(&self, route: &RouteName, key: Key) -> Claim {
        let now = Instant::now();
        let mut routes = self.lock();
        let window = routes.entry(route.clone()).or_default();
        window.expire(now);
        match window.keys.get(&key) {
            Some(State::InFlight) => Claim::Duplicate,
            Some(State::Until(until)) if *until > now => Claim::Duplicate,
            _ => {
                window.keys.insert(key, State::InFlight);
                Claim::Claimed
            }
        }
    }

    /// The claimed input was forwarded: its key stays for `window` (and, when shared, goes to
    /// the outbox).
    pub fn confirm(&self, route: &RouteName, key: Key, window: Duration) {
        self.keep(route, key, window);
        if let Some(outbox) = self.outbox().as_mut()
            && outbox.len() < MAX_KEYS
        {
            outbox.push((route.clone(), key));
        }
    }

    /// The claimed input was forwarded: its key stays for `window`, on this instance.
    fn keep(&self, route: &RouteName, key: Key, window: Duration) {
        let until = Instant::now() + window;
        let mut routes = self.lock();
        let keys = routes.entry(route.clone()).or_default();
        if keys.keys.get(&key) == Some(&State::InFlight) {
            keys.keys.remove(&key);
        }
        keys.forwarded(key, until);
    }

    /// From now on, confirmed keys are kept for [`Windows::take_confirmed`] (at most
    /// [`MAX_KEYS`] waiting: past that, the rest of the fleet is not told).
    pub fn share(&self) {
        self.outbox().get_or_insert_with(Vec::new);
    }

    /// The keys confirmed since the last call, oldest first.
    pub fn take_confirmed(&self) -> Vec<(RouteName, Key)> {
        self.outbox()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Option<Vec<(RouteName, Key)>>> {
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The claimed input was not forwarded: a later copy may go.
    pub fn release(&self, route: &RouteName, key: Key) {
        let mut routes = self.lock();
        if let Some(window) = routes.get_mut(route)
            && window.keys.get(&key) == Some(&State::InFlight)
        {
            window.keys.remove(&key);
        }
    }

    /// Another instance forwarded `key` on `route`, `age` ago: it stays for the rest of `window`.
    pub fn seen(&self, route: &RouteName, key: Key, age: Duration, window: Duration) {
        self.seen_all(route, [key], age, window);
    }

    /// [`Windows::seen`] for every key of `keys`, all forwarded `age` ago.
    pub fn seen_all(
        &self,
        route: &RouteName,
        keys: impl IntoIterator<Item = Key>,
        age: Duration,
        window: Duration,
    ) {
        let Some(left) = window.checked_sub(age) else {
            return;
        };
        let until = Instant::now() + left;
        let mut routes = self.lock();
        let found = routes.entry(route.clone()).or_default();
        for key in keys {
            found.forwarded(key, until);
        }
    }

    /// Claims `key` on `route` for an input whose fate is decided later, perhaps in a task that
    /// may be aborted (a session that breaks): `None` for a duplicate; else a guard that keeps
    /// the key once [`Held::confirm`]ed and releases it when dropped unconfirmed, so a claim is
    /// never left in flight for ever.
    pub fn hold(self: &Arc<Self>, route: &RouteName, key: Key) -> Option<Held> {
        match self.claim(route, key) {
            Claim::Duplicate => None,
            Claim::Claimed => Some(Held {
                windows: self.clone(),
                route: route.clone(),
                key,
                confirmed: false,
            }),
        }
    }

    /// Keys held for `route` (in flight or forwarded, not yet expired).
    pub fn len(&self, route: &RouteName) -> usize {
        let mut routes = self.lock();
        routes.get_mut(route).map_or(0, |window| {
            window.expire(Instant::now());
            window.keys.len()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RouteName, Window>> {
        // A panic while holding it leaves whole entries behind: the map is still usable.
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> RouteName {
        RouteName::parse("orders-to-shipping").unwrap()
    }

    #[test]
    fn a_forwarded_key_is_a_duplicate_within_the_window_and_not_after() {
        let windows = Windows::default();
        let key = Key::of_parts("/orders", "1");
        assert_eq!(windows.claim(&route(), key), Claim::Claimed);
        assert_eq!(windows.claim(&route(), key), Claim::Duplicate, "in flight");
        windows.confirm(&route(), key, Duration::from_millis(50));
        assert_eq!(windows.claim(&route(), key), Claim::Duplicate);
        assert_eq!(
            windows.claim(&route(), Key::of_parts("/orders", "2")),
            Claim::Claimed
        );
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(windows.claim(&route(), key), Claim::Claimed, "expired");
    }

    #[test]
    fn a_held_key_dropped_unconfirmed_is_released_and_a_confirmed_one_kept() {
        let windows = Arc::new(Windows::default());
        let key = Key::of_parts("/orders", "1");
        let held = windows.hold(&route(), key).expect("first claim");
        assert!(windows.hold(&route(), key).is_none(), "in flight");
        drop(held); // an aborted task
        let held = windows.hold(&route(), key).expect("released on drop");
        held.confirm(Duration::from_secs(60));
        assert!(windows.hold(&route(), key).is_none(), "forwarded");
    }

    #[test]
    fn a_released_key_lets_the_next_copy_through() {
        let windows = Windows::default();
        let key = Key::of_parts("/orders", "1");
        assert_eq!(windows.claim(&route(), key), Claim::Claimed);
        windows.release(&route(), key);
        assert_eq!(windows.claim(&route(), key), Claim::Claimed);
    }

    #[test]
    fn keys_are_per_route_and_per_source_and_id() {
        let windows = Windows::default();
        let other = RouteName::parse("orders-to-billing").unwrap();
        let key = Key::of_parts("/orders", "1");
        windows.claim(&route(), key);
        windows.confirm(&route(), key, Duration::from_secs(60));
        assert_eq!(windows.claim(&other, key), Claim::Claimed);
        assert_ne!(Key::of_parts("/orders", "1"), Key::of_parts("/orders1", ""));
        assert_ne!(Key::of_parts("/a", "1"), Key::of_parts("/b", "1"));
        let key = Key::of_parts("/orders", "1");
        assert_eq!(Key::from_bytes(key.to_bytes()), key);
        assert_eq!(
            key.to_bytes()[..4],
            [0xd1, 0x1f, 0x13, 0x89],
            "the same bytes in every version"
        );
    }

    #[test]
    fn a_key_seen_from_another_instance_counts_for_the_rest_of_its_window() {
        let windows = Windows::default();
        let key = Key::of_parts("/orders", "7");
        windows.seen(
            &route(),
            key,
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        assert_eq!(windows.claim(&route(), key), Claim::Duplicate);
        let old = Key::of_parts("/orders", "8");
        windows.seen(
            &route(),
            old,
            Duration::from_secs(90),
            Duration::from_secs(60),
        );
        assert_eq!(
            windows.claim(&route(), old),
            Claim::Claimed,
            "older than the window"
        );
        assert_eq!(windows.len(&route()), 2);
    }

    #[test]
    fn confirmed_keys_wait_in_the_outbox_only_when_shared() {
        let windows = Windows::default();
        let (one, two) = (Key::of_parts("/orders", "1"), Key::of_parts("/orders", "2"));
        windows.confirm(&route(), one, Duration::from_secs(60));
        assert!(windows.take_confirmed().is_empty(), "not shared");
        windows.share();
        windows.claim(&route(), two);
        windows.release(&route(), two);
        assert!(
            windows.take_confirmed().is_empty(),
            "released, not confirmed"
        );
        windows.confirm(&route(), one, Duration::from_secs(60));
        windows.confirm(&route(), two, Duration::from_secs(60));
        assert_eq!(
            windows.take_confirmed(),
            vec![(route(), one), (route(), two)]
        );
        assert!(windows.take_confirmed().is_empty(), "taken once");
    }
}
