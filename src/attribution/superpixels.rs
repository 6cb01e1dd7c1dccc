//! Superpixels by SLIC (Achanta et al. 2012, "SLIC Superpixels Compared to
//! State-of-the-Art Superpixel Methods"): the regions that the perturbation methods
//! (LIME, KernelSHAP) switch on and off.
//!
//! `k` centres start on a regular grid of step `S = sqrt(HW / k)`. Each of ten
//! rounds gives every pixel to the centre nearest it among those whose `2S x 2S`
//! window holds it, by
//!
//! `D² = |c - c_k|² + (m / S)² |p - p_k|²`
//!
//! (`c` a pixel's values, `p` its position, `m` the compactness), then moves each
//! centre to the mean of its pixels. Values are the model input's channels, each
//! rescaled to 0..100 over the image (the range of CIELAB's lightness, for which
//! scikit-image's default compactness of 10 is made), so any modality segments the
//! same way. Last, connectivity is enforced: each 4-connected piece of a label is a
//! region of its own, and pieces smaller than half a grid cell join the region
//! before them in scan order. Regions are numbered by first appearance in scan
//! order. Everything is sequential arithmetic on the input: the same input gives
//! the same regions on any machine.

use anyhow::{Result, ensure};

/// Rounds of assignment and update (Achanta et al.: ten suffice for most images).
const ROUNDS: usize = 10;

/// A partition of an image into connected regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segmentation {
    /// Rows and columns.
    pub size: (usize, usize),
    /// Each pixel's region, row by row, `0..count`.
    pub labels: Vec<u32>,
    /// The number of regions.
    pub count: usize,
}

