//! Text files in: UTF-8, read from the start only as far as the model's window
//! needs, so a gigabyte file costs what a line does.

use std::io::Read;
use std::path::Path;

use crate::world;

/// The first `length` characters of the file at `path` (all of them if fewer), in
/// the world's alphabet: `\r\n` read as `\n`, a tab as four spaces.
pub fn read(path: &Path, length: usize) -> Result<Vec<char>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    // A character is at most 4 bytes in UTF-8, and `\r\n` is one character here.
    let most = 8 * length as u64 + 8;
    let mut bytes = Vec::new();
    file.take(most)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.is_empty() {
        return Err("it is empty".into());
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        // Cut mid-character where the read stopped: the whole characters before.
        Err(e) if e.error_len().is_none() && bytes.len() as u64 == most => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).map_err(|e| e.to_string())?
        }
        Err(e) => {
            let at = e.valid_up_to();
            return Err(format!(
                "it is not UTF-8 text: byte {at} is 0x{:02x}",
                bytes[at]
            ));
        }
    };
    let mut chars = Vec::with_capacity(length);
    let (mut line, mut column) = (1, 1);
    let mut rest = text.chars().peekable();
    while chars.len() < length
        && let Some(c) = rest.next()
    {
        match c {
            '\r' if rest.peek() == Some(&'\n') => continue,
            '\t' => chars.extend([' '; 4]),
            c if world::index(c).is_some() => chars.push(c),
            c => {
                return Err(format!(
                    "line {line}, column {column} holds {c:?} (U+{:04X}); the text model reads \
                     newlines, tabs and printable ASCII only",
                    c as u32
                ));
            }
        }
        (line, column) = if c == '\n' {
            (line + 1, 1)
        } else {
            (line, column + 1)
        };
    }
    chars.truncate(length);
    Ok(chars)
}
