//! Background work: a job runs on a worker thread, reports progress, can be
//! cancelled, and sends its result back as a message; a newer job for the same slot
//! supersedes the older one (which is cancelled, and whose messages are dropped).
//!
//! The shape is gitui's `asyncgit`: whoever owns the screen (the TUI's event loop, or
//! the CLI's progress bar) submits jobs to a [`Runner`] and reads [`Event`]s from it,
//! and never computes itself. Cancellation is cooperative: a job calls
//! [`Context::checkpoint`] between units of work, and code deep inside a job (an
//! attribution method's batch loop) calls [`checkpoint`], which finds the job
//! running on its thread. Either returns [`Cancelled`] once the job is cancelled, so
//! a cancelled job stops within one batch and unwinds by `?` like any error, and
//! whatever it was writing is dropped rather than left half done.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use anyhow::Result;

/// The error of a job that stopped because it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Whether `error` is (or wraps) a [`Cancelled`].
pub fn is_cancelled(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Cancelled>())
}

/// A flag that asks a job to stop; cloned, it is the same flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks the job to stop at its next checkpoint.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Identifies one submitted job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

/// How far a job has come.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (0 when unknown).
    pub total: u64,
    /// What it is working on, for a status line.
    pub note: String,
}

/// A message from a job.
#[derive(Debug)]
pub enum Event<T> {
    /// The job reports progress.
    Progress(JobId, Progress),
    /// The job ended: its result, or its error ([`Cancelled`] if it was cancelled).
    Finished(JobId, Result<T>),
}

/// What a running job holds: its cancellation flag and its line back to the owner.
pub struct Context {
    cancel: CancelToken,
    report: Box<dyn Fn(Progress) + Send>,
}

impl Context {
    /// A context for work run on the calling thread (tests, scripts): cancelled by
    /// `cancel`, reporting progress to `report`.
    pub fn new(cancel: CancelToken, report: impl Fn(Progress) + Send + 'static) -> Self {
        Self {
            cancel,
            report: Box::new(report),
        }
    }

    /// [`Cancelled`] once the job is cancelled; call it between units of work.
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        match self.cancel.is_cancelled() {
            true => Err(Cancelled),
            false => Ok(()),
        }
    }

    /// Reports that `done` of `total` units are done, working on `note`.
    pub fn progress(&self, done: u64, total: u64, note: impl Into<String>) {
        (self.report)(Progress {
            done,
            total,
            note: note.into(),
        });
    }

    /// Runs `work` with this context as the thread's current job, so that
    /// [`checkpoint`] inside it answers for this job.
    pub fn enter<R>(&self, work: impl FnOnce(&Self) -> R) -> R {
        let previous = CURRENT.with(|c| c.replace(Some(self.cancel.clone())));
        let result = work(self);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        result
    }
}

thread_local! {
    /// The cancellation flag of the job running on this thread, if any.
    static CURRENT: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
}

/// [`Cancelled`] if the job running on this thread was cancelled; outside a job,
/// always `Ok`. Long library loops call it between batches.
pub fn checkpoint() -> Result<(), Cancelled> {
    let cancelled = CURRENT.with(|c| c.borrow().as_ref().is_some_and(CancelToken::is_cancelled));
    match cancelled {
        true => Err(Cancelled),
        false => Ok(()),
    }
}

/// Runs `work` on a thread of rayon's global pool, waiting for it there.
///
/// The engine's kernels are rayon loops. Started from a thread outside the pool, each
/// loop is handed to the pool while the caller sleeps until it ends: a wake-up of
/// every worker and of the caller per loop, thousands of them per pass. Started on a
/// pool thread, the loop runs on that thread too, and the others join in as they
/// are free. (ResNet-18 layer3 channel visualization at 224 px, best of five
/// alternating runs: 37.3 -> 33.7 ms per step, most of the difference system time;
/// EfficientNet-Lite0 forward + gradient at batch 1, 55 -> 32 ms; `unitscope bench`.)
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Runs jobs on worker threads and hands back their messages, one job per slot.
pub struct Runner<T> {
    sender: Sender<Event<T>>,
    receiver: Receiver<Event<T>>,
    /// The current job of each slot, and its flag.
    slots: HashMap<String, (JobId, CancelToken)>,
    next: u64,
    /// Whether a job's body runs [`on_pool`] rather than on its own thread.
    on_pool: bool,
}

