//! The text world: generated code-like text whose structure is known at every
//! character, so that a unit that tracks it can be found and checked (Karpathy,
//! Johnson & Fei-Fei 2015 found LSTM cells that follow quotes, bracket depth and
//! line length in real code; here the truth comes with the text).
//!
//! A program is lines of statements, each indented four spaces per open block:
//! assignments `name = expr`, calls `name(expr, ...)`, `return expr`, and blocks
//! `if (expr) {` ... `}` nested up to three deep. An expression is a name, a
//! number, a string, a call, a list `[...]`, a sum in parentheses or a map `{k:
//! v}`, nested up to four deep. Strings hold words and, one time in three, stray
//! brackets, colons and commas: inside quotes they are text, which only a unit
//! that knows it is inside quotes can tell.
//!
//! Tracks, per character, as the character leaves them:
//! - **depth**: brackets `(`, `[`, `{` open and not yet closed outside strings
//!   (blocks' braces included, so depth carries across lines);
//! - **quote**: 1 inside a string, its opening quote included, 0 elsewhere;
//! - **column**: the character's position in its line, from 0;
//! - **indent**: the line's open blocks.
//!
//! Samples are windows of a program: drawn from a ChaCha8 generator keyed by the
//! world's seed and the sample's index, starting at one of the program's first
//! eight lines, so a window may begin inside blocks (its indentation shows how
//! many) but never inside a string: a model that reads a window from its start
//! can know every track at every character, as one reading a whole file can.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The characters the world writes and the model reads: newline, then printable
/// ASCII (space to `~`).
pub const ALPHABET: usize = 96;

/// The class (and input channel) of `c`, if it is in the alphabet.
pub fn index(c: char) -> Option<usize> {
    match c {
        '\n' => Some(0),
        ' '..='~' => Some(c as usize - ' ' as usize + 1),
        _ => None,
    }
}

/// The character of class `i`.
pub fn character(i: usize) -> char {
    match i {
        0 => '\n',
        i => char::from(b' ' + (i - 1) as u8),
    }
}

