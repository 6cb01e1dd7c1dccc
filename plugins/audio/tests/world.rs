//! The audio world: deterministic, balanced, and its masks are where the sound is.

use unitscope_audio::Audio;
use unitscope_audio::world::{CLASSES, Clip, Kind, World};

const MELS: usize = 64;
const FRAMES: usize = 101;

fn mean_where(values: &[f32], mask: &[bool], inside: bool) -> f32 {
    let picked: Vec<f32> = values
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m == inside)
        .map(|(v, _)| *v)
        .collect();
    picked.iter().sum::<f32>() / picked.len().max(1) as f32
}

#[test]
fn the_same_index_gives_the_same_clip() {
    let (a, b) = (World::new(3), World::new(3));
    for i in [0, 7, 1000] {
        assert_eq!(a.clip(i), b.clip(i));
    }
    assert_ne!(World::new(4).clip(7).samples, a.clip(7).samples);
}

#[test]
fn classes_are_balanced() {
    let world = World::new(0);
    let mut counts = [0usize; CLASSES.len()];
    for i in 0..1200 {
        counts[world.clip(i).class] += 1;
    }
    for (class, &n) in CLASSES.iter().zip(&counts) {
        assert!((120..=280).contains(&n), "{class}: {n} of 1200");
    }
}

/// Over every subject, the spectrogram is louder inside its mask than outside
/// it, by 8 dB (0.1 of its 80 dB scale) or more in every clip. (Measured on these
/// 300 clips, the least per kind: tones 0.56, chirps 0.59, noise 0.43, clicks 0.13:
/// a single-sample click stands 10-20 dB above a floor as broad as itself.)
#[test]
fn a_subject_sounds_inside_its_mask() {
    let world = World::new(0);
    let mut margins = Vec::new();
    for i in 0..300 {
        let clip = world.clip(i);
        let Some(subject) = clip.subject() else {
            continue;
        };
        let values = Audio::spectrogram(&clip.samples, MELS, FRAMES);
        let mask = clip.mask(subject, MELS, FRAMES);
        let inside = mean_where(&values, &mask, true);
        let outside = mean_where(&values, &mask, false);
        margins.push((inside - outside, subject.kind, i));
    }
    let (worst, kind, i) = margins
        .iter()
        .copied()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    assert!(
        worst > 0.1,
        "clip {i}, a {}: only {worst} above the rest",
        kind.name()
    );
}

/// A chirp up rises and a chirp down falls in the spectrogram itself: the
/// loudest band of its last frames lies above (below) that of its first.
#[test]
fn chirps_go_their_way() {
    let world = World::new(0);
    let mut seen = 0;
    for i in 0..200 {
        let clip: Clip = world.clip(i);
        let Some(subject) = clip.subject() else {
            continue;
        };
        if !matches!(subject.kind, Kind::ChirpUp | Kind::ChirpDown) {
            continue;
        }
        let values = Audio::spectrogram(&clip.samples, MELS, FRAMES);
        // Rows are highest band first: a smaller row is a higher frequency.
        let loudest_row = |t: usize| {
            (0..MELS)
                .max_by(|&a, &b| values[a * FRAMES + t].total_cmp(&values[b * FRAMES + t]))
                .unwrap()
        };
        let frame = |s: f64| (s * 100.0).round() as usize;
        let span = subject.end - subject.start;
        let early = loudest_row(frame(subject.start + 0.15 * span));
        let late = loudest_row(frame(subject.end - 0.15 * span));
        match subject.kind {
            Kind::ChirpUp => assert!(late < early, "clip {i}: rows {early} -> {late}"),
            _ => assert!(late > early, "clip {i}: rows {early} -> {late}"),
        }
        seen += 1;
    }
    assert!(seen >= 30, "only {seen} chirps");
}

/// Clicks cover every band at their frames; a tone two bands at most.
#[test]
fn masks_have_the_shape_of_their_sound() {
    let world = World::new(0);
    let (mut clicks, mut tones) = (0, 0);
    for i in 0..200 {
        let clip = world.clip(i);
        let Some(subject) = clip.subject() else {
            continue;
        };
        let mask = clip.mask(subject, MELS, FRAMES);
        let column = |t: usize| (0..MELS).filter(|&m| mask[m * FRAMES + t]).count();
        let sounding: Vec<usize> = (0..FRAMES).map(column).filter(|&c| c > 0).collect();
        assert!(!sounding.is_empty(), "clip {i}: an empty mask");
        match subject.kind {
            Kind::Clicks => {
                assert!(sounding.iter().all(|&c| c == MELS));
                clicks += 1;
            }
            Kind::Tone => {
                assert!(sounding.iter().all(|&c| (1..=2).contains(&c)));
                tones += 1;
            }
            _ => {}
        }
        assert_eq!(clip.masks(MELS, FRAMES).len(), Kind::ALL.len());
    }
    assert!(clicks > 10 && tones > 10);
}
