//! Network Dissection's alignment (Bau et al. 2017), with NetDissect-Lite's
//! bookkeeping: each unit's map `A_k(x)` is upsampled bilinearly to the labels'
//! resolution (`S_k`), thresholded (`M_k = S_k > T_k`), and counted against every
//! label `c`:
//!
//! ```text
//! IoU_k,c = Σ_x |M_k(x) ∩ L_c(x)| / (Σ_x |M_k(x) ∪ L_c(x)| + 1e-10)
//! ```
//!
//! The union's `|M_k|` part counts only on images where the mask meets a label of
//! `c`'s (primary) category, or where the image carries an image-level label of it
//! (`tally_units_cat` in NetDissect-Lite's `tally_job`): a unit is not charged for
//! firing on images that say nothing about that category. An image-level label
//! covers every pixel. A unit's label is its best concept; the counts add up, so
//! tallies of image ranges merge into the whole's.

use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::maps::{LayerMaps, Map};
use crate::data::{ImageLabels, Vocabulary};

/// The counts of one layer's units against a vocabulary's labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    units: usize,
    labels: usize,
    categories: usize,
    /// Per label, its pixels over all images (`tally_labels`).
    label_area: Vec<u64>,
    /// Per unit, its mask's pixels (`tally_units`).
    unit_area: Vec<u64>,
    /// Per unit and category, its mask's pixels on images where the mask meets that
    /// category (`tally_units_cat`).
    unit_category: Vec<u64>,
    /// Per unit and label, the mask's pixels on the label (`tally_both`).
    both: Vec<u64>,
    /// Per unit, the images of its highest maxima, highest first: `(maximum,
    /// image)`, at most [`TOP_IMAGES`].
    top: Vec<Vec<(f32, usize)>>,
}

/// A batch of images' labels as the tallies count them: the first image's number,
/// each image's labels, and each label's pixels over the batch (counted once for
/// every layer's tally).
pub struct Labelled {
    first: usize,
    images: Vec<ImageLabels>,
    areas: Vec<u64>,
}

impl Labelled {
    /// The labels of images `first..`, numbered in a vocabulary of `labels` labels.
    pub fn new(first: usize, images: Vec<ImageLabels>, labels: usize) -> Self {
        let mut areas = vec![0; labels];
        for region in images.iter().flat_map(ImageLabels::regions) {
            for &l in &region.labels {
                areas[l as usize] += region.pixels;
            }
        }
        Self {
            first,
            images,
            areas,
        }
    }
}

/// Images kept per unit for the report.
pub const TOP_IMAGES: usize = 4;

/// Keeps the `TOP_IMAGES` highest of `top` and `found`: highest first, the lower
/// image index first on ties (so that merged shards keep what one run keeps).
fn keep_top(top: &mut Vec<(f32, usize)>, found: impl IntoIterator<Item = (f32, usize)>) {
    top.extend(found);
    top.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    top.truncate(TOP_IMAGES);
}

/// One unit's best label in one category: NetDissect-Lite's per-category columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Match {
    /// The category.
    pub category: String,
    /// The best label of it.
    pub label: String,
    /// The label's pixels (`truth`).
    pub truth: u64,
    /// The unit's mask pixels counted in the union (`activation`).
    pub activation: u64,
    /// Their intersection.
    pub intersect: u64,
    /// The IoU.
    pub iou: f64,
}

/// A unit's result: its best match, and the best of each category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitResult {
    /// The unit (0-based).
    pub unit: usize,
    /// Its best match over every category.
    pub best: Match,
    /// Whether the best IoU reaches the detector threshold.
    pub detector: bool,
    /// The best match of each category, in the vocabulary's order.
    pub categories: Vec<Match>,
}

impl Tally {
    /// An empty tally of `units` units against `vocabulary`.
    pub fn new(units: usize, vocabulary: &Vocabulary) -> Self {
        let (labels, categories) = (vocabulary.labels.len(), vocabulary.categories.len());
        Self {
            units,
            labels,
            categories,
            label_area: vec![0; labels],
            unit_area: vec![0; units],
            unit_category: vec![0; units * categories],
            both: vec![0; units * labels],
            top: vec![Vec::new(); units],
        }
    }

