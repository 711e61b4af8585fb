//! When each stage of a route's run began and ended, kept only while a trace records the run
//! (`telemetry::trace`). Each stage opens a [`Timed`] guard; outside [`record`] the guard is
//! empty and costs one read of a constant-initialised thread-local flag: no clock is read,
//! nothing is allocated. (tokio's task-locals were tried first: their look-up made a conformist
//! route's run measurably slower, about 2 %, in `benches/ratios.rs`.)

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use super::Stage;

thread_local! {
    /// Whether the future being polled on this thread is recorded ([`record`] sets it for the
    /// length of each poll).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    /// The marks of the poll under way; [`record`] takes them when the poll ends.
    static MARKS: RefCell<Vec<Mark>> = const { RefCell::new(Vec::new()) };
}

/// One stage of a recorded run: what ran, and from when to when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// A [`Stage`] name, or a transport's step (`confirm`).
    pub name: &'static str,
    pub start: SystemTime,
    pub end: SystemTime,
}

/// Runs `run` with its stages timed: its output, and the marks of the stages it went through.
/// A stage met several times in a row (validate-out of each output) is one mark, from its first
/// start to its last end.
pub async fn record<T>(run: impl Future<Output = T>) -> (T, Vec<Mark>) {
    let mut run = std::pin::pin!(run);
    let mut marks = Vec::new();
    let output = std::future::poll_fn(|cx| {
        let polling = Polling(RECORDING.replace(true));
        let polled = run.as_mut().poll(cx);
        drop(polling);
        MARKS.with_borrow_mut(|taken| {
            for mark in taken.drain(..) {
                push(&mut marks, mark);
            }
        });
        polled
    })
    .await;
    (output, marks)
}

/// Puts the flag back as it was when a poll ends, unwinding included.
struct Polling(bool);

impl Drop for Polling {
    fn drop(&mut self) {
        RECORDING.set(self.0);
    }
}

/// Starts timing `stage`; the mark is kept when the guard is dropped, if a run is recorded.
pub fn timed(stage: Stage) -> Timed {
    Timed(RECORDING.get().then(|| (stage.as_str(), SystemTime::now())))
}

/// The guard of a stage being timed (see [`timed`]).
#[derive(Debug)]
#[must_use = "the stage is timed until the guard is dropped"]
pub struct Timed(Option<(&'static str, SystemTime)>);

impl Drop for Timed {
    fn drop(&mut self) {
        let Some((name, start)) = self.0.take() else {
            return;
        };
        if RECORDING.get() {
            let end = SystemTime::now();
            MARKS.with_borrow_mut(|marks| push(marks, Mark { name, start, end }));
        }
    }
}

/// Adds a mark, merged into the last one when it names the same stage.
pub fn push(marks: &mut Vec<Mark>, mark: Mark) {
    match marks.last_mut() {
        Some(last) if last.name == mark.name => last.end = mark.end,
        _ => marks.push(mark),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_run_keeps_each_stage_once_in_order() {
        let ((), marks) = record(async {
            drop(timed(Stage::ValidateIn));
            drop(timed(Stage::Translate));
            drop(timed(Stage::ValidateOut));
            drop(timed(Stage::ValidateOut));
        })
        .await;
        let names: Vec<_> = marks.iter().map(|mark| mark.name).collect();
        assert_eq!(names, ["validate-in", "translate", "validate-out"]);
        assert!(marks.iter().all(|mark| mark.start <= mark.end));
    }

    #[test]
    fn outside_a_recorded_run_a_stage_reads_no_clock() {
        assert!(timed(Stage::Translate).0.is_none());
    }

    #[tokio::test]
    async fn a_stage_that_spans_an_await_is_kept_and_nothing_leaks_after_the_run() {
        let ((), marks) = record(async {
            let enrich = timed(Stage::Enrich);
            tokio::task::yield_now().await;
            drop(enrich);
        })
        .await;
        assert_eq!(marks.len(), 1);
        assert_eq!(marks[0].name, "enrich");
        assert!(timed(Stage::Enrich).0.is_none(), "the flag is off again");
    }
}
