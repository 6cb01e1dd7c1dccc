//! Pictures in the terminal, through one adapter whichever protocol the terminal
//! speaks: kitty or iTerm2 graphics in full colour, else sixel, else half blocks
//! (two pixels per cell in 24-bit colour, which any terminal and any SSH session
//! shows). The command line prints heatmaps through it, inline at the cursor; the
//! TUI sizes its image panes with the same [`fit`].
//!
//! Printing is viuer's, which writes to standard output; a terminal is queried only
//! when standard output is one (a query into a file or pipe would be garbage there).

use std::io::{IsTerminal, Write};

use anyhow::Result;
use image::{DynamicImage, RgbImage};

use crate::choice::{Choice, display_by_name};

/// A terminal image protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The kitty graphics protocol (kitty, WezTerm, Ghostty, Konsole).
    Kitty,
    /// iTerm2's inline images (iTerm2, WezTerm).
    Iterm2,
    /// DEC sixel (xterm -ti vt340, foot, mlterm, Windows Terminal): a 256-colour
    /// palette.
    Sixel,
    /// Unicode half blocks in 24-bit colour: everywhere, including pipes and files.
    HalfBlocks,
}

impl Choice for Protocol {
    const ALL: &'static [Self] = &[Self::Kitty, Self::Iterm2, Self::Sixel, Self::HalfBlocks];

    fn name(self) -> &'static str {
        match self {
            Self::Kitty => "kitty",
            Self::Iterm2 => "iterm2",
            Self::Sixel => "sixel",
            Self::HalfBlocks => "half-blocks",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::Kitty => "kitty graphics, full colour",
            Self::Iterm2 => "iTerm2 inline images, full colour",
            Self::Sixel => "sixel, a 256-colour palette",
            Self::HalfBlocks => "Unicode half blocks, 24-bit colour, works everywhere",
        }
    }
}

display_by_name!(Protocol);

/// A rectangle of terminal cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    /// Columns.
    pub columns: u32,
    /// Rows.
    pub rows: u32,
}

/// The environment variable that chooses a protocol (one of [`Protocol`]'s names)
/// instead of detection: `half-blocks` asks the terminal nothing (GNU screen, a
/// terminal that never answers); for the graphics protocols, viuer still checks
/// the terminal's support as it prints, and falls back to half blocks without it.
pub const PROTOCOL_VAR: &str = "UNITSCOPE_GRAPHICS";

/// Where pictures go: standard output, by one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    protocol: Protocol,
}

impl Terminal {
    /// The richest protocol standard output answers for, unless [`PROTOCOL_VAR`]
    /// names one; half blocks when it is not a terminal, or when it does not answer
    /// within [`QUERY_TIMEOUT`]. Kitty and iTerm2 come before sixel: a terminal that
    /// speaks both shows them in full colour.
    pub fn detect() -> Result<Self> {
        if let Ok(name) = std::env::var(PROTOCOL_VAR) {
            let protocol = Protocol::from_name(&name).ok_or_else(|| {
                let names: Vec<_> = Protocol::ALL.iter().map(|p| p.name()).collect();
                anyhow::anyhow!("{PROTOCOL_VAR}=`{name}`: use one of {}", names.join(", "))
            })?;
            return Ok(Self { protocol });
        }
        if !std::io::stdout().is_terminal() {
            return Ok(Self::with(Protocol::HalfBlocks));
        }
        // The queries wait for the terminal's answer; one that never answers (a
        // silent pseudo-terminal, some multiplexers) would hang us. Ask on a
        // thread, and give up on it after the timeout, restoring the terminal's
        // mode, which the query may have left raw.
        let mode = TerminalMode::save();
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = answer.send(query());
        });
        let protocol = answered.recv_timeout(QUERY_TIMEOUT).unwrap_or_else(|_| {
            mode.restore();
            Protocol::HalfBlocks
        });
        Ok(Self { protocol })
    }

    /// A terminal spoken to by `protocol`, whatever it answers.
    pub fn with(protocol: Protocol) -> Self {
        Self { protocol }
    }

    /// The protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Prints `img` at the cursor, as large as fits in `area` with its aspect kept;
    /// returns the cells it took.
    pub fn print(&self, img: &RgbImage, area: Cells) -> Result<Cells> {
        let used = fit(img.dimensions(), area);
        let config = viuer::Config {
            absolute_offset: false,
            width: Some(used.columns),
            height: Some(used.rows),
            use_kitty: self.protocol == Protocol::Kitty,
            use_iterm: self.protocol == Protocol::Iterm2,
            use_sixel: self.protocol == Protocol::Sixel,
            ..Default::default()
        };
        viuer::print(&DynamicImage::ImageRgb8(img.clone()), &config)
            .map_err(|e| anyhow::anyhow!("cannot print the picture in this terminal: {e}"))?;
        Ok(used)
    }

    /// Erases a picture printed just above the cursor that took `used`: deletes
    /// kitty's image placements, then clears from the picture's first row down.
    pub fn erase(&self, used: Cells, out: &mut impl Write) -> Result<()> {
        if self.protocol == Protocol::Kitty {
            // a=d: delete; d=a: every placement on the visible screen.
            out.write_all(b"\x1b_Ga=d,d=a\x1b\\")?;
        }
        // CSI n F: to the start of the line n rows up; CSI J: clear to the end.
        write!(out, "\x1b[{}F\x1b[J", used.rows)?;
        out.flush()?;
        Ok(())
    }
}

