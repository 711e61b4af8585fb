//! A replay job's pace: at most its `rate`, and — when adaptive, the default — slower while the
//! transport takes longer than usual to hold what the job sends.
//!
//! The signal is the job's own: how long the transport (on RabbitMQ, the broker's publisher
//! confirms) took to hold a batch's sends, measured from the batch's last send to its last
//! confirm. Its floor over the last minutes is what that costs on a quiet broker; anything above
//! it is queueing the job shares with live traffic (its outputs go to the same queues, through
//! the same broker, as the live routes'). The controller is LEDBAT's (RFC 6817), a scavenger
//! that yields to foreground traffic: it keeps that queueing at most as long as the floor itself
//! (so confirms take at most about twice what they take idle), or 2 ms where the floor is
//! shorter (an idle broker's confirms jitter by about that much), speeding up in proportion to the
//! room left and slowing down in proportion to the excess, halving at most per batch. It never
//! goes below a hundredth of the job's rate, so a job on a loaded broker still ends.
//!
//! Single spikes do not count (the queueing read is the least of the last three batches): one
//! slow confirm is usually the broker's own hiccup, which slowing the replay would not cure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The queueing the controller allows at least: an idle broker's confirms jitter by a few
/// milliseconds (measured: least 0.9 ms, p10 2 ms, p50 3.3 ms), and at 1 ms every batch looked
/// congested (a job sat at 20–30/s on an otherwise quiet broker; BENCHMARKS.md).
const LEAST_TARGET: Duration = Duration::from_millis(2);
/// The floor is the least delay of this many periods of [`FLOOR_PERIOD`]: it forgets a
/// quieter past slowly, so a broker that got slower for good raises it within minutes.
const FLOOR_PERIODS: usize = 5;
const FLOOR_PERIOD: Duration = Duration::from_secs(60);
/// Batches whose least delay is the current one (one slow confirm is not congestion).
const CURRENT_OF: usize = 3;
/// The share of the job's rate added per batch with no queueing at all.
const GAIN: f64 = 0.05;
/// Where an adaptive job starts, as a share of its rate: low, so the first floor is read on a
/// broker the job has not loaded yet; but not below [`START_AT_LEAST`] (a batch at a tenth of a
/// small rate would take seconds, and a few hundred inputs a second load no broker).
const START: f64 = 0.1;
const START_AT_LEAST: f64 = 500.0;
/// The slowest an adaptive job goes, as a share of its rate.
const SLOWEST: f64 = 0.01;

/// One job's pace.
#[derive(Debug)]
pub(super) struct Pace {
    /// The job's `rate`: never faster.
    ceiling: f64,
    /// Inputs a second now.
    rate: f64,
    /// `false`: the rate stays the job's `rate`.
    adaptive: bool,
    /// The least delay in each recent period, oldest first: (the period's start, its least).
    floors: VecDeque<(Instant, Duration)>,
    /// The last few delays.
    recent: VecDeque<Duration>,
}

impl Pace {
    /// A job's pace for at most `rate` inputs a second.
    pub(super) fn new(rate: u32, adaptive: bool) -> Self {
        let ceiling = f64::from(rate.max(1));
        Self {
            ceiling,
            rate: if adaptive {
                (ceiling * START).max(START_AT_LEAST).min(ceiling)
            } else {
                ceiling
            },
            adaptive,
            floors: VecDeque::with_capacity(FLOOR_PERIODS + 1),
            recent: VecDeque::with_capacity(CURRENT_OF + 1),
        }
    }

    /// Inputs a second now.
    pub(super) fn rate(&self) -> f64 {
        self.rate
    }