/// SLIC superpixels of an image given as `channels` planes of `h x w` values, row
/// by row: about `segments` regions, `compactness` trading colour for shape.
pub fn slic(
    planes: &[f32],
    (h, w): (usize, usize),
    segments: usize,
    compactness: f64,
) -> Result<Segmentation> {
    let n = h * w;
    ensure!(n > 0, "superpixels of an empty image");
    ensure!(
        planes.len().is_multiple_of(n) && !planes.is_empty(),
        "superpixels: {} values for a {h}x{w} image",
        planes.len()
    );
    ensure!(segments > 0, "superpixels: at least one segment");
    ensure!(
        compactness.is_finite() && compactness >= 0.0,
        "superpixels: compactness {compactness} must be a number >= 0"
    );
    let colours = rescaled(planes, n);
    let channels = colours.len() / n;
    let step = ((n as f64) / segments as f64).sqrt().max(1.0);
    let (rows, columns) = (
        ((h as f64 / step).round() as usize).clamp(1, h),
        ((w as f64 / step).round() as usize).clamp(1, w),
    );
    // A centre: position (y, x), then its mean colour.
    let mut centres: Vec<Vec<f64>> = Vec::with_capacity(rows * columns);
    for i in 0..rows {
        for j in 0..columns {
            let y = ((i as f64 + 0.5) * h as f64 / rows as f64).floor() as usize;
            let x = ((j as f64 + 0.5) * w as f64 / columns as f64).floor() as usize;
            let mut centre = vec![y as f64, x as f64];
            centre.extend((0..channels).map(|c| colours[c * n + y * w + x] as f64));
            centres.push(centre);
        }
    }
    // Before the first round, each pixel belongs to its grid cell.
    let mut labels: Vec<u32> = (0..n)
        .map(|p| {
            let i = (p / w) * rows / h;
            let j = (p % w) * columns / w;
            (i * columns + j) as u32
        })
        .collect();
    let weight = (compactness / step).powi(2);
    let reach = step.ceil() as isize;
    let mut distance = vec![f64::INFINITY; n];
    for _ in 0..ROUNDS {
        distance.fill(f64::INFINITY);
        for (k, centre) in centres.iter().enumerate() {
            let (cy, cx) = (centre[0].round() as isize, centre[1].round() as isize);
            let ys = (cy - reach).max(0) as usize..((cy + reach + 1).max(0) as usize).min(h);
            for y in ys {
                let xs = (cx - reach).max(0) as usize..((cx + reach + 1).max(0) as usize).min(w);
                for x in xs {
                    let p = y * w + x;
                    let colour: f64 = (0..channels)
                        .map(|c| (colours[c * n + p] as f64 - centre[2 + c]).powi(2))
                        .sum();
                    let place = (y as f64 - centre[0]).powi(2) + (x as f64 - centre[1]).powi(2);
                    let d = colour + weight * place;
                    if d < distance[p] {
                        distance[p] = d;
                        labels[p] = k as u32;
                    }
                }
            }
        }
        // Each centre moves to its pixels' mean; one with none stays where it is.
        let mut sums = vec![vec![0f64; 2 + channels]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for (p, &k) in labels.iter().enumerate() {
            let sum = &mut sums[k as usize];
            sum[0] += (p / w) as f64;
            sum[1] += (p % w) as f64;
            for c in 0..channels {
                sum[2 + c] += colours[c * n + p] as f64;
            }
            counts[k as usize] += 1;
        }
        for ((centre, sum), count) in centres.iter_mut().zip(sums).zip(counts) {
            if count > 0 {
                *centre = sum.into_iter().map(|s| s / count as f64).collect();
            }
        }
    }
    let smallest = ((n as f64 / centres.len() as f64) / 2.0).max(1.0) as usize;
    Ok(connected((h, w), &labels, smallest))
}

/// Each channel of `planes` rescaled to 0..100 over the image (a constant channel
/// becomes 0).
fn rescaled(planes: &[f32], n: usize) -> Vec<f32> {
    planes
        .chunks_exact(n)
        .flat_map(|plane| {
            let (lo, hi) = plane
                .iter()
                .filter(|v| v.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let scale = if hi > lo { 100.0 / (hi - lo) } else { 0.0 };
            plane.iter().map(move |&v| match v.is_finite() {
                true => (v - lo) * scale,
                false => 0.0,
            })
        })
        .collect()
}

/// `labels` split into 4-connected regions, those under `smallest` pixels joined to
/// the region before them in scan order, numbered by first appearance.
fn connected((h, w): (usize, usize), labels: &[u32], smallest: usize) -> Segmentation {
    const NONE: u32 = u32::MAX;
    let mut out = vec![NONE; labels.len()];
    let mut count = 0u32;
    let mut piece = Vec::new();
    for start in 0..labels.len() {
        if out[start] != NONE {
            continue;
        }
        // The region before this one in scan order: the one left of or above its
        // first pixel (already numbered, since scanning reached it first).
        let before = [
            start.checked_sub(1).filter(|_| start % w > 0),
            start.checked_sub(w),
        ]
        .into_iter()
        .flatten()
        .map(|q| out[q])
        .find(|&r| r != NONE);
        piece.clear();
        piece.push(start);
        out[start] = count;
        let mut next = 0;
        while next < piece.len() {
            let p = piece[next];
            next += 1;
            let (y, x) = (p / w, p % w);
            let neighbours = [
                (x > 0).then(|| p - 1),
                (x + 1 < w).then(|| p + 1),
                (y > 0).then(|| p - w),
                (y + 1 < h).then(|| p + w),
            ];
            for q in neighbours.into_iter().flatten() {
                if out[q] == NONE && labels[q] == labels[start] {
                    out[q] = count;
                    piece.push(q);
                }
            }
        }
        match before {
            Some(region) if piece.len() < smallest => {
                piece.iter().for_each(|&p| out[p] = region);
            }
            _ => count += 1,
        }
    }
    Segmentation {
        size: (h, w),
        labels: out,
        count: count as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether every region of `s` is one 4-connected piece.
    fn each_region_is_connected(s: &Segmentation) -> bool {
        let (h, w) = s.size;
        let again = connected((h, w), &s.labels, 1);
        again.count == s.count
    }

    /// An RGB image of four flat quadrants of unlike colours, `[3, h, w]` planes.
    fn quadrants(h: usize, w: usize) -> Vec<f32> {
        let colours = [
            [0.9, 0.1, 0.1],
            [0.1, 0.8, 0.2],
            [0.2, 0.2, 0.9],
            [0.9, 0.9, 0.1],
        ];
        (0..3)
            .flat_map(|c| {
                (0..h * w).map(move |p| {
                    let q = 2 * ((p / w) >= h / 2) as usize + ((p % w) >= w / 2) as usize;
                    colours[q][c]
                })
            })
            .collect()
    }

    #[test]
    fn regions_cover_the_image_are_connected_and_numbered_in_order() {
        let (h, w) = (37, 53);
        // A textured image: stripes and a gradient.
        let planes: Vec<f32> = (0..3 * h * w)
            .map(|i| {
                ((i % w) as f32 * 0.3).sin() + (i / w % h) as f32 * 0.05 + (i / (h * w)) as f32
            })
            .collect();
        for segments in [1, 4, 25, 100] {
            let s = slic(&planes, (h, w), segments, 10.0).unwrap();
            assert_eq!(s.labels.len(), h * w);
            assert!(
                s.labels.iter().all(|&l| (l as usize) < s.count),
                "{segments}"
            );
            assert!(
                each_region_is_connected(&s),
                "{segments}: a region in pieces"
            );
            // Numbered by first appearance: the labels seen so far are 0..=max.
            let mut seen = 0;
            for &l in &s.labels {
                assert!(l <= seen, "{segments}: label {l} before {seen}");
                seen = seen.max(l + 1);
            }
            assert!(
                s.count >= segments / 3 && s.count <= 2 * segments,
                "{segments} asked, {} made",
                s.count
            );
            assert_eq!(
                slic(&planes, (h, w), segments, 10.0).unwrap(),
                s,
                "deterministic"
            );
        }
    }

    #[test]
    fn flat_regions_of_unlike_colour_are_found_exactly() {
        let (h, w) = (40, 40);
        let planes = quadrants(h, w);
        let s = slic(&planes, (h, w), 4, 10.0).unwrap();
        assert_eq!(s.count, 4);
        let quadrant = |p: usize| 2 * ((p / w) >= h / 2) as u32 + ((p % w) >= w / 2) as u32;
        assert!(
            (0..h * w).all(|p| s.labels[p] == quadrant(p)),
            "the quadrants"
        );
        // More segments split the quadrants but never straddle two.
        let s = slic(&planes, (h, w), 16, 10.0).unwrap();
        for region in 0..s.count as u32 {
            let mut inside = (0..h * w).filter(|&p| s.labels[p] == region).map(quadrant);
            let first = inside.next().unwrap();
            assert!(
                inside.all(|q| q == first),
                "region {region} straddles quadrants"
            );
        }
    }

    #[test]
    fn compactness_trades_colour_for_shape() {
        // A diagonal edge: with low compactness regions follow it, with very high
        // compactness they are the grid's squares and cut across it.
        let (h, w) = (32, 32);
        let planes: Vec<f32> = (0..h * w)
            .map(|p| ((p / w) > (p % w)) as u8 as f32)
            .collect();
        let straddling = |m: f64| {
            let s = slic(&planes, (h, w), 16, m).unwrap();
            (0..s.count as u32)
                .filter(|&r| {
                    let sides: Vec<f32> = (0..h * w)
                        .filter(|&p| s.labels[p] == r)
                        .map(|p| planes[p])
                        .collect();
                    sides.iter().any(|&v| v != sides[0])
                })
                .count()
        };
        assert_eq!(straddling(1.0), 0);
        assert!(straddling(1e4) > 0);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(slic(&[], (0, 0), 4, 10.0).is_err());
        assert!(slic(&[0.0; 10], (3, 3), 4, 10.0).is_err());
        assert!(slic(&[0.0; 9], (3, 3), 0, 10.0).is_err());
        assert!(slic(&[0.0; 9], (3, 3), 4, f64::NAN).is_err());
        // A flat image has nothing but place to go by: the grid's squares.
        let flat = slic(&[0.5; 64], (8, 8), 4, 10.0).unwrap();
        assert_eq!(flat.count, 4);
        for region in 0..4 {
            let size = flat.labels.iter().filter(|&&l| l == region).count();
            assert!((9..=25).contains(&size), "region {region}: {size} px");
        }
    }
}
