//! Audio as a unitscope modality plugin, written against the SDK alone: WAV files
//! become log-mel spectrograms, the model's input, and a picture with time (s) and
//! frequency (Hz) axes that every map is drawn onto.
//!
//! The host asks for an input of `[C, H, W]`: `H` mel bands by `W` frames (each of
//! the `C` channels the same). A file is read from its start for as long as `W`
//! frames need, mixed down to mono and resampled to the spectrogram's rate
//! ([`wav`], [`resample`]); a shorter file is padded with silence. The bands
//! ([`mel`]) are stored highest first, so that the picture, which the host maps
//! onto the input row for row, has low frequencies at the bottom as spectrograms
//! are read. Values are decibels scaled to `0..=1`: 0 is 80 dB below the clip's
//! loudest bin, 1 the loudest.
//!
//! [`world`] makes clips whose every sound is known, with their time-frequency
//! masks: the ground truth that the audio model is trained and checked on. The
//! plugin hands them to the host as its world: a clip's spectrogram is a sample's
//! input, its subject's kind (or silence) the class, each kind of sound a concept
//! (category `sound`) with the union of its events' masks.

pub mod mel;
pub mod resample;
pub mod wav;
pub mod world;

use std::path::Path;

use unitscope_sdk::{
    Axis, Concept, Decoded, Display, Error, Modality, Sample, Tensor, export_plugin,
};

use mel::{Settings, TOP_DB};
use world::{Kind, World};

/// WAV files as log-mel spectrograms.
#[derive(Default)]
pub struct Audio;

/// The spectrogram's settings: 16 kHz, 25 ms windows every 10 ms, 0 to 8 kHz
/// (speech and sound-event models' usual front end).
pub const SETTINGS: Settings = Settings {
    rate: 16_000,
    window: 400,
    hop: 160,
    fmin: 0.0,
    fmax: 8_000.0,
};

impl Audio {
    /// The spectrogram of `samples` (mono, at `SETTINGS.rate`) as `mels` x `frames`
    /// values in `0..=1`, highest band first.
    pub fn spectrogram(samples: &[f32], mels: usize, frames: usize) -> Vec<f32> {
        let db = mel::log_mel(samples, &SETTINGS, mels, frames);
        let loudest = db.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        db.chunks_exact(frames)
            .rev()
            .flatten()
            .map(|&d| (d - loudest) / TOP_DB + 1.0)
            .collect()
    }
}

/// `values` (`[H, W]`) as the model's input, `[C, H, W]`: each channel the same.
fn input(values: &[f32], [c, h, w]: [usize; 3]) -> Result<Tensor, Error> {
    Tensor::new(
        &[c, h, w],
        values.iter().copied().cycle().take(c * h * w).collect(),
    )
}

/// An input of `[c, h, w]`, refused when it has no values.
fn check_shape([c, h, w]: [usize; 3]) -> Result<(), Error> {
    match c == 0 || h == 0 || w == 0 {
        true => Err(Error::new(format!("an input of {c}x{h}x{w} has no values"))),
        false => Ok(()),
    }
}

/// The world's concepts: each kind of sound, in [`Kind::ALL`]'s order.
const CONCEPTS: [Concept; Kind::ALL.len()] = {
    let mut concepts = [Concept {
        category: "sound",
        name: "",
    }; Kind::ALL.len()];
    let mut i = 0;
    while i < concepts.len() {
        concepts[i].name = Kind::ALL[i].name();
        i += 1;
    }
    concepts
};

impl Modality for Audio {
    const NAME: &'static str = "audio";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "WAV files as log-mel spectrograms (time in s, frequency in Hz)";
    const EXTENSIONS: &'static [&'static str] = &["wav"];
    /// Where the source tree keeps it: the card is not copied beside the built
    /// library, which Cargo places in `target/`.
    const CARD: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/model/audio-cnn.toml");

    const CLASSES: &'static [&'static str] = &world::CLASSES;
    const CONCEPTS: &'static [Concept] = &CONCEPTS;

    fn decode(&self, path: &Path, [c, h, w]: [usize; 3]) -> Result<Decoded, Error> {
        check_shape([c, h, w])?;
        let rate = f64::from(SETTINGS.rate);
        // Frame `w - 1` is centred on sample `(w - 1) * hop` and reaches half a
        // window past it.
        let needed = (w - 1) * SETTINGS.hop + SETTINGS.window / 2 + 1;
        let clip = wav::read(path, needed as f64 / rate)?;
        let samples = resample::resample(&clip.samples, clip.rate, SETTINGS.rate)?;
        let values = Self::spectrogram(&samples, h, w);
        let rgb = values
            .iter()
            .flat_map(|&v| {
                let c = colorous::MAGMA.eval_continuous(f64::from(v.clamp(0.0, 1.0)));
                [c.r, c.g, c.b]
            })
            .collect();
        Ok(Decoded {
            input: input(&values, [c, h, w])?,
            display: Display::Image {
                rgb,
                width: w,
                height: h,
                x: Axis {
                    label: "time".into(),
                    unit: "s".into(),
                    start: 0.0,
                    end: (w * SETTINGS.hop) as f64 / rate,
                },
                y: Axis {
                    label: "frequency".into(),
                    unit: "Hz".into(),
                    start: SETTINGS.fmax,
                    end: SETTINGS.fmin,
                },
            },
        })
    }

    fn sample(&self, seed: u64, index: u64, [c, h, w]: [usize; 3]) -> Result<Sample, Error> {
        check_shape([c, h, w])?;
        let clip = World::new(seed).clip(index);
        let values = Self::spectrogram(&clip.samples, h, w);
        let masks = clip.masks(h, w).into_iter().flatten();
        Ok(Sample {
            input: input(&values, [c, h, w])?,
            class: clip.class,
            tracks: None,
            masks: Tensor::new(
                &[CONCEPTS.len(), h, w],
                masks.map(|m| f32::from(u8::from(m))).collect(),
            )?,
        })
    }
}

export_plugin!(modality: Audio);
