//! The log-mel spectrogram, as librosa 0.10 computes it with its defaults
//! (`librosa.feature.melspectrogram` then `librosa.power_to_db`), so that a model
//! trained on librosa's features reads ours:
//!
//! - frames: a periodic Hann window of `window` samples every `hop`, the signal
//!   padded with `window / 2` zeros each side (`center=True`, `pad_mode="constant"`),
//!   so frame `t` is centred on sample `t * hop`;
//! - the power spectrum `|X_t(k)|²` of each frame (`n_fft = window`);
//! - `mels` triangular filters on the Slaney mel scale (linear below 1 kHz,
//!   `m = 3 f / 200`; logarithmic above, 27 mels per factor 6.4), spaced evenly in
//!   mels from `fmin` to `fmax`, each scaled to unit area (`norm="slaney"`:
//!   `2 / (f_right - f_left)`);
//! - decibels, `10 log10(max(S, 1e-10))`, floored 80 dB below the clip's loudest
//!   (`ref=1.0, amin=1e-10, top_db=80`).

use realfft::RealFftPlanner;

/// How samples become a spectrogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Samples per second the spectrogram is taken at.
    pub rate: u32,
    /// Window (and FFT) length in samples.
    pub window: usize,
    /// Samples between frames.
    pub hop: usize,
    /// The lowest filter's left edge, Hz.
    pub fmin: f64,
    /// The highest filter's right edge, Hz.
    pub fmax: f64,
}

/// The decibel floor below the loudest bin.
pub const TOP_DB: f32 = 80.0;

/// `frames` frames of `mels` bands of `samples` in decibels, band-major (`[mels,
/// frames]`, band 0 the lowest). Frames past the samples' end see silence.
pub fn log_mel(samples: &[f32], settings: &Settings, mels: usize, frames: usize) -> Vec<f32> {
    let Settings { window, hop, .. } = *settings;
    let hann: Vec<f32> = (0..window)
        .map(|n| {
            let phase = 2.0 * std::f64::consts::PI * n as f64 / window as f64;
            (0.5 - 0.5 * phase.cos()) as f32
        })
        .collect();
    let filters = filterbank(settings, mels);
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(window);
    let (mut frame, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
    let mut power = vec![0.0f32; window / 2 + 1];
    let mut out = vec![0.0f32; mels * frames];
    for t in 0..frames {
        // Sample `t * hop - window / 2 + n` under window position `n`.
        for (n, (x, w)) in frame.iter_mut().zip(&hann).enumerate() {
            let at = (t * hop + n).checked_sub(window / 2);
            *x = at.and_then(|i| samples.get(i)).map_or(0.0, |s| s * w);
        }
        fft.process(&mut frame, &mut spectrum)
            .expect("buffers made by the plan");
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for (m, filter) in filters.iter().enumerate() {
            let energy: f32 = filter.iter().zip(&power).map(|(w, p)| w * p).sum();
            out[m * frames + t] = 10.0 * energy.max(1e-10).log10();
        }
    }
    let loudest = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for db in &mut out {
        *db = db.max(loudest - TOP_DB);
    }
    out
}

/// Hz to mels on the Slaney scale.
pub fn mel(hz: f64) -> f64 {
    const BREAK: f64 = 1000.0;
    match hz < BREAK {
        true => 3.0 * hz / 200.0,
        false => 15.0 + (hz / BREAK).ln() * 27.0 / 6.4f64.ln(),
    }
}

/// Mels to Hz on the Slaney scale.
pub fn hz(mel: f64) -> f64 {
    match mel < 15.0 {
        true => 200.0 * mel / 3.0,
        false => 1000.0 * ((mel - 15.0) * 6.4f64.ln() / 27.0).exp(),
    }
}

/// The `mels + 2` frequencies (Hz) the filters stand on: filter `m` rises from
/// edge `m` to its peak at edge `m + 1` and falls to edge `m + 2`.
pub fn edges(settings: &Settings, mels: usize) -> Vec<f64> {
    let (low, high) = (mel(settings.fmin), mel(settings.fmax));
    (0..mels + 2)
        .map(|i| hz(low + (high - low) * i as f64 / (mels + 1) as f64))
        .collect()
}

/// The `mels` filters' weights over the FFT's `window / 2 + 1` bins.
fn filterbank(settings: &Settings, mels: usize) -> Vec<Vec<f32>> {
    let bins = settings.window / 2 + 1;
    let bin_hz = f64::from(settings.rate) / settings.window as f64;
    let edges = edges(settings, mels);
    (0..mels)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let area = 2.0 / (right - left);
            (0..bins)
                .map(|k| {
                    let f = k as f64 * bin_hz;
                    let rising = (f - left) / (centre - left);
                    let falling = (right - f) / (right - centre);
                    (rising.min(falling).max(0.0) * area) as f32
                })
                .collect()
        })
        .collect()
}