/// The class names: the characters themselves, newline as `⏎` and space as `␣`
/// (a label must show).
#[rustfmt::skip]
pub const CLASSES: [&str; ALPHABET] = [
    "⏎", "␣", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?", "@",
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q",
    "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "[", "\\", "]", "^", "_", "`", "a", "b",
    "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z", "{", "|", "}", "~",
];

/// The tracks, in [`Text::tracks`]' order.
pub const TRACKS: [&str; 4] = ["depth", "quote", "column", "indent"];

/// Generated text and its tracks, character by character.
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    pub chars: Vec<char>,
    /// [`TRACKS`] at every character.
    pub tracks: [Vec<f32>; 4],
}

impl Text {
    /// The tracks of `chars`, read as the world writes code.
    pub fn read(chars: Vec<char>) -> Self {
        let mut tracks: [Vec<f32>; 4] = std::array::from_fn(|_| Vec::with_capacity(chars.len()));
        let (mut depth, mut quoted, mut column, mut indent) = (0usize, false, 0usize, 0usize);
        for (i, &c) in chars.iter().enumerate() {
            if column == 0 {
                indent = chars[i..].iter().take_while(|&&c| c == ' ').count() / 4;
            }
            match c {
                '"' => quoted = !quoted,
                '(' | '[' | '{' if !quoted => depth += 1,
                ')' | ']' | '}' if !quoted => depth = depth.saturating_sub(1),
                _ => {}
            }
            tracks[0].push(depth as f32);
            tracks[1].push(f32::from(u8::from(quoted)));
            tracks[2].push(column as f32);
            tracks[3].push(indent as f32);
            column = if c == '\n' { 0 } else { column + 1 };
        }
        Self { chars, tracks }
    }
}

/// Deepest nesting of blocks and of expressions.
const MAX_BLOCKS: usize = 3;
const MAX_NESTING: usize = 4;

/// A world of code-like text.
#[derive(Clone, Copy, Debug)]
pub struct World {
    seed: u64,
}

/// Names and words the generator draws from.
const NAMES: [&str; 16] = [
    "x", "y", "n", "i", "data", "value", "count", "total", "items", "result", "name", "size",
    "index", "left", "right", "buffer",
];
const CALLS: [&str; 8] = [
    "print", "len", "max", "min", "sum", "load", "parse", "update",
];
const WORDS: [&str; 16] = [
    "hello", "world", "error", "the", "value", "is", "not", "found", "ok", "done", "file", "line",
    "open", "read", "a", "b",
];
const STRAY: [&str; 7] = ["(", ")", "[", "]", ":", ",", "{"];

impl World {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Sample `index`: `length` characters of a program and its tracks, from the
    /// start of one of its first eight lines.
    pub fn sample(&self, index: u64, length: usize) -> Text {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let skipped = rng.random_range(0..8);
        let mut writer = Writer {
            rng,
            out: String::new(),
            blocks: 0,
        };
        for _ in 0..skipped {
            writer.line();
        }
        // The program is ASCII: characters are bytes.
        let start = writer.out.len();
        while writer.out.len() < start + length {
            writer.line();
        }
        let chars: Vec<char> = writer.out.chars().collect();
        let text = Text::read(chars);
        Text {
            chars: text.chars[start..start + length].to_vec(),
            tracks: text.tracks.map(|t| t[start..start + length].to_vec()),
        }
    }
}

/// Writes a program line by line.
struct Writer {
    rng: ChaCha8Rng,
    out: String,
    /// Blocks open.
    blocks: usize,
}

impl Writer {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.random_range(0..from.len())]
    }

    fn indent(&mut self) {
        for _ in 0..self.blocks {
            self.out.push_str("    ");
        }
    }

    /// One line, its newline included.
    fn line(&mut self) {
        let roll = self.rng.random_range(0..10);
        if self.blocks > 0 && roll < 2 {
            self.blocks -= 1;
            self.indent();
            self.out.push('}');
        } else if self.blocks < MAX_BLOCKS && roll < 4 {
            self.indent();
            self.out.push_str("if (");
            self.expression(1);
            self.out.push_str(") {");
            self.blocks += 1;
        } else {
            self.indent();
            match self.rng.random_range(0..4) {
                0 | 1 => {
                    let name = self.pick(&NAMES);
                    self.out.push_str(name);
                    self.out.push_str(" = ");
                    self.expression(0);
                }
                2 => self.call(0),
                _ => {
                    self.out.push_str("return ");
                    self.expression(0);
                }
            }
        }
        self.out.push('\n');
    }

    fn call(&mut self, nesting: usize) {
        let name = self.pick(&CALLS);
        self.out.push_str(name);
        self.out.push('(');
        let args = self.rng.random_range(0..=3);
        for a in 0..args {
            if a > 0 {
                self.out.push_str(", ");
            }
            self.expression(nesting + 1);
        }
        self.out.push(')');
    }

    fn expression(&mut self, nesting: usize) {
        // Deep down only leaves, so that expressions end.
        let kinds = if nesting >= MAX_NESTING { 3 } else { 7 };
        match self.rng.random_range(0..kinds) {
            0 => {
                let name = self.pick(&NAMES);
                self.out.push_str(name);
            }
            1 => {
                let n = self.rng.random_range(0..1000);
                self.out.push_str(&n.to_string());
            }
            2 => self.string(),
            3 => self.call(nesting),
            4 => {
                self.out.push('[');
                let items = self.rng.random_range(1..=3);
                for i in 0..items {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expression(nesting + 1);
                }
                self.out.push(']');
            }
            5 => {
                self.out.push('(');
                self.expression(nesting + 1);
                let op = self.pick(&[" + ", " - ", " * ", " > "]);
                self.out.push_str(op);
                self.expression(nesting + 1);
                self.out.push(')');
            }
            _ => {
                self.out.push('{');
                self.string();
                self.out.push_str(": ");
                self.expression(nesting + 1);
                self.out.push('}');
            }
        }
    }

    fn string(&mut self) {
        self.out.push('"');
        let words = self.rng.random_range(1..=4);
        for w in 0..words {
            if w > 0 {
                self.out.push(' ');
            }
            let word = self.pick(&WORDS);
            self.out.push_str(word);
            if self.rng.random_range(0..3) == 0 {
                let stray = self.pick(&STRAY);
                self.out.push_str(stray);
            }
        }
        self.out.push('"');
    }
}
