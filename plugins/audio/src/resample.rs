//! A clip at the model's sample rate: rubato's FFT resampler (its spectrum cut or
//! extended behind an anti-aliasing filter), its delay removed, so that the
//! output's sample `n` lies at the input's time `n / to`.

use rubato::{FftFixedIn, Resampler};

/// About how many input frames go in per call: long enough for the filter, short
/// enough to stay cheap on one-second clips.
const CHUNK: usize = 1024;

/// Input frames per call for `from` -> `to` Hz near [`CHUNK`]: a multiple of twice
/// the smallest whole step (`from / gcd` input frames make `to / gcd` output
/// frames), so that the FFT's output length is even. rubato reports half of it,
/// rounded down, as its delay: an odd length (48 kHz -> 16 kHz from 1024 frames
/// gives 171) leaves every sample half a frame late.
fn chunk(from: u32, to: u32) -> usize {
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let step = 2 * (from / gcd(from, to)) as usize;
    step * (CHUNK / step).max(1)
}

/// `samples` at `from` Hz as `to` Hz: `len * to / from` samples, rounded down.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to {
        return Ok(samples.to_vec());
    }
    let fail = |e: &dyn std::fmt::Display| format!("resampling {from} Hz to {to} Hz: {e}");
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, chunk(from, to), 1, 1)
        .map_err(|e| fail(&e))?;
    let expected = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(delay + expected + resampler.output_frames_max());
    let mut rest = samples;
    while rest.len() >= resampler.input_frames_next() {
        let (chunk, after) = rest.split_at(resampler.input_frames_next());
        out.extend_from_slice(&resampler.process(&[chunk], None).map_err(|e| fail(&e))?[0]);
        rest = after;
    }
    if !rest.is_empty() {
        let last = resampler.process_partial(Some(&[rest]), None);
        out.extend_from_slice(&last.map_err(|e| fail(&e))?[0]);
    }
    // The filter still holds the end: flush it with silence.
    while out.len() < delay + expected {
        let tail = resampler.process_partial::<&[f32]>(None, None);
        out.extend_from_slice(&tail.map_err(|e| fail(&e))?[0]);
    }
    out.drain(..delay);
    out.truncate(expected);
    Ok(out)
}
