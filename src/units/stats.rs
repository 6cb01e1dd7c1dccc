//! One streaming pass over inputs that records, for every unit of one layer, its
//! top-k inputs and statistics. Memory is bounded by k maps per unit plus two
//! numbers per unit and input, whatever the layer's resolution.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::model::{Model, Probe};

/// One of a unit's strongest inputs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopInput {
    /// The input's index in the order the inputs came.
    pub input: usize,
    /// The unit's spatial maximum on it.
    pub peak: f32,
    /// Where the maximum is, `(y, x)` in the layer's map (`(0, 0)` for a vector).
    pub position: (usize, usize),
    /// The unit's whole map on it, row-major, at the layer's resolution.
    #[serde(skip)]
    pub map: Vec<f32>,
}

/// A unit's statistics over the inputs seen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnitStats {
    /// The mean activation over every position of every input.
    pub mean: f32,
    /// The largest activation anywhere.
    pub max: f32,
    /// Per input, the spatial maximum (the value inputs are ranked by).
    pub peaks: Vec<f32>,
    /// The strongest inputs, strongest first.
    pub top: Vec<TopInput>,
}

/// Every unit of one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    /// The layer's name.
    pub layer: String,
    /// The layer's map size `(height, width)`; `(1, 1)` for a vector.
    pub size: (usize, usize),
    /// How many inputs were seen.
    pub inputs: usize,
    /// Per unit (channel), in index order.
    pub units: Vec<UnitStats>,
}

impl LayerStats {
    /// Runs `model` over `batches` (each `[N, 3, H, W]`) recording `layer`, keeping
    /// each unit's `k` strongest inputs. Stops between batches when the running job
    /// is cancelled ([`crate::jobs::checkpoint`]).
    pub fn collect(
        model: &Model,
        layer: &str,
        k: usize,
        batches: impl IntoIterator<Item = Result<Tensor>>,
    ) -> Result<Self> {
        let probe = Probe::new().record(layer).layers_only();
        let mut stats: Option<Self> = None;
        let mut sums: Vec<f64> = Vec::new();
        for batch in batches {
            crate::jobs::checkpoint()?;
            let batch = batch?;
            let capture = model.forward(&batch, &probe)?;
            let a = capture.activation(layer)?.to_dtype(DType::F32)?;
            let (n, channels, size) = match a.dims() {
                [n, c, h, w] => (*n, *c, (*h, *w)),
                [n, c] => (*n, *c, (1, 1)),
                dims => anyhow::bail!("layer `{layer}` has shape {dims:?}, not [N, C(, H, W)]"),
            };
            let values = a.flatten_all()?.to_vec1::<f32>()?;
            let stats = stats.get_or_insert_with(|| Self {
                layer: layer.to_string(),
                size,
                inputs: 0,
                units: vec![UnitStats::empty(); channels],
            });
            ensure!(
                stats.size == size,
                "layer `{layer}` changed size between batches"
            );
            sums.resize(channels, 0.0);
            let area = size.0 * size.1;
            for i in 0..n {
                let input = stats.inputs + i;
                for (c, unit) in stats.units.iter_mut().enumerate() {
                    let start = (i * channels + c) * area;
                    let map = &values[start..start + area];
                    sums[c] += map.iter().map(|&v| v as f64).sum::<f64>();
                    unit.add(input, map, size.1, k);
                }
            }
            stats.inputs += n;
        }
        let Some(mut stats) = stats else {
            anyhow::bail!("no inputs to compute `{layer}`'s unit statistics on");
        };
        let count = (stats.inputs * stats.size.0 * stats.size.1) as f64;
        for (unit, sum) in stats.units.iter_mut().zip(sums) {
            unit.mean = (sum / count) as f32;
        }
        Ok(stats)
    }
}

impl UnitStats {
    fn empty() -> Self {
        Self {
            mean: 0.0,
            max: f32::NEG_INFINITY,
            peaks: Vec::new(),
            top: Vec::new(),
        }
    }

