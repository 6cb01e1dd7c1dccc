//! Long commands run as a job ([`unitscope::jobs`]) while this thread draws a
//! progress bar on a terminal (none into pipes) and turns Ctrl-C into cancellation:
//! the job stops within one batch, the command exits with status 130, and every file
//! it wrote is whole ([`unitscope::atomic`]). A second Ctrl-C exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use unitscope::jobs::{Context, Event, Runner};

/// Set by the SIGINT handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What a job writes to standard output: lines printed above the progress bar.
#[derive(Clone)]
pub struct Printer(ProgressBar);

impl Printer {
    /// Runs `f` (which writes to the terminal) with the bar lifted out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.suspend(f)
    }

    /// Prints `line` on standard output, the bar lifted out of its way.
    pub fn line(&self, line: &str) -> Result<()> {
        self.0.suspend(|| -> Result<()> {
            super::outln!("{line}");
            Ok(())
        })
    }
}

/// Runs `work` as a job of `total` units named `label`; see the module doc.
pub fn run<T, F>(label: &str, total: u64, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Context, &Printer) -> Result<T> + Send + 'static,
{
    let _interrupts = Interrupts::catch();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, {eta} left)",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    // Redrawn on its own, so the clock moves even while one unit takes minutes.
    bar.enable_steady_tick(Duration::from_millis(250));
    let printer = Printer(bar.clone());
    let mut runner = Runner::one_at_a_time();
    runner.submit(label, move |cx| work(cx, &printer));
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            runner.cancel_all();
        }
        match runner.recv_timeout(Duration::from_millis(50)) {
            Some(Event::Progress(_, p)) => {
                bar.set_position(p.done);
                bar.set_message(p.note);
            }
            Some(Event::Finished(_, result)) => {
                bar.finish_and_clear();
                return match result {
                    Err(e) if unitscope::jobs::is_cancelled(&e) => bail!(Interrupted),
                    other => other,
                };
            }
            None => {}
        }
    }
}

/// The error of a command stopped by Ctrl-C; `main` exits with 130 for it.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; every file written so far is whole")
    }
}

impl std::error::Error for Interrupted {}

/// Ctrl-C caught while a job runs: the first asks the job to stop, a second exits
/// at once (status 130). Dropped, Ctrl-C interrupts as usual again, and the next
/// job starts uncancelled.
struct Interrupts;

impl Interrupts {
    fn catch() -> Self {
        extern "C" fn on_sigint(_: libc::c_int) {
            // Only async-signal-safe calls here: an atomic swap and `_exit`.
            if INTERRUPTED.swap(true, Ordering::Relaxed) {
                unsafe { libc::_exit(130) };
            }
        }
        INTERRUPTED.store(false, Ordering::Relaxed);
        set_sigint(on_sigint as extern "C" fn(libc::c_int) as usize);
        Self
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        set_sigint(libc::SIG_DFL);
        INTERRUPTED.store(false, Ordering::Relaxed);
    }
}

/// Installs `handler` (a function, or `SIG_DFL`) for SIGINT.
fn set_sigint(handler: libc::sighandler_t) {
    // SAFETY: the handlers given only touch an atomic and call `_exit`, both
    // async-signal-safe; `sigaction` is given a zeroed, then filled, struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}