    /// Counts a batch of images: `maps` are their maps of the layer, `thresholds`
    /// each unit's `T_k`. Units are counted in parallel, each over the whole batch.
    pub fn add(
        &mut self,
        batch: &Labelled,
        maps: &LayerMaps,
        thresholds: &[f32],
        vocabulary: &Vocabulary,
    ) {
        let (first, labels) = (batch.first, batch.images.as_slice());
        for (total, area) in self.label_area.iter_mut().zip(&batch.areas) {
            *total += area;
        }
        let primary: Vec<Option<usize>> = vocabulary.labels.iter().map(|l| l.category).collect();
        // Images of a set mostly share one label size: one upsampling for them.
        let mut upsamples: Vec<Upsample> = Vec::new();
        for image in labels {
            if !upsamples.iter().any(|u| u.out == image.size()) {
                upsamples.push(Upsample::new(maps.size(), image.size()));
            }
        }
        let categories = self.categories;
        (self.unit_area.par_iter_mut())
            .zip(self.unit_category.par_chunks_mut(categories))
            .zip(self.both.par_chunks_mut(self.labels))
            .zip(self.top.par_iter_mut())
            .enumerate()
            .for_each(|(k, (((unit_area, unit_category), both), top))| {
                let mut hit = vec![false; categories];
                let regions = labels.iter().map(|image| image.regions().len()).max();
                let mut in_region = vec![0u64; regions.unwrap_or(0)];
                let mut blended = Vec::new();
                for (b, image) in labels.iter().enumerate() {
                    let map = maps.map(b, k);
                    let highest = map.peak;
                    // Images come in order: a tie with the last kept loses to it.
                    if top.len() < TOP_IMAGES || top.last().is_some_and(|&(p, _)| highest > p) {
                        keep_top(top, [(highest, first + b)]);
                    }
                    // Bilinear values never exceed the map's largest: with q = 0.005
                    // most maps have no pixel above the threshold (NetDissect-Lite's
                    // shortcut too).
                    if highest <= thresholds[k] {
                        continue;
                    }
                    let upsample = upsamples.iter().find(|u| u.out == image.size());
                    let Some(upsample) = upsample else { continue };
                    let region_of = image.region_of();
                    upsample.for_each_above(map, thresholds[k], &mut blended, |p| {
                        in_region[region_of[p] as usize] += 1;
                    });
                    hit.fill(false);
                    let mut count = 0;
                    for (n, region) in in_region.iter_mut().zip(image.regions()) {
                        if *n == 0 {
                            continue;
                        }
                        count += *n;
                        for &l in &region.labels {
                            both[l as usize] += *n;
                            if let Some(c) = primary[l as usize] {
                                hit[c] = true;
                            }
                        }
                        *n = 0;
                    }
                    if count == 0 {
                        continue;
                    }
                    *unit_area += count;
                    for (total, &hit) in unit_category.iter_mut().zip(&hit) {
                        if hit {
                            *total += count;
                        }
                    }
                }
            });
    }

    /// Checks a tally read from a file: its counts have the lengths its sizes say,
    /// for `units` units against `vocabulary`, and its top images are among
    /// `images` (a file edited by hand or cut short by another tool must not index
    /// out of range later).
    pub fn check(
        &self,
        units: usize,
        vocabulary: &Vocabulary,
        images: usize,
    ) -> anyhow::Result<()> {
        let (labels, categories) = (vocabulary.labels.len(), vocabulary.categories.len());
        anyhow::ensure!(
            (self.units, self.labels, self.categories) == (units, labels, categories)
                && self.label_area.len() == labels
                && self.unit_area.len() == units
                && self.unit_category.len() == units * categories
                && self.both.len() == units * labels
                && self.top.len() == units,
            "the tally's counts do not fit {units} units and {labels} labels in {categories} categories"
        );
        let beyond = self
            .top
            .iter()
            .flatten()
            .find(|(_, image)| *image >= images);
        anyhow::ensure!(
            beyond.is_none(),
            "the tally names image {} of a dataset of {images}",
            beyond.map_or(0, |(_, image)| *image)
        );
        Ok(())
    }