    /// Takes in the unit's map on one more input (`width` wide).
    fn add(&mut self, input: usize, map: &[f32], width: usize, k: usize) {
        let (at, peak) =
            map.iter()
                .copied()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
                    if v > best.1 { (i, v) } else { best }
                });
        self.max = self.max.max(peak);
        self.peaks.push(peak);
        // A bounded list kept sorted, strongest first: k is a handful, so an insert
        // beats a heap and keeps the order the views read.
        let place = self.top.partition_point(|t| t.peak >= peak);
        if place < k {
            self.top.insert(
                place,
                TopInput {
                    input,
                    peak,
                    position: (at / width, at % width),
                    map: map.to_vec(),
                },
            );
            self.top.truncate(k);
        }
    }

    /// Counts of the per-input peaks in `bins` equal bins from the lowest to the
    /// highest, with those bounds.
    pub fn histogram(&self, bins: usize) -> (Vec<u64>, (f32, f32)) {
        let lo = self.peaks.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = self.peaks.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut counts = vec![0; bins.max(1)];
        if self.peaks.is_empty() {
            return (counts, (0.0, 0.0));
        }
        let width = (hi - lo).max(f32::MIN_POSITIVE);
        for &p in &self.peaks {
            let bin = (((p - lo) / width) * bins as f32) as usize;
            counts[bin.min(bins - 1)] += 1;
        }
        (counts, (lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::data::Source;

    /// The statistics agree with a direct computation from one capture of all
    /// inputs: top inputs, positions, means and maxima, batch size irrelevant.
    #[test]
    fn stats_match_a_direct_computation() {
        let model = crate::model::demo::model(&Device::Cpu).unwrap();
        let layer = crate::attribution::default_cam_layer(&model).unwrap();
        let spec = model.input_spec();
        let samples: Vec<_> = Source::Demo(6)
            .samples(spec, &Device::Cpu)
            .unwrap()
            .map(|s| s.unwrap().tensor)
            .collect();
        let all = Tensor::stack(&samples, 0).unwrap();
        let batches = [all.narrow(0, 0, 4).unwrap(), all.narrow(0, 4, 2).unwrap()];
        let stats = LayerStats::collect(&model, &layer, 3, batches.into_iter().map(Ok)).unwrap();
        assert_eq!(stats.inputs, 6);

        let probe = Probe::new().record(layer.as_str());
        let a = model.forward(&all, &probe).unwrap();
        let a = a.activation(&layer).unwrap().to_dtype(DType::F32).unwrap();
        let (_, c, h, w) = a.dims4().unwrap();
        assert_eq!((stats.units.len(), stats.size), (c, (h, w)));
        for (unit, s) in stats.units.iter().enumerate() {
            let maps = a.narrow(1, unit, 1).unwrap().flatten_from(1).unwrap();
            let maps = maps.to_vec2::<f32>().unwrap();
            let peaks: Vec<f32> = maps
                .iter()
                .map(|m| m.iter().copied().fold(f32::MIN, f32::max))
                .collect();
            assert_eq!(s.peaks, peaks);
            let mut order: Vec<usize> = (0..6).collect();
            order.sort_by(|&i, &j| peaks[j].total_cmp(&peaks[i]));
            let top: Vec<usize> = s.top.iter().map(|t| t.input).collect();
            assert_eq!(top, order[..3], "unit {unit}");
            let best = &s.top[0];
            assert_eq!(
                maps[best.input][best.position.0 * w + best.position.1],
                best.peak
            );
            assert_eq!(best.map, maps[best.input]);
            let mean = maps.iter().flatten().map(|&v| v as f64).sum::<f64>() / (6 * h * w) as f64;
            assert!(
                (s.mean as f64 - mean).abs() < 1e-5,
                "unit {unit}: {} vs {mean}",
                s.mean
            );
            assert_eq!(s.max, peaks.iter().copied().fold(f32::MIN, f32::max));
            let (counts, _) = s.histogram(5);
            assert_eq!(counts.iter().sum::<u64>(), 6);
        }
    }
}
