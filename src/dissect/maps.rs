//! One layer's activations for a batch of images, as both passes read them: copied
//! off the model's output once, the largest value of each row of each map found on
//! the way while the row is in registers, every value checked finite.
//!
//! The peaks spare the passes most of a second read: at q = 0.005 few rows hold a
//! value that can reach a unit's top quantile, so the thresholds' counting reads
//! only the rows whose peak reaches its gate, and the tally only the maps whose
//! peak exceeds `T_k`, around their rows that do (a bilinear value never exceeds
//! the four it blends).

use anyhow::{Result, bail, ensure};
use candle_core::{DType, Storage, Tensor};

/// A batch's maps of one layer, `[images, units, rows, columns]`, with the peak of
/// each row and each map.
pub struct LayerMaps {
    values: Vec<f32>,
    /// Per image, unit and row, the row's largest value.
    row_peaks: Vec<f32>,
    /// Per image and unit, its map's largest value.
    peaks: Vec<f32>,
    units: usize,
    /// A map's `(rows, columns)`.
    size: (usize, usize),
}

/// One map, with its peaks.
#[derive(Clone, Copy)]
pub struct Map<'a> {
    /// Its values, row-major.
    pub values: &'a [f32],
    /// Each row's largest value.
    pub row_peaks: &'a [f32],
    /// The largest value.
    pub peak: f32,
}

impl Map<'_> {
    /// Its `(rows, columns)`.
    pub fn size(&self) -> (usize, usize) {
        let rows = self.row_peaks.len();
        (rows, self.values.len() / rows)
    }
}

impl LayerMaps {
    /// The maps of a layer's output, `[images, units, rows, columns]` (`[images,
    /// units]`: one value per map).
    pub fn read(output: &Tensor) -> Result<Self> {
        let (images, units, size) = match *output.dims() {
            [images, units] => (images, units, (1, 1)),
            [images, units, rows, columns] => (images, units, (rows, columns)),
            ref dims => bail!(
                "a layer's output of shape {dims:?}: dissection reads maps, \
                 `[images, units, rows, columns]`, or values, `[images, units]`"
            ),
        };
        let output = output.to_dtype(DType::F32)?;
        let (storage, layout) = output.storage_and_layout();
        let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets())
        else {
            drop(storage);
            return Self::new(output.flatten_all()?.to_vec1()?, images, units, size);
        };
        let values = &cpu.as_slice::<f32>()?[start..end];
        let mut copy = Vec::with_capacity(values.len());
        let mut peaks = RowPeaks::new(images * units * size.0);
        // Row by row: each row's peak is found while the row is in registers.
        for row in values.chunks_exact(size.1) {
            copy.extend_from_slice(row);
            peaks.add(row, size.1);
        }
        Self::with_row_peaks(copy, peaks, units, size)
    }

    /// The maps of `values`, `[images, units, rows, columns]` flattened, of `size`
    /// `(rows, columns)`.
    pub fn new(
        values: Vec<f32>,
        images: usize,
        units: usize,
        size: (usize, usize),
    ) -> Result<Self> {
        let (rows, columns) = size;
        ensure!(
            rows * columns > 0 && values.len() == images * units * rows * columns,
            "{} activations do not make {images} x {units} maps of {rows} x {columns}",
            values.len()
        );
        let mut peaks = RowPeaks::new(images * units * rows);
        peaks.add(&values, columns);
        Self::with_row_peaks(values, peaks, units, size)
    }

    /// The maps of `values` with their rows' peaks, once every value is checked
    /// finite.
    fn with_row_peaks(
        values: Vec<f32>,
        row_peaks: RowPeaks,
        units: usize,
        size: (usize, usize),
    ) -> Result<Self> {
        if row_peaks.poisoned() {
            check_finite(&values)?;
        }
        let row_peaks = row_peaks.peaks;
        let peaks = (row_peaks.chunks_exact(size.0))
            .map(|rows| rows.iter().copied().fold(f32::NEG_INFINITY, larger))
            .collect();
        Ok(Self {
            values,
            row_peaks,
            peaks,
            units,
            size,
        })
    }

    /// How many images.
    pub fn images(&self) -> usize {
        self.peaks.len() / self.units.max(1)
    }

    /// How many units.
    pub fn units(&self) -> usize {
        self.units
    }

    /// A map's `(rows, columns)`.
    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// Unit `k`'s map in image `b`.
    pub fn map(&self, b: usize, k: usize) -> Map<'_> {
        let (i, (rows, columns)) = (b * self.units + k, self.size);
        Map {
            values: &self.values[i * rows * columns..][..rows * columns],
            row_peaks: &self.row_peaks[i * rows..][..rows],
            peak: self.peaks[i],
        }
    }
}

/// The peaks of rows, found in lanes that vectorize, and a check that every value
/// was finite: each lane also sums `v · 0`, which is 0 for every finite `v` and not
/// a number for the others, and is summed once at the end (a row's peak is not
/// checked: the values are an error if any is not finite).
struct RowPeaks {
    peaks: Vec<f32>,
    poison: [f32; LANES],
}

