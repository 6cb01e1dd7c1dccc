//! WAV files in: integer PCM of 8, 16, 24 or 32 bits or 32-bit float, any number of
//! channels (mixed down to their mean), read from the start only as far as a clip
//! needs, so a 10-hour file costs what a 1-second one does.

use std::path::Path;

use hound::{SampleFormat, WavReader};

/// Mono samples at `rate` Hz, nominally in `-1..=1`.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub rate: u32,
}

/// The highest sample rate read (DXD, 8 x 96 kHz): a header claiming more is
/// corrupt rather than a recording.
const MAX_RATE: u32 = 768_000;

/// The first `seconds` of the WAV file at `path` (all of it if shorter).
pub fn read(path: &Path, seconds: f64) -> Result<Clip, String> {
    let reader = WavReader::open(path).map_err(|e| format!("not a WAV file we can read: {e}"))?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err("its header declares no channels".into());
    }
    if !(1..=MAX_RATE).contains(&spec.sample_rate) {
        return Err(format!(
            "its header declares {} samples per second; 1 to {MAX_RATE} open",
            spec.sample_rate
        ));
    }
    let channels = usize::from(spec.channels);
    let declared = reader.duration() as usize;
    if declared == 0 {
        return Err("it holds no samples".into());
    }
    let frames = declared.min((seconds * f64::from(spec.sample_rate)).ceil() as usize);
    let wanted = frames * channels;
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => collect(reader.into_samples::<f32>().take(wanted), wanted)?,
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // Full scale of a signed `bits`-bit sample (hound centres 8-bit PCM).
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            let samples = reader.into_samples::<i32>().take(wanted);
            collect(samples.map(|s| s.map(|s| s as f32 * scale)), wanted)?
        }
        (format, bits) => {
            let kind = match format {
                SampleFormat::Float => "float",
                SampleFormat::Int => "integer",
            };
            return Err(format!(
                "its samples are {bits}-bit {kind}; 8, 16, 24 or 32-bit integer and \
                 32-bit float open"
            ));
        }
    };
    if let Some(bad) = interleaved.iter().find(|s| !s.is_finite()) {
        return Err(format!("it holds a sample of {bad}"));
    }
    let samples = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok(Clip {
        samples,
        rate: spec.sample_rate,
    })
}

/// The `wanted` samples, or why the file has fewer than its header says.
fn collect(
    samples: impl Iterator<Item = hound::Result<f32>>,
    wanted: usize,
) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(wanted);
    for sample in samples {
        match sample {
            Ok(s) => out.push(s),
            Err(e) => {
                return Err(format!(
                    "it ends after {} of the samples its header declares ({e}); \
                     truncated?",
                    out.len()
                ));
            }
        }
    }
    Ok(out)
}
