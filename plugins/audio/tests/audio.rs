//! The audio plugin: WAV reading in every format it claims, resampling, the
//! log-mel spectrogram against librosa's, and bad files.

use std::io::Write;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec, WavWriter};
use unitscope_audio::mel::log_mel;
use unitscope_audio::resample::resample;
use unitscope_audio::{Audio, SETTINGS, wav};
use unitscope_sdk::{Display, Modality};

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

/// A scratch directory of its own per test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unitscope-audio-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tone(hz: f64, rate: u32, seconds: f64, level: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            (level * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// Writes `samples` (in -1..1) as a WAV of `bits`-bit `format` with `channels`
/// identical channels.
fn write(path: &Path, samples: &[f32], rate: u32, channels: u16, bits: u16, format: SampleFormat) {
    let spec = WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut w = WavWriter::create(path, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            match format {
                SampleFormat::Float => w.write_sample(s).unwrap(),
                SampleFormat::Int => {
                    let full = (1i64 << (bits - 1)) as f64;
                    let v = (f64::from(s) * full).round().clamp(-full, full - 1.0) as i32;
                    match bits {
                        8 => w.write_sample(v as i8).unwrap(),
                        16 => w.write_sample(v as i16).unwrap(),
                        _ => w.write_sample(v).unwrap(),
                    }
                }
            }
        }
    }
    w.finalize().unwrap();
}

/// Our log-mel of librosa's test signal equals librosa 0.10's, bin by bin.
#[test]
fn log_mel_matches_librosa() {
    let text = std::fs::read_to_string(reference("librosa.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let size = |k: &str| fixture[k].as_u64().unwrap() as usize;
    let theirs: Vec<f32> = serde_json::from_value(fixture["db"].clone()).unwrap();
    let clip = wav::read(&reference("signal.wav"), 10.0).unwrap();
    assert_eq!(clip.rate, SETTINGS.rate);
    let ours = log_mel(&clip.samples, &SETTINGS, size("mels"), size("frames"));
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 0.005, "largest difference from librosa: {worst} dB");
}

/// Every format reads back as the same clip, within its quantization; stereo
/// mixes down to the same mono.
#[test]
fn every_format_reads_the_same_clip() {
    let dir = scratch("formats");
    let clip = tone(440.0, 16_000, 0.25, 0.5);
    for (bits, format) in [
        (8, SampleFormat::Int),
        (16, SampleFormat::Int),
        (24, SampleFormat::Int),
        (32, SampleFormat::Int),
        (32, SampleFormat::Float),
    ] {
        for channels in [1, 2, 6] {
            let path = dir.join(format!("{bits}-{format:?}-{channels}.wav"));
            write(&path, &clip, 16_000, channels, bits, format);
            let read = wav::read(&path, 10.0).unwrap();
            assert_eq!((read.rate, read.samples.len()), (16_000, clip.len()));
            // A quantization step, and float rounding in the mixdown.
            let step = match format {
                SampleFormat::Float => 0.0,
                SampleFormat::Int => 1.0 / (1u64 << (bits - 1)) as f32,
            } + 1e-6;
            let worst = read
                .samples
                .iter()
                .zip(&clip)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= step,
                "{bits}-bit {format:?} x{channels}: off by {worst}"
            );
        }
    }
}

/// Only the seconds asked for are read.
#[test]
fn a_read_stops_at_the_seconds_asked_for() {
    let dir = scratch("bounded");
    let path = dir.join("long.wav");
    write(
        &path,
        &tone(440.0, 8_000, 3.0, 0.5),
        8_000,
        1,
        16,
        SampleFormat::Int,
    );
    assert_eq!(wav::read(&path, 1.0).unwrap().samples.len(), 8_000);
    assert_eq!(wav::read(&path, 10.0).unwrap().samples.len(), 24_000);
}

/// A tone at 44.1 kHz resampled to 16 kHz is the same tone sampled at 16 kHz,
/// with no delay; and 8 kHz up to 16 kHz likewise.
#[test]
fn resampling_keeps_the_tone_and_its_timing() {
    for from in [44_100, 8_000, 48_000, 22_050, 11_025, 96_000] {
        let source = tone(1000.0, from, 0.5, 0.5);
        let ours = resample(&source, from, 16_000).unwrap();
        let truth = tone(1000.0, 16_000, 0.5, 0.5);
        assert_eq!(
            ours.len(),
            source.len() * 16_000 / from as usize,
            "from {from} Hz"
        );
        // Away from the clip's two ends, where the filter sees the cut.
        let middle = 400..ours.len() - 400;
        let worst = ours[middle.clone()]
            .iter()
            .zip(&truth[middle])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "from {from} Hz: off by {worst}");
    }
}

