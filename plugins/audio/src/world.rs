//! The audio world: one-second clips at the spectrogram's rate whose every sound is
//! known, so that where a map or a unit points can be checked against the truth.
//!
//! A clip is a noise floor, one *subject* event that sets its class (or none: the
//! class is then silence), and up to two fainter, shorter distractors:
//!
//! - **tone**: a sine of 250 Hz to 5 kHz;
//! - **chirp up / down**: a sweep over a factor of 3 to 6 in frequency, between
//!   250 Hz and 7.2 kHz, exponential in time (a straight line on the mel scale's
//!   logarithmic part);
//! - **noise**: a band of noise an octave to an octave and a half wide, made of 48
//!   sines of random frequency and phase within the band;
//! - **clicks**: a train of single-sample impulses, 6 to 15 per second.
//!
//! Events fade in and out over 10 ms (raised cosine), so that their edges do not
//! spread energy across the spectrum. Each event's time-frequency mask on a
//! spectrogram is where it sounds: the frames whose centre lies within the event
//! (for clicks, within a quarter window of a click), and the mel bands whose filter
//! covers the event's frequencies at that frame (every band for clicks). Subjects
//! play at 0.25 to 0.5 of full scale for 0.45 to 0.8 s; distractors at 0.04 to 0.1
//! for 0.1 to 0.25 s. Clips are drawn from a ChaCha8 generator keyed by the world's
//! seed and the clip's index, so any clip can be made alone, in any order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::SETTINGS;
use crate::mel;

/// Seconds per clip.
pub const SECONDS: f64 = 1.0;

/// What an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Tone,
    ChirpUp,
    ChirpDown,
    Noise,
    Clicks,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Tone,
        Kind::ChirpUp,
        Kind::ChirpDown,
        Kind::Noise,
        Kind::Clicks,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Kind::Tone => "tone",
            Kind::ChirpUp => "chirp-up",
            Kind::ChirpDown => "chirp-down",
            Kind::Noise => "noise",
            Kind::Clicks => "clicks",
        }
    }
}

/// The classes: the kinds of subject, in [`Kind::ALL`]'s order, then silence.
pub const CLASSES: [&str; 6] = [
    "tone",
    "chirp-up",
    "chirp-down",
    "noise",
    "clicks",
    "silence",
];

/// One sound in a clip.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: Kind,
    /// When it sounds, in seconds from the clip's start.
    pub start: f64,
    pub end: f64,
    /// Its frequencies in Hz: a tone's both are its own; a chirp sweeps from `from`
    /// to `to`; noise fills the band between them; clicks fill the spectrum.
    pub from: f64,
    pub to: f64,
    /// Peak amplitude, of full scale.
    pub level: f64,
    /// Clicks per second (clicks only).
    pub rate: f64,
}

impl Event {
    /// The frequencies (Hz) it covers at time `t`, if it sounds then.
    fn band_at(&self, t: f64) -> Option<(f64, f64)> {
        if t < self.start || t > self.end {
            return None;
        }
        let u = (t - self.start) / (self.end - self.start);
        match self.kind {
            Kind::Tone => Some((self.from, self.from)),
            Kind::ChirpUp | Kind::ChirpDown => {
                let f = self.from * (self.to / self.from).powf(u);
                Some((f, f))
            }
            Kind::Noise => Some((self.from.min(self.to), self.from.max(self.to))),
            Kind::Clicks => {
                // Frames within a quarter window of a click, where the Hann window
                // weighs it at least half, hear it.
                let half = SETTINGS.window as f64 / 4.0 / f64::from(SETTINGS.rate);
                let since = (t - self.start).rem_euclid(1.0 / self.rate);
                let near = since <= half || 1.0 / self.rate - since <= half;
                near.then_some((0.0, f64::INFINITY))
            }
        }
    }
}

/// A clip and its truth.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// Mono samples at [`SETTINGS`]' rate.
    pub samples: Vec<f32>,
    /// The subject first (if any), then the distractors.
    pub events: Vec<Event>,
    /// Index into [`CLASSES`].
    pub class: usize,
}

impl Clip {
    /// The subject: the event that sets the class (none for silence).
    pub fn subject(&self) -> Option<&Event> {
        (self.class < Kind::ALL.len()).then(|| &self.events[0])
    }

    /// Where `event` sounds on a `mels` x `frames` spectrogram of the clip, band
    /// major, highest band first (the plugin's input layout).
    pub fn mask(&self, event: &Event, mels: usize, frames: usize) -> Vec<bool> {
        let edges = mel::edges(&SETTINGS, mels);
        let mut mask = vec![false; mels * frames];
        for t in 0..frames {
            let time = (t * SETTINGS.hop) as f64 / f64::from(SETTINGS.rate);
            let Some((low, high)) = event.band_at(time) else {
                continue;
            };
            for m in 0..mels {
                // Band m's filter spans edges m to m + 2.
                if edges[m] < high.max(low + 1e-9) && low < edges[m + 2] {
                    mask[(mels - 1 - m) * frames + t] = true;
                }
            }
        }
        mask
    }