/// How long a terminal has to answer the graphics queries.
pub const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The richest protocol the terminal answers for (may wait on the terminal).
fn query() -> Protocol {
    if viuer::get_kitty_support() != viuer::KittySupport::None {
        Protocol::Kitty
    } else if viuer::is_iterm_supported() {
        Protocol::Iterm2
    } else if viuer::is_sixel_supported() {
        Protocol::Sixel
    } else {
        Protocol::HalfBlocks
    }
}

/// The controlling terminal's mode, to put back after a query that did not
/// return: the queries read keys from `/dev/tty` (not standard input, which may be
/// redirected) in raw mode.
struct TerminalMode(Option<(std::fs::File, libc::termios)>);

impl TerminalMode {
    fn save() -> Self {
        use std::os::fd::AsRawFd;
        let Ok(tty) = std::fs::File::open("/dev/tty") else {
            return Self(None);
        };
        // SAFETY: tcgetattr fills the zeroed struct, or fails (not a terminal).
        let mut mode: libc::termios = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut mode) } == 0;
        Self(ok.then_some((tty, mode)))
    }

    fn restore(&self) {
        use std::os::fd::AsRawFd;
        if let Some((tty, mode)) = &self.0 {
            // SAFETY: a mode tcgetattr gave for the same terminal.
            unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, mode) };
        }
    }
}

/// The cells a picture of `(width, height)` pixels takes when enlarged or shrunk to
/// fill `area` with its aspect kept. A cell is taken to be twice as tall as it is
/// wide, as half blocks draw it (one pixel across, two down).
pub fn fit((width, height): (u32, u32), area: Cells) -> Cells {
    let (w, h) = (width.max(1) as u64, height.max(1) as u64);
    let (cols, rows) = (area.columns.max(1) as u64, area.rows.max(1) as u64);
    // Full width takes cols * h / w pixel rows, two per cell row.
    let rows_at_full_width = (cols * h).div_ceil(2 * w);
    if rows_at_full_width <= rows {
        return Cells {
            columns: cols as u32,
            rows: rows_at_full_width.max(1) as u32,
        };
    }
    Cells {
        columns: ((rows * 2 * w) / h).clamp(1, cols) as u32,
        rows: rows as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_fit_their_cells_with_their_aspect() {
        let area = Cells {
            columns: 32,
            rows: 40,
        };
        // A square picture across 32 columns is 16 rows of two pixels.
        assert_eq!(
            fit((64, 64), area),
            Cells {
                columns: 32,
                rows: 16
            }
        );
        // A tall one is bounded by the rows.
        let tall = fit(
            (10, 100),
            Cells {
                columns: 32,
                rows: 10,
            },
        );
        assert_eq!(
            tall,
            Cells {
                columns: 2,
                rows: 10
            }
        );
        // A wide one by the columns; nothing is ever zero cells.
        assert_eq!(
            fit((1000, 1), area),
            Cells {
                columns: 32,
                rows: 1
            }
        );
        assert_eq!(
            fit(
                (0, 0),
                Cells {
                    columns: 0,
                    rows: 0
                }
            ),
            Cells {
                columns: 1,
                rows: 1
            }
        );
    }

    #[test]
    fn erasing_clears_the_rows_and_kitty_placements() {
        let mut out = Vec::new();
        let used = Cells {
            columns: 32,
            rows: 16,
        };
        Terminal::with(Protocol::HalfBlocks)
            .erase(used, &mut out)
            .unwrap();
        assert_eq!(out, b"\x1b[16F\x1b[J");
        out.clear();
        Terminal::with(Protocol::Kitty)
            .erase(used, &mut out)
            .unwrap();
        assert_eq!(out, b"\x1b_Ga=d,d=a\x1b\\\x1b[16F\x1b[J");
    }
}