impl<T: Send + 'static> Default for Runner<T> {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel();
        Self {
            sender,
            receiver,
            slots: HashMap::new(),
            next: 0,
            on_pool: false,
        }
    }
}

impl<T: Send + 'static> Runner<T> {
    /// A runner with no jobs, each of which will run on its own thread.
    pub fn new() -> Self {
        Self::default()
    }

    /// A runner for an owner that runs one job at a time (a command): the job runs
    /// [`on_pool`], so its parallel loops cost no hand-offs. Jobs side by side (the
    /// inspector's) each keep their own thread: a pool thread waiting inside one job
    /// may pick up a whole other job, and the first then waits for the second.
    pub fn one_at_a_time() -> Self {
        Self {
            on_pool: true,
            ..Self::default()
        }
    }

    /// Starts `work` on a new worker thread as the job of `slot`. A job already in
    /// the slot is cancelled, and nothing more is heard from it.
    pub fn submit<F>(&mut self, slot: &str, work: F) -> JobId
    where
        F: FnOnce(&Context) -> Result<T> + Send + 'static,
    {
        let id = JobId(self.next);
        self.next += 1;
        let cancel = CancelToken::default();
        if let Some((_, older)) = self.slots.insert(slot.to_owned(), (id, cancel.clone())) {
            older.cancel();
        }
        let progress = self.sender.clone();
        let context = Context::new(cancel, move |p| {
            // The owner may have gone; a job's progress then goes nowhere.
            let _ = progress.send(Event::Progress(id, p));
        });
        let finished = self.sender.clone();
        let on_pool = self.on_pool;
        std::thread::spawn(move || {
            let run = move || {
                std::panic::catch_unwind(AssertUnwindSafe(|| context.enter(work))).unwrap_or_else(
                    |panic| {
                        Err(anyhow::anyhow!(
                            "the job panicked: {}",
                            panic_text(panic.as_ref())
                        ))
                    },
                )
            };
            let outcome = match on_pool {
                true => self::on_pool(run),
                false => run(),
            };
            let _ = finished.send(Event::Finished(id, outcome));
        });
        id
    }

    /// Cancels the job of `slot`, if any; its [`Event::Finished`] still arrives.
    pub fn cancel(&self, slot: &str) {
        if let Some((_, cancel)) = self.slots.get(slot) {
            cancel.cancel();
        }
    }

    /// Cancels every job.
    pub fn cancel_all(&self) {
        self.slots.values().for_each(|(_, cancel)| cancel.cancel());
    }

    /// Whether any job is still running.
    pub fn is_busy(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The next message of a current job, waiting at most `timeout`; `None` if none
    /// came. Messages of superseded jobs are dropped here.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event<T>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = match self.receiver.recv_timeout(left) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            };
            let id = match &event {
                Event::Progress(id, _) | Event::Finished(id, _) => *id,
            };
            let Some(slot) = self.slot_of(id) else {
                continue;
            };
            if matches!(event, Event::Finished(..)) {
                self.slots.remove(&slot);
            }
            return Some(event);
        }
    }

    fn slot_of(&self, id: JobId) -> Option<String> {
        self.slots
            .iter()
            .find(|(_, (current, _))| *current == id)
            .map(|(slot, _)| slot.clone())
    }
}