    /// Each kind's mask (the union over the clip's events of that kind), in
    /// [`Kind::ALL`]'s order.
    pub fn masks(&self, mels: usize, frames: usize) -> Vec<Vec<bool>> {
        Kind::ALL
            .iter()
            .map(|&kind| {
                let mut union = vec![false; mels * frames];
                for event in self.events.iter().filter(|e| e.kind == kind) {
                    for (u, m) in union.iter_mut().zip(self.mask(event, mels, frames)) {
                        *u |= m;
                    }
                }
                union
            })
            .collect()
    }
}

/// A world of clips.
#[derive(Clone, Copy, Debug)]
pub struct World {
    seed: u64,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Clip `index`.
    pub fn clip(&self, index: u64) -> Clip {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&index.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        let rate = f64::from(SETTINGS.rate);
        let n = (SECONDS * rate) as usize;
        let floor = rng.random_range(0.002..0.01);
        let mut samples: Vec<f64> = (0..n).map(|_| rng.random_range(-floor..floor)).collect();
        let class = rng.random_range(0..CLASSES.len());
        let mut events = Vec::new();
        if let Some(&kind) = Kind::ALL.get(class) {
            events.push(event(&mut rng, kind, (0.45, 0.8), (0.25, 0.5)));
        }
        for _ in 0..rng.random_range(0..=2) {
            let kind = Kind::ALL[rng.random_range(0..Kind::ALL.len())];
            events.push(event(&mut rng, kind, (0.1, 0.25), (0.04, 0.1)));
        }
        for e in &events {
            play(&mut rng, e, &mut samples);
        }
        Clip {
            samples: samples.into_iter().map(|s| s as f32).collect(),
            events,
            class,
        }
    }
}

/// An event of `kind` lasting and playing within the given ranges, inside the
/// clip with 50 ms to spare at each end.
fn event(rng: &mut ChaCha8Rng, kind: Kind, length: (f64, f64), level: (f64, f64)) -> Event {
    let length = rng.random_range(length.0..length.1);
    let start = rng.random_range(0.05..SECONDS - 0.05 - length);
    let log_uniform =
        |rng: &mut ChaCha8Rng, low: f64, high: f64| (rng.random_range(low.ln()..high.ln())).exp();
    let (from, to) = match kind {
        Kind::Tone => {
            let f = log_uniform(rng, 250.0, 5000.0);
            (f, f)
        }
        Kind::ChirpUp | Kind::ChirpDown => {
            let low = log_uniform(rng, 250.0, 1200.0);
            let high = low * rng.random_range(3.0..6.0);
            match kind {
                Kind::ChirpUp => (low, high),
                _ => (high, low),
            }
        }
        Kind::Noise => {
            let low = log_uniform(rng, 300.0, 2500.0);
            (low, low * rng.random_range(2.0..2.8))
        }
        Kind::Clicks => (0.0, SETTINGS.fmax),
    };
    Event {
        kind,
        start,
        end: start + length,
        from,
        to,
        level: rng.random_range(level.0..level.1),
        rate: rng.random_range(6.0..15.0),
    }
}

/// Adds `e` to `samples`.
fn play(rng: &mut ChaCha8Rng, e: &Event, samples: &mut [f64]) {
    use std::f64::consts::TAU;
    let rate = f64::from(SETTINGS.rate);
    let (first, last) = ((e.start * rate).ceil() as usize, (e.end * rate) as usize);
    let length = e.end - e.start;
    // Raised-cosine fades of 10 ms at both ends.
    let envelope = |t: f64| {
        let edge = (t - e.start).min(e.end - t) / 0.010;
        match edge >= 1.0 {
            true => 1.0,
            false => 0.5 - 0.5 * (std::f64::consts::PI * edge.max(0.0)).cos(),
        }
    };
    match e.kind {
        Kind::Tone | Kind::ChirpUp | Kind::ChirpDown => {
            let phase = rng.random_range(0.0..TAU);
            let k = e.to / e.from;
            for (i, s) in samples.iter_mut().enumerate().take(last + 1).skip(first) {
                let t = i as f64 / rate;
                let u = t - e.start;
                // The phase integrates the instantaneous frequency from*k^(u/length).
                let cycles = match e.kind {
                    Kind::Tone => e.from * u,
                    _ => e.from * length / k.ln() * (k.powf(u / length) - 1.0),
                };
                *s += e.level * envelope(t) * (TAU * cycles + phase).sin();
            }
        }
        Kind::Noise => {
            const PARTIALS: usize = 48;
            let partials: Vec<(f64, f64)> = (0..PARTIALS)
                .map(|_| (rng.random_range(e.from..e.to), rng.random_range(0.0..TAU)))
                .collect();
            // Random phases: the partials' powers add, so the sum's amplitude grows
            // as their count's square root.
            let scale = e.level / (PARTIALS as f64 / 2.0).sqrt();
            for (i, s) in samples.iter_mut().enumerate().take(last + 1).skip(first) {
                let t = i as f64 / rate;
                let sum: f64 = partials.iter().map(|(f, p)| (TAU * f * t + p).sin()).sum();
                *s += scale * envelope(t) * sum;
            }
        }
        Kind::Clicks => {
            let mut t = e.start;
            while t <= e.end {
                if let Some(s) = samples.get_mut((t * rate).round() as usize) {
                    *s += e.level;
                }
                t += 1.0 / e.rate;
            }
        }
    }
}
