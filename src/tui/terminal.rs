//! The terminal, always given back as found: raw mode, the alternate screen, mouse
//! reporting and the hidden cursor are undone on quit, on error (by drop), on a
//! panic of the UI thread (by the panic hook) and on SIGTERM or SIGHUP (an SSH
//! drop; the loop sees the flag within one poll).

use std::io::{BufWriter, Stdout, Write, stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::ThreadId;

use anyhow::{Context, Result};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// A test hook: with this variable set, the inspector panics after its first
/// frame (the end-to-end test checks that the terminal comes back).
pub const PANIC_VAR: &str = "UNITSCOPE_TEST_PANIC";

/// The signals that end the inspector, once received.
pub struct Signals {
    received: Arc<AtomicI32>,
}

impl Signals {
    /// Catches SIGTERM and SIGHUP: the first sets a flag the loop reads; a second
    /// ends the process at once (the flag's reader may be stuck).
    pub fn register() -> Result<Self> {
        let received = Arc::new(AtomicI32::new(0));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone())
                .context("cannot catch SIGTERM/SIGHUP")?;
            let received = received.clone();
            // SAFETY: the handler only stores to atomics, which is async-signal-safe.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    received.store(signal, Ordering::SeqCst);
                    flag.store(true, Ordering::SeqCst);
                })
            }
            .context("cannot catch SIGTERM/SIGHUP")?;
        }
        watch_for_hangup();
        Ok(Self { received })
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

/// Ends the process when its terminal hangs up. An SSH drop that kills the shell
/// sends SIGHUP to the shell alone, and the inspector is left reading end-of-file,
/// on which crossterm's reader spins without reporting anything; the terminal is
/// gone, so there is nothing to restore.
fn watch_for_hangup() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut stdin = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, no wait.
            let ready = unsafe { libc::poll(&mut stdin, 1, 0) };
            if ready > 0 && stdin.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                std::process::exit(128 + signal_hook::consts::SIGHUP);
            }
        }
    });
}

/// What frames are written through: standard output is line-buffered in 1 KiB
/// pieces, and a frame written in pieces can be shown in pieces (over SSH, or to
/// tmux reading mid-frame: the top of a popup over the bottom of the last frame).
/// Buffered whole, a frame leaves in one write when ratatui flushes it.
type Output = BufWriter<Stdout>;

/// A frame's bytes held before the flush; a larger one (a sixel picture) goes out
/// in more writes, as it must.
const FRAME_BUFFER: usize = 256 * 1024;

/// The terminal in the inspector's modes, until [`Session::leave`] or drop.
pub struct Session {
    terminal: Terminal<CrosstermBackend<Output>>,
    left: bool,
}

impl Session {
    /// Raw mode, the alternate screen, mouse reporting, no cursor; and a panic hook
    /// that undoes them before the panic is printed.
    pub fn enter() -> Result<Self> {
        install_panic_hook(std::thread::current().id());
        enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let entered = execute!(
            stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            cursor::Hide
        );
        if let Err(e) = entered {
            restore();
            return Err(e).context("cannot open the alternate screen");
        }
        let screen = BufWriter::with_capacity(FRAME_BUFFER, stdout());
        let terminal =
            Terminal::new(CrosstermBackend::new(screen)).context("cannot draw on the terminal")?;
        Ok(Self {
            terminal,
            left: false,
        })
    }

    pub fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<Output>> {
        &mut self.terminal
    }

    /// Gives the terminal back.
    pub fn leave(&mut self) {
        if !self.left {
            // Whatever a failed draw left buffered belongs on the alternate screen.
            let _ = self.terminal.backend_mut().flush();
            restore();
            self.left = true;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.leave();
    }
}

/// After a terminal query that timed out: ratatui-image's reader thread may still
/// be blocked on standard input, and would eat the user's first keys (upstream
/// issue #202). A Device Status Report request makes the terminal answer
/// `ESC [ 0 n`, which ends that reader; what it leaves unread is then discarded.
pub fn end_abandoned_query() {
    let _ = stdout().write_all(b"\x1b[5n");
    let _ = stdout().flush();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: discards pending input of standard input, a terminal here.
    unsafe { libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH) };
}

/// Undoes every mode the session set; safe to call twice, errors ignored (there is
/// nothing better to do with them on the way out).
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = stdout().flush();
}

/// A panic on the UI thread restores the terminal, then prints as usual. A panic on
/// a worker prints nothing (it would scribble over the screen): the job runner turns
/// it into the job's error, which the status bar shows.
fn install_panic_hook(ui: ThreadId) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui {
            restore();
            previous(info);
        }
    }));
}