    /// The time between two inputs now.
    pub(super) fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// One batch's delay: from its last send to the transport holding all it sent, at `now`.
    pub(super) fn observe(&mut self, delay: Duration, now: Instant) {
        if !self.adaptive {
            return;
        }
        match self.floors.back_mut() {
            Some((start, least)) if now.duration_since(*start) < FLOOR_PERIOD => {
                *least = (*least).min(delay);
            }
            _ => {
                self.floors.push_back((now, delay));
                if self.floors.len() > FLOOR_PERIODS {
                    self.floors.pop_front();
                }
            }
        }
        self.recent.push_back(delay);
        if self.recent.len() > CURRENT_OF {
            self.recent.pop_front();
        }
        let floor = self.floors.iter().map(|(_, least)| *least).min();
        let current = self.recent.iter().min();
        let (Some(floor), Some(current)) = (floor, current) else {
            return;
        };
        let queueing = current.saturating_sub(floor).as_secs_f64();
        let target = floor.max(LEAST_TARGET).as_secs_f64();
        let off_target = ((target - queueing) / target).clamp(-1.0, 1.0);
        self.rate = if off_target >= 0.0 {
            self.rate + self.ceiling * GAIN * off_target
        } else {
            self.rate * (1.0 + off_target / 2.0)
        }
        .clamp((self.ceiling * SLOWEST).max(1.0), self.ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Feeds `delays` one batch each 50 ms from `start`; returns the rate after each.
    fn run(pace: &mut Pace, start: Instant, delays: &[Duration]) -> Vec<f64> {
        delays
            .iter()
            .enumerate()
            .map(|(n, delay)| {
                pace.observe(*delay, start + ms(50 * n as u64));
                pace.rate()
            })
            .collect()
    }

    #[test]
    fn a_fixed_pace_keeps_the_jobs_rate_whatever_the_delays() {
        let mut pace = Pace::new(2_000, false);
        let rates = run(&mut pace, Instant::now(), &[ms(2), ms(500), ms(900)]);
        assert_eq!(rates, vec![2_000.0; 3]);
        assert_eq!(pace.interval(), Duration::from_micros(500));
    }

    #[test]
    fn an_adaptive_pace_starts_low_and_reaches_the_rate_on_a_quiet_transport() {
        assert_eq!(
            Pace::new(200, true).rate(),
            200.0,
            "a small rate from the start"
        );
        assert_eq!(
            Pace::new(50_000, true).rate(),
            5_000.0,
            "a tenth of a large one"
        );
        let mut pace = Pace::new(2_000, true);
        assert_eq!(pace.rate(), 500.0);
        let rates = run(&mut pace, Instant::now(), &[ms(2); 40]);
        assert!(rates.windows(2).all(|pair| pair[1] >= pair[0]), "{rates:?}");
        assert_eq!(*rates.last().unwrap(), 2_000.0, "{rates:?}");
    }

    #[test]
    fn queueing_beyond_the_floor_slows_it_and_its_end_lets_it_speed_up_again() {
        let start = Instant::now();
        let mut pace = Pace::new(2_000, true);
        run(&mut pace, start, &[ms(2); 40]);
        // Confirms take 10 ms where they took 2: the rate halves per batch once three agree.
        let slowed = run(&mut pace, start + ms(2_000), &[ms(10); 8]);
        assert_eq!(
            slowed[0], 2_000.0,
            "one slow batch is not congestion: {slowed:?}"
        );
        assert_eq!(slowed[1], 2_000.0, "{slowed:?}");
        assert_eq!(slowed[2], 1_000.0, "{slowed:?}");
        assert!(slowed[7] <= 2_000.0 / 32.0, "{slowed:?}");
        assert!(
            slowed[7] >= 20.0,
            "never below a hundredth of the rate: {slowed:?}"
        );
        // Queueing within the target (up to the floor again: 4 ms of 2) holds the rate.
        let held = run(&mut pace, start + ms(3_000), &[ms(4); 3]);
        assert_eq!(held[2], slowed[7], "{held:?}");
        // Back at the floor: speeding up again.
        let quiet = run(&mut pace, start + ms(4_000), &[ms(2); 30]);
        assert!(quiet[29] > quiet[2] && quiet[2] > held[2], "{quiet:?}");
    }

    #[test]
    fn the_floor_forgets_a_quieter_past_after_some_minutes() {
        let start = Instant::now();
        let mut pace = Pace::new(1_000, true);
        run(&mut pace, start, &[ms(1); 5]);
        // The broker is slower for good: 20 ms a confirm, every batch, one each second.
        let mut rate = 0.0;
        for second in 1..=400 {
            pace.observe(ms(20), start + Duration::from_secs(second));
            rate = pace.rate();
            if second == 60 {
                assert!(rate <= 20.0, "queueing of 19 ms over a 1 ms floor: {rate}");
            }
        }
        assert_eq!(rate, 1_000.0, "the 20 ms floor is the broker's now");
    }

    #[test]
    fn delays_of_a_millisecond_over_a_floor_near_zero_are_not_congestion() {
        let start = Instant::now();
        let mut pace = Pace::new(10_000, true);
        let rates = run(
            &mut pace,
            start,
            &[Duration::ZERO, ms(1), ms(1), ms(1), ms(1)],
        );
        assert!(rates.windows(2).all(|pair| pair[1] >= pair[0]), "{rates:?}");
    }
}