/// Values a row is folded by at a time.
const LANES: usize = 8;

impl RowPeaks {
    fn new(rows: usize) -> Self {
        Self {
            peaks: Vec::with_capacity(rows),
            poison: [0.0; LANES],
        }
    }

    /// Adds the peaks of the rows of `values`, `columns` each.
    #[inline]
    fn add(&mut self, values: &[f32], columns: usize) {
        let mut fold = |peak: &mut [f32; LANES], block: &[f32]| {
            for ((p, z), &v) in peak.iter_mut().zip(&mut self.poison).zip(block) {
                *p = larger(*p, v);
                *z += v * 0.0;
            }
        };
        for row in values.chunks_exact(columns) {
            let mut peak = [f32::NEG_INFINITY; LANES];
            let blocks = row.chunks_exact(LANES);
            let rest = blocks.remainder();
            for block in blocks {
                fold(&mut peak, block);
            }
            fold(&mut peak, rest);
            // Halves folded onto each other: three steps, not seven.
            let [a, b, c, d, e, f, g, h] = peak;
            let (a, b, c, d) = (larger(a, e), larger(b, f), larger(c, g), larger(d, h));
            self.peaks.push(larger(larger(a, c), larger(b, d)));
        }
    }

    /// Whether a value was not finite.
    fn poisoned(&self) -> bool {
        self.poison.iter().sum::<f32>().is_nan()
    }
}

/// The larger of two numbers, as one comparison (`f32::max` also weighs NaN; the
/// values here are checked finite apart).
#[inline]
fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// An error naming the first value that is not finite (a broken model's), checked
/// in blocks so that the common case, none, vectorizes.
pub(super) fn check_finite(values: &[f32]) -> Result<()> {
    let bad = values
        .chunks(256)
        .find(|block| block.iter().fold(false, |bad, v| bad | !v.is_finite()))
        .and_then(|block| block.iter().find(|v| !v.is_finite()));
    match bad {
        Some(v) => bail!("an activation is {v}; the model's weights or input are broken"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Read off a tensor, strided or not, the maps are its values with the peaks
    /// of their rows and of themselves; a value that is not finite, or values that
    /// make no maps of the size, are an error.
    #[test]
    fn maps_carry_their_values_and_peaks() {
        // 2 images x 3 units x 2 rows x 5 columns: rows span more and fewer
        // values than a lane block.
        let values: Vec<f32> = (0..60).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let t = Tensor::from_vec(values.clone(), (2, 3, 2, 5), &Device::Cpu).unwrap();
        let strided = t.permute((1, 0, 2, 3)).unwrap();
        let strided_values: Vec<f32> = strided.flatten_all().unwrap().to_vec1().unwrap();
        let wide = Tensor::from_vec(values.clone(), (2, 3, 1, 10), &Device::Cpu).unwrap();
        for (maps, values, (images, units), (rows, columns)) in [
            (LayerMaps::read(&t).unwrap(), &values, (2, 3), (2, 5)),
            (
                LayerMaps::read(&strided).unwrap(),
                &strided_values,
                (3, 2),
                (2, 5),
            ),
            (LayerMaps::read(&wide).unwrap(), &values, (2, 3), (1, 10)),
            (
                LayerMaps::new(values.clone(), 2, 3, (2, 5)).unwrap(),
                &values,
                (2, 3),
                (2, 5),
            ),
        ] {
            assert_eq!((maps.images(), maps.units()), (images, units));
            assert_eq!(maps.size(), (rows, columns));
            let largest = |v: &[f32]| v.iter().copied().fold(f32::MIN, f32::max);
            for b in 0..images {
                for k in 0..units {
                    let map = maps.map(b, k);
                    let expected = &values[(b * units + k) * 10..][..10];
                    assert_eq!(map.values, expected);
                    assert_eq!(map.size(), (rows, columns));
                    let rows: Vec<f32> = expected.chunks(columns).map(largest).collect();
                    assert_eq!(map.row_peaks, rows);
                    assert_eq!(map.peak, largest(expected));
                }
            }
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut broken = values.clone();
            broken[13] = bad;
            let err = LayerMaps::new(broken.clone(), 2, 3, (2, 5)).err().unwrap();
            assert!(err.to_string().contains("broken"), "{err}");
            let t = Tensor::from_vec(broken, (2, 3, 2, 5), &Device::Cpu).unwrap();
            assert!(LayerMaps::read(&t).is_err());
        }
        assert!(LayerMaps::new(values[..59].to_vec(), 2, 3, (2, 5)).is_err());
        assert!(LayerMaps::new(values.clone(), 2, 3, (2, 4)).is_err());
        assert!(LayerMaps::new(Vec::new(), 2, 3, (0, 5)).is_err());
        let flat = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        assert!(LayerMaps::read(&flat).is_err());
        let units = Tensor::from_vec(values[..6].to_vec(), (2, 3), &Device::Cpu).unwrap();
        let units = LayerMaps::read(&units).unwrap();
        assert_eq!((units.size(), units.map(1, 2).peak), ((1, 1), values[5]));
    }
}