    /// Adds another tally of the same layer and vocabulary (another image range).
    pub fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        anyhow::ensure!(
            (self.units, self.labels, self.categories)
                == (other.units, other.labels, other.categories),
            "tallies of {}x{} and {}x{} units x labels cannot merge",
            self.units,
            self.labels,
            other.units,
            other.labels
        );
        let add = |a: &mut Vec<u64>, b: &Vec<u64>| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        add(&mut self.label_area, &other.label_area);
        add(&mut self.unit_area, &other.unit_area);
        add(&mut self.unit_category, &other.unit_category);
        add(&mut self.both, &other.both);
        for (top, theirs) in self.top.iter_mut().zip(&other.top) {
            keep_top(top, theirs.iter().copied());
        }
        Ok(())
    }

    /// Unit `k`'s images of highest maximum: `(maximum, image)`, highest first.
    pub fn top_images(&self, k: usize) -> &[(f32, usize)] {
        &self.top[k]
    }

    /// `IoU_k,c` for unit `k` and label `c`; 0 for labels of no category.
    pub fn iou(&self, k: usize, c: usize, vocabulary: &Vocabulary) -> f64 {
        let Some(category) = vocabulary.labels[c].category else {
            return 0.0;
        };
        let both = self.both[k * self.labels + c] as f64;
        let activation = self.unit_category[k * self.categories + category] as f64;
        both / (activation + self.label_area[c] as f64 - both + 1e-10)
    }

    /// Unit `k`'s `n` labels of highest IoU, highest first (the first label on
    /// ties), as `(label, IoU)`; labels of no category are none of them.
    pub fn ranked(&self, k: usize, vocabulary: &Vocabulary, n: usize) -> Vec<(usize, f64)> {
        let mut all: Vec<(usize, f64)> = (0..self.labels)
            .filter(|&c| vocabulary.labels[c].category.is_some())
            .map(|c| (c, self.iou(k, c, vocabulary)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Each unit's best label per category and overall, as NetDissect-Lite picks
    /// them (the first label of the highest IoU in a category; the later category on
    /// ties), in unit order; detectors reach `iou_threshold`.
    pub fn results(&self, vocabulary: &Vocabulary, iou_threshold: f64) -> Vec<UnitResult> {
        (0..self.units)
            .map(|k| {
                let categories: Vec<Match> = (0..self.categories)
                    .map(|category| {
                        let mut best: Option<(usize, f64)> = None;
                        for (c, label) in vocabulary.labels.iter().enumerate() {
                            if label.category != Some(category) {
                                continue;
                            }
                            let iou = self.iou(k, c, vocabulary);
                            if best.is_none_or(|(_, b)| iou > b) {
                                best = Some((c, iou));
                            }
                        }
                        let (c, iou) = best.unwrap_or((0, 0.0));
                        Match {
                            category: vocabulary.categories[category].clone(),
                            label: vocabulary.labels[c].name.clone(),
                            truth: self.label_area[c],
                            activation: self.unit_category[k * self.categories + category],
                            intersect: self.both[k * self.labels + c],
                            iou,
                        }
                    })
                    .collect();
                let best = categories
                    .iter()
                    .rev()
                    .max_by(|a, b| a.iou.total_cmp(&b.iou))
                    .cloned()
                    .expect("a vocabulary has a category");
                UnitResult {
                    unit: k,
                    detector: best.iou >= iou_threshold,
                    best,
                    categories,
                }
            })
            .collect()
    }
}

/// `M_k`: the pixels of `map` (`size` `(rows, columns)`) upsampled to `labels`
/// `(rows, columns)` that exceed `threshold`, row-major.
pub fn mask(map: Map, labels: (usize, usize), threshold: f32) -> Vec<bool> {
    let mut mask = vec![false; labels.0 * labels.1];
    Upsample::new(map.size(), labels)
        .for_each_above(map, threshold, &mut Vec::new(), |p| mask[p] = true);
    mask
}

/// Bilinear upsampling of a map to the labels' size, with half-pixel centres and
/// clamped edges (PIL's and `align_corners=False`).
struct Upsample {
    /// The upsampled rows, in runs that blend the same two rows of the map: `(top,
    /// bottom)` and each row's weight of the bottom one.
    rows: Vec<((usize, usize), Vec<f32>)>,
    columns: Vec<(usize, usize, f32)>,
    /// Per column of the map, the upsampled columns that start from it (their
    /// left tap), in order.
    from_column: Vec<Range<usize>>,
    width: usize,
    /// The labels' `(rows, columns)`.
    out: (usize, usize),
    /// Whether the labels are the map's size: every tap's weight is then 0, and
    /// the map is its own upsampling (the demo model's first layers).
    identity: bool,
}

impl Upsample {
    fn new((h, w): (usize, usize), (sh, sw): (usize, usize)) -> Self {
        let taps = |n: usize, out: usize| -> Vec<(usize, usize, f32)> {
            (0..out)
                .map(|i| {
                    let x =
                        ((i as f64 + 0.5) * n as f64 / out as f64 - 0.5).clamp(0.0, (n - 1) as f64);
                    let lo = x.floor() as usize;
                    (lo, (lo + 1).min(n - 1), (x - lo as f64) as f32)
                })
                .collect()
        };
        let mut rows: Vec<((usize, usize), Vec<f32>)> = Vec::new();
        for (y0, y1, fy) in taps(h, sh) {
            match rows.last_mut() {
                Some((pair, weights)) if *pair == (y0, y1) => weights.push(fy),
                _ => rows.push(((y0, y1), vec![fy])),
            }
        }
        let columns = taps(w, sw);
        let from_column = (0..w)
            .map(|c| {
                let start = columns.partition_point(|&(x0, _, _)| x0 < c);
                start..columns.partition_point(|&(x0, _, _)| x0 <= c)
            })
            .collect();
        Self {
            rows,
            columns,
            from_column,
            width: w,
            out: (sh, sw),
            identity: (h, w) == (sh, sw),
        }
    }

    /// Calls `f` with the index (row-major) of every upsampled pixel above
    /// `threshold`, in no particular order; `row_peaks` are the largest values
    /// of the map's rows. An upsampled pixel blends four of the map's, so it can
    /// exceed the threshold only where one of them does: only those are computed
    /// (a handful, at q = 0.005). The rows of a run share their columns'
    /// horizontal blends, computed once for the run, in `blended` (kept by the
    /// caller across maps).
    fn for_each_above(
        &self,
        map: Map,
        threshold: f32,
        blended: &mut Vec<(usize, f32, f32)>,
        mut f: impl FnMut(usize),
    ) {
        let Map {
            values: map,
            row_peaks,
            ..
        } = map;
        let (w, sw) = (self.width, self.columns.len());
        if self.identity {
            for (y, (row, &peak)) in map.chunks_exact(w).zip(row_peaks).enumerate() {
                if peak <= threshold {
                    continue;
                }
                for (x, &v) in row.iter().enumerate() {
                    if v > threshold {
                        f(y * w + x);
                    }
                }
            }
            return;
        }
        let mut y = 0;
        for ((y0, y1), weights) in &self.rows {
            let first = y;
            y += weights.len();
            if row_peaks[*y0] <= threshold && row_peaks[*y1] <= threshold {
                continue;
            }
            let (top, bottom) = (&map[y0 * w..(y0 + 1) * w], &map[y1 * w..(y1 + 1) * w]);
            let above = |c: usize| top[c] > threshold || bottom[c] > threshold;
            // The run's candidate columns: (column, upper blend, lower − upper).
            blended.clear();
            for (c, run) in self.from_column.iter().enumerate() {
                if !above(c) && !above((c + 1).min(w - 1)) {
                    continue;
                }
                blended.extend(run.clone().map(|x| {
                    let (x0, x1, fx) = self.columns[x];
                    let upper = top[x0] + (top[x1] - top[x0]) * fx;
                    let lower = bottom[x0] + (bottom[x1] - bottom[x0]) * fx;
                    (x, upper, lower - upper)
                }));
            }
            // Down a column, the blend moves one way: the weights grow down the
            // run, and rounding keeps their order. The rows above the threshold
            // are the run's last where the lower row is the larger, its first
            // where the upper is; each column is computed from that end until a
            // row falls short (one value past the mask, not the run's every row).
            let rows = (first..y).zip(weights);
            for &(x, upper, rise) in blended.iter() {
                let above = |&(_, &fy): &(usize, &f32)| upper + rise * fy > threshold;
                let mut mask = |(row, _)| f(row * sw + x);
                if rise >= 0.0 {
                    rows.clone().rev().take_while(above).for_each(&mut mask);
                } else {
                    rows.clone().take_while(above).for_each(&mut mask);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Label;

    fn vocabulary() -> Vocabulary {
        let label = |name: &str, category| Label {
            name: name.into(),
            category,
        };
        Vocabulary {
            categories: vec!["object".into(), "scene".into()],
            labels: vec![
                label("-", None),
                label("dog", Some(0)),
                label("cat", Some(0)),
                label("beach", Some(1)),
            ],
        }
    }

    /// The lecture's worked example: M = [[1,1],[0,0]], L = [[1,0],[1,0]] share one
    /// pixel of three: IoU 1/3.
    #[test]
    fn the_worked_example_has_iou_one_third() {
        let vocabulary = vocabulary();
        let mut tally = Tally::new(1, &vocabulary);
        let labels = ImageLabels::from_layers((2, 2), &[vec![1, 0, 1, 0]], &[]);
        let batch = Labelled::new(0, vec![labels], vocabulary.labels.len());
        let maps = LayerMaps::new(vec![1., 1., 0., 0.], 1, 1, (2, 2)).unwrap();
        tally.add(&batch, &maps, &[0.5], &vocabulary);
        let iou = tally.iou(0, 1, &vocabulary);
        assert!((iou - 1.0 / 3.0).abs() < 1e-9, "{iou}");
        let result = &tally.results(&vocabulary, 0.04)[0];
        assert_eq!((result.best.label.as_str(), result.detector), ("dog", true));
        assert_eq!(
            (
                result.best.truth,
                result.best.activation,
                result.best.intersect
            ),
            (2, 2, 1)
        );
    }

    /// A mask on an image whose labels of a category it does not meet is not
    /// counted against that category's labels; an image-level label covers every
    /// pixel; tallies of two images merge into one of both.
    #[test]
    fn the_bookkeeping_is_netdissect_lites() {
        let vocabulary = vocabulary();
        // Image 1: the unit fires on the left column, a cat sits on the right.
        let cat_right = ImageLabels::from_layers((2, 2), &[vec![0, 2, 0, 2]], &[]);
        // Image 2: a beach scene; the unit fires on one pixel.
        let beach = ImageLabels::from_layers((2, 2), &[], &[3]);
        let maps = [[1., 0., 1., 0.], [1., 0., 0., 0.]];
        let mut both = Tally::new(1, &vocabulary);
        let mut parts = [Tally::new(1, &vocabulary), Tally::new(1, &vocabulary)];
        let images = maps.iter().zip([&cat_right, &beach]).zip(&mut parts);
        for (i, ((map, labels), part)) in images.enumerate() {
            let batch = Labelled::new(i, vec![labels.clone()], vocabulary.labels.len());
            let map = LayerMaps::new(map.to_vec(), 1, 1, (2, 2)).unwrap();
            both.add(&batch, &map, &[0.5], &vocabulary);
            part.add(&batch, &map, &[0.5], &vocabulary);
        }
        // Cat: the mask never meets an object label: 0 / (0 + 2 − 0).
        assert_eq!(both.iou(0, 2, &vocabulary), 0.0);
        assert_eq!(both.unit_category, vec![0, 1]);
        // Beach: 1 pixel of the mask on a 4-pixel label: 1 / (1 + 4 − 1).
        assert!((both.iou(0, 3, &vocabulary) - 0.25).abs() < 1e-9);
        let [mut merged, other] = parts;
        merged.merge(&other).unwrap();
        assert_eq!(merged, both);
    }

    /// Upsampling 2x2 to 4x4 interpolates between pixel centres and keeps the
    /// edges.
    #[test]
    fn upsampling_is_bilinear_with_half_pixel_centres() {
        let up = Upsample::new((2, 2), (4, 4));
        let map = Map {
            values: &[0., 4., 8., 12.],
            row_peaks: &[4., 12.],
            peak: 12.,
        };
        let mut above = Vec::new();
        up.for_each_above(map, 6.5, &mut Vec::new(), |p| above.push(p));
        above.sort_unstable();
        // The upsampled values, row by row:
        // row 0: 0 1 3 4; row 1: 2 3 5 6; row 2: 6 7 9 10; row 3: 8 9 11 12.
        assert_eq!(above, vec![9, 10, 11, 12, 13, 14, 15]);
    }

    /// Upsampled to its own size, a map is itself: the pixels above the threshold
    /// are its own, as the blends (all of weight 0) give them.
    #[test]
    fn upsampling_to_the_same_size_keeps_the_map() {
        let values: Vec<f32> = (0..12).map(|i| ((i * 5) % 7) as f32).collect();
        let maps = LayerMaps::new(values.clone(), 1, 1, (3, 4)).unwrap();
        let up = Upsample::new((3, 4), (3, 4));
        assert!(up.identity);
        let mut above = Vec::new();
        up.for_each_above(maps.map(0, 0), 3.5, &mut Vec::new(), |p| above.push(p));
        let expected: Vec<usize> = (0..12).filter(|&p| values[p] > 3.5).collect();
        assert_eq!(above, expected);
        let blended = Upsample {
            identity: false,
            ..Upsample::new((3, 4), (3, 4))
        };
        let mut general = Vec::new();
        blended.for_each_above(maps.map(0, 0), 3.5, &mut Vec::new(), |p| general.push(p));
        general.sort_unstable();
        assert_eq!(general, expected);
    }

    /// The pixels above a threshold are those of every pixel blended one by one,
    /// at factors that give runs of many rows, uneven ones and clamped edges.
    #[test]
    fn only_the_pixels_above_are_found() {
        let taps = |n: usize, out: usize, i: usize| {
            let x = ((i as f64 + 0.5) * n as f64 / out as f64 - 0.5).clamp(0.0, (n - 1) as f64);
            let lo = x.floor() as usize;
            (lo, (lo + 1).min(n - 1), (x - lo as f64) as f32)
        };
        for ((h, w), (sh, sw)) in [((8, 8), (64, 64)), ((5, 7), (37, 23)), ((16, 16), (64, 64))] {
            // Peaks and ridges in both directions across the map.
            let values: Vec<f32> = (0..h * w)
                .map(|i| (((i * 7919) % 101) as f32 / 10.0).sin() * (i % w) as f32)
                .collect();
            let maps = LayerMaps::new(values.clone(), 1, 1, (h, w)).unwrap();
            let map = maps.map(0, 0);
            let up = Upsample::new((h, w), (sh, sw));
            for threshold in [-1.0, 0.5, 2.0, 4.0, 5.5] {
                let mut found = Vec::new();
                up.for_each_above(map, threshold, &mut Vec::new(), |p| found.push(p));
                found.sort_unstable();
                let expected: Vec<usize> = (0..sh * sw)
                    .filter(|&p| {
                        let ((y0, y1, fy), (x0, x1, fx)) =
                            (taps(h, sh, p / sw), taps(w, sw, p % sw));
                        let at = |y: usize, x: usize| values[y * w + x];
                        let upper = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
                        let lower = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
                        upper + (lower - upper) * fy > threshold
                    })
                    .collect();
                assert!(!expected.is_empty() || threshold > 5.0);
                assert_eq!(found, expected, "{h}x{w} to {sh}x{sw} above {threshold}");
            }
        }
    }
}