/// A tone lands in the band of its frequency: higher tones in rows nearer the
/// top; the picture is the input's size with time and frequency axes.
#[test]
fn a_decoded_file_is_a_spectrogram_with_axes() {
    let dir = scratch("decode");
    let mut loudest_rows = Vec::new();
    for hz in [300.0, 1500.0, 6000.0] {
        let path = dir.join(format!("{hz}.wav"));
        write(
            &path,
            &tone(hz, 22_050, 1.5, 0.5),
            22_050,
            2,
            16,
            SampleFormat::Int,
        );
        let decoded = Audio.decode(&path, [3, 64, 101]).unwrap();
        assert_eq!(decoded.input.dims(), [3, 64, 101]);
        let values = decoded.input.data();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(values[..64 * 101], values[2 * 64 * 101..]);
        // The loudest row of a middle frame.
        let row = (0..64)
            .max_by(|&a, &b| values[a * 101 + 50].total_cmp(&values[b * 101 + 50]))
            .unwrap();
        loudest_rows.push(row);
        let Display::Image {
            width,
            height,
            x,
            y,
            rgb,
        } = decoded.display
        else {
            panic!("a spectrogram is a picture");
        };
        assert_eq!((width, height, rgb.len()), (101, 64, 101 * 64 * 3));
        assert_eq!((x.label.as_str(), x.unit.as_str()), ("time", "s"));
        assert_eq!(
            (y.label.as_str(), y.unit.as_str(), y.start, y.end),
            ("frequency", "Hz", 8000.0, 0.0)
        );
        assert!((x.end - 1.01).abs() < 1e-9);
    }
    assert!(
        loudest_rows[0] > loudest_rows[1] && loudest_rows[1] > loudest_rows[2],
        "rows of 300 Hz, 1.5 kHz, 6 kHz: {loudest_rows:?}"
    );
}

/// A file shorter than the frames asked for is padded with silence.
#[test]
fn a_short_file_is_padded_with_silence() {
    let dir = scratch("short");
    let path = dir.join("short.wav");
    write(
        &path,
        &tone(1000.0, 16_000, 0.3, 0.5),
        16_000,
        1,
        16,
        SampleFormat::Int,
    );
    let decoded = Audio.decode(&path, [1, 64, 101]).unwrap();
    let values = decoded.input.data();
    let column = |t: usize| (0..64).map(|m| values[m * 101 + t]).fold(0.0f32, f32::max);
    assert!(column(10) > 0.9, "the tone");
    assert_eq!(column(60), 0.0, "the silence after it, at the floor");
}

/// Bad files are errors that say what is wrong, never a panic.
#[test]
fn bad_files_are_errors_that_say_why() {
    let dir = scratch("bad");
    let path = |name: &str| dir.join(name);
    std::fs::write(path("empty.wav"), b"").unwrap();
    std::fs::write(path("garbage.wav"), b"this is not a RIFF file at all").unwrap();
    // A valid header over no samples.
    write(
        &path("no-samples.wav"),
        &[],
        16_000,
        1,
        16,
        SampleFormat::Int,
    );
    // A header that declares 16000 samples over 100.
    write(
        &path("whole.wav"),
        &tone(440.0, 16_000, 1.0, 0.5),
        16_000,
        1,
        16,
        SampleFormat::Int,
    );
    let whole = std::fs::read(path("whole.wav")).unwrap();
    std::fs::write(path("truncated.wav"), &whole[..44 + 200]).unwrap();
    let cases = [
        ("missing.wav", "not a WAV file"),
        ("empty.wav", "not a WAV file"),
        ("garbage.wav", "not a WAV file"),
        ("no-samples.wav", "no samples"),
        ("truncated.wav", "truncated"),
    ];
    for (name, says) in cases {
        let error = Audio
            .decode(&path(name), [1, 64, 101])
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{name}: {error}");
        assert!(!error.contains('\n'), "{name}: one line: {error}");
    }
}

/// A header declaring ten hours over a few seconds of samples: the clip is read
/// from the start, quickly, as far as it needs.
#[test]
fn a_ten_hour_header_is_read_only_as_far_as_needed() {
    let dir = scratch("ten-hours");
    let path = dir.join("ten-hours.wav");
    let samples = tone(440.0, 16_000, 2.0, 0.5);
    let data_bytes: u32 = 10 * 3600 * 16_000 * 2;
    let mut file = std::fs::File::create(&path).unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&16_000u32.to_le_bytes());
    header.extend_from_slice(&32_000u32.to_le_bytes()); // bytes per second
    header.extend_from_slice(&2u16.to_le_bytes()); // block align
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    file.write_all(&header).unwrap();
    for s in &samples {
        file.write_all(&((s * 32767.0) as i16).to_le_bytes())
            .unwrap();
    }
    drop(file);
    let decoded = Audio.decode(&path, [1, 64, 101]).unwrap();
    assert_eq!(decoded.input.dims(), [1, 64, 101]);
    let error = wav::read(&path, 5.0).unwrap_err();
    assert!(error.contains("truncated"), "{error}");
}