/// The message a panic carried, if it was text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// Progress arrives in order, then the result.
    #[test]
    fn a_job_reports_progress_then_its_result() {
        let mut runner = Runner::new();
        let id = runner.submit("a", |cx| {
            for i in 1..=3 {
                cx.progress(i, 3, format!("step {i}"));
            }
            Ok(42)
        });
        let mut seen = Vec::new();
        loop {
            match runner.recv_timeout(WAIT).expect("the job went silent") {
                Event::Progress(job, p) => seen.push((job, p.done)),
                Event::Finished(job, result) => {
                    assert_eq!((job, result.unwrap()), (id, 42));
                    break;
                }
            }
        }
        assert_eq!(seen, [(id, 1), (id, 2), (id, 3)]);
        assert!(!runner.is_busy());
    }

    /// A job cancelled mid-way stops at its next checkpoint, also one reached
    /// through the thread's current job, and reports `Cancelled`.
    #[test]
    fn a_cancelled_job_stops_at_its_next_checkpoint() {
        for runner in [Runner::<u32>::new(), Runner::one_at_a_time()] {
            stops_when_cancelled(runner);
        }
    }

    fn stops_when_cancelled(mut runner: Runner<u32>) {
        let (started, wait) = mpsc::channel();
        runner.submit("a", move |_| {
            started.send(()).unwrap();
            let mut batches = 0;
            loop {
                checkpoint()?;
                batches += 1;
                std::thread::sleep(Duration::from_millis(1));
                if batches > 100_000 {
                    return Ok(batches);
                }
            }
        });
        wait.recv_timeout(WAIT).unwrap();
        runner.cancel("a");
        let Some(Event::Finished(_, Err(e))) = runner.recv_timeout(WAIT) else {
            panic!("the cancelled job did not finish with an error");
        };
        assert!(is_cancelled(&e), "{e}");
    }

    /// A newer job in a slot cancels the older, whose messages never arrive; other
    /// slots are untouched.
    #[test]
    fn a_newer_job_supersedes_the_older_in_its_slot() {
        let mut runner = Runner::new();
        let (started, wait) = mpsc::channel();
        let older = runner.submit("view", move |cx| {
            started.send(()).unwrap();
            while cx.checkpoint().is_ok() {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok("older")
        });
        wait.recv_timeout(WAIT).unwrap();
        let newer = runner.submit("view", |_| Ok("newer"));
        let other = runner.submit("other", |_| Ok("other"));
        let mut finished = Vec::new();
        while finished.len() < 2 {
            if let Some(Event::Finished(id, result)) = runner.recv_timeout(WAIT) {
                finished.push((id, result.unwrap()));
            }
        }
        finished.sort();
        assert_eq!(finished, [(newer, "newer"), (other, "other")]);
        assert!(runner.recv_timeout(Duration::from_millis(200)).is_none());
        assert!(older < newer);
    }

    /// A panicking job is an error message, not a dead owner.
    #[test]
    fn a_panicking_job_is_an_error() {
        for mut runner in [Runner::<()>::new(), Runner::one_at_a_time()] {
            runner.submit("a", |_| panic!("boom"));
            let Some(Event::Finished(_, Err(e))) = runner.recv_timeout(WAIT) else {
                panic!("no error from the panicking job");
            };
            assert!(e.to_string().contains("panicked: boom"), "{e}");
        }
    }

    /// A command's job runs on a pool thread; the inspector's each on its own.
    #[test]
    fn only_a_one_at_a_time_job_runs_on_the_pool() {
        for (mut runner, on_pool) in [(Runner::new(), false), (Runner::one_at_a_time(), true)] {
            runner.submit("a", |_| Ok(rayon::current_thread_index().is_some()));
            let Some(Event::Finished(_, Ok(seen))) = runner.recv_timeout(WAIT) else {
                panic!("the job did not finish");
            };
            assert_eq!(seen, on_pool);
        }
    }

    /// Outside a job, `checkpoint` never stops anything.
    #[test]
    fn checkpoint_outside_a_job_passes() {
        assert!(checkpoint().is_ok());
        let cancel = CancelToken::default();
        let cx = Context::new(cancel.clone(), |_| {});
        cancel.cancel();
        assert_eq!(cx.enter(|_| checkpoint()), Err(Cancelled));
        assert!(checkpoint().is_ok());
    }
}
