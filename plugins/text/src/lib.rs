//! Text as a unitscope modality plugin, written against the SDK alone: a text file
//! becomes one-hot characters, the input of a character-level recurrent model, and
//! a line of tokens (one per character) that maps are drawn under.
//!
//! The host asks for an input of `[C, 1, T]`: `C` is the alphabet ([`world::ALPHABET`]:
//! newline and printable ASCII), `T` the characters the model reads. A file is read
//! from its start for as long as `T` characters need ([`read`]); a shorter one is
//! placed at the window's end, the positions before it left all zero (no character),
//! so that the model's prediction is of the character after the file's last.
//!
//! [`world`] writes code-like text whose bracket depth, strings, columns and
//! indentation are known at every character: the ground truth that the text model is
//! trained on and its units are checked against. The plugin hands it to the host as
//! its world: a window's next character is its class, each character's state its
//! tracks, and three of them as concepts (category `syntax`) for dissection.

pub mod read;
pub mod world;

use std::path::Path;

use unitscope_sdk::{Concept, Decoded, Display, Error, Modality, Sample, Tensor, export_plugin};

use world::{ALPHABET, Text, World};

/// Text files as one-hot characters.
#[derive(Default)]
pub struct TextModality;

/// The concepts, each a mask from the tracks: inside a string, two or more
/// brackets deep, and a line's indentation.
const CONCEPTS: [Concept; 3] = [
    Concept {
        category: "syntax",
        name: "string",
    },
    Concept {
        category: "syntax",
        name: "nested",
    },
    Concept {
        category: "syntax",
        name: "indentation",
    },
];

/// The window `[c, h, w]` the host asks for, checked: the alphabet by one row.
fn check_shape([c, h, w]: [usize; 3]) -> Result<(), Error> {
    if c != ALPHABET || h != 1 || w == 0 {
        return Err(Error::new(format!(
            "the text modality makes inputs of [{ALPHABET}, 1, T] (its alphabet by T \
             characters); the model asks for [{c}, {h}, {w}]: give it a card with \
             `channels = {ALPHABET}` and `size = [1, T]`"
        )));
    }
    Ok(())
}

/// `chars` one-hot at the end of a window of `width` positions, `[ALPHABET, 1, width]`.
fn one_hot(chars: &[char], width: usize) -> Result<Tensor, Error> {
    let mut values = vec![0f32; ALPHABET * width];
    let offset = width - chars.len();
    for (t, &c) in chars.iter().enumerate() {
        let i =
            world::index(c).ok_or_else(|| Error::new(format!("{c:?} is not in the alphabet")))?;
        values[i * width + offset + t] = 1.0;
    }
    Tensor::new(&[ALPHABET, 1, width], values)
}

impl TextModality {
    /// `text`'s concept masks, `[concepts, 1, T]`.
    fn masks(text: &Text) -> Vec<f32> {
        let [depth, quote, column, indent] = &text.tracks;
        let string = quote.iter().map(|&q| q == 1.0);
        let nested = depth.iter().map(|&d| d >= 2.0);
        let indentation = column.iter().zip(indent).map(|(&c, &i)| c < 4.0 * i);
        string
            .chain(nested)
            .chain(indentation)
            .map(|m| f32::from(u8::from(m)))
            .collect()
    }
}

impl Modality for TextModality {
    const NAME: &'static str = "text";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "text files as one-hot characters for recurrent models";
    /// Text and code; not JSON or TOML, which sit beside images and clips as their
    /// metadata (a folder of WAV files and their labels stays a folder of clips).
    const EXTENSIONS: &'static [&'static str] = &["txt", "py", "rs", "c", "js"];
    /// Where the source tree keeps it: the card is not copied beside the built
    /// library, which Cargo places in `target/`.
    const CARD: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/model/char-lstm.toml");

    const CLASSES: &'static [&'static str] = &world::CLASSES;
    const CONCEPTS: &'static [Concept] = &CONCEPTS;
    const TRACKS: &'static [&'static str] = &world::TRACKS;

    fn decode(&self, path: &Path, [c, h, w]: [usize; 3]) -> Result<Decoded, Error> {
        check_shape([c, h, w])?;
        let chars = read::read(path, w)?;
        let mut tokens = vec![String::new(); w - chars.len()];
        tokens.extend(chars.iter().map(char::to_string));
        Ok(Decoded {
            input: one_hot(&chars, w)?,
            display: Display::Tokens(tokens),
        })
    }

    fn sample(&self, seed: u64, index: u64, [c, h, w]: [usize; 3]) -> Result<Sample, Error> {
        check_shape([c, h, w])?;
        // One character more than the window: the one to predict.
        let text = World::new(seed).sample(index, w + 1);
        let next = text.chars[w];
        let window = Text {
            chars: text.chars[..w].to_vec(),
            tracks: text.tracks.map(|t| t[..w].to_vec()),
        };
        let class = world::index(next).ok_or("the world wrote a character outside its alphabet")?;
        Ok(Sample {
            input: one_hot(&window.chars, w)?,
            class,
            masks: Tensor::new(&[CONCEPTS.len(), 1, w], Self::masks(&window))?,
            tracks: Some(Tensor::new(
                &[world::TRACKS.len(), 1, w],
                window.tracks.concat(),
            )?),
        })
    }
}

export_plugin!(modality: TextModality);
