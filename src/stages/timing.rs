//! When each stage of a route's run began and ended, kept only while a trace records the run
//! (`telemetry::trace`). Each stage opens a [`Timed`] guard; outside [`record`] the guard is
//! empty and costs one thread-local look-up: no clock is read, nothing is allocated.

use std::cell::RefCell;
use std::time::SystemTime;

use super::Stage;

tokio::task_local! {
    /// The marks of the run being recorded, in the order its stages ended.
    static MARKS: RefCell<Vec<Mark>>;
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
    MARKS
        .scope(RefCell::new(Vec::new()), async move {
            let output = run.await;
            let marks = MARKS.with(|marks| marks.take());
            (output, marks)
        })
        .await
}

/// Starts timing `stage`; the mark is kept when the guard is dropped, if a run is recorded.
pub fn timed(stage: Stage) -> Timed {
    let recording = MARKS.try_with(|_| ()).is_ok();
    Timed(recording.then(|| (stage.as_str(), SystemTime::now())))
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
        let end = SystemTime::now();
        let _ = MARKS.try_with(|marks| push(&mut marks.borrow_mut(), Mark { name, start, end }));
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
}
