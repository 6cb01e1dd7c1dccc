//! Dataset search: one streaming pass over inputs that records, for every unit of
//! the chosen layers, its top-k inputs by spatial maximum (as NetDissect-Lite
//! ranks), where each peak is and the unit's map there, and summary statistics.
//! Memory is flat in the number of inputs: k maps per unit, a fixed histogram, and
//! two running sums.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use crate::data::{InputSpec, Window};
use crate::model::{Model, Probe, ReceptiveField};

/// One of a unit's strongest inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitStats {
    /// The mean activation over every position of every input.
    pub mean: f32,
    /// The largest activation anywhere.
    pub max: f32,
    /// The per-input spatial maxima (the values inputs are ranked by).
    pub peaks: Histogram,
    /// The strongest inputs, strongest first.
    pub top: Vec<TopInput>,
}

/// Every unit of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// The layer's name.
    pub layer: String,
    /// The layer's map size `(height, width)`; `(1, 1)` for a vector.
    pub size: (usize, usize),
    /// The input pixels a position sees; `None` where a position sees all of them.
    pub field: Option<ReceptiveField>,
    /// How many inputs were seen.
    pub inputs: usize,
    /// Per unit (channel), in index order.
    pub units: Vec<UnitStats>,
}

impl LayerStats {
    /// The model-input pixels `(top, left, bottom, right)` that `top`'s peak
    /// position sees, in a model input of `size` `(rows, columns)`: the receptive
    /// field's window, or the whole input.
    pub fn window(&self, top: &TopInput, size: (usize, usize)) -> [usize; 4] {
        match self.field {
            Some(field) => field.window(top.position, size),
            None => [0, 0, size.0, size.1],
        }
    }
}

impl LayerStats {
    /// The part of `original` (the image before preprocessing by `spec`) that
    /// `top`'s peak position sees: its receptive-field window mapped from the
    /// model's input back onto `seen`, the part of the image the input shows
    /// ([`crate::data::Sample::window`]).
    pub fn crop(
        &self,
        top: &TopInput,
        original: &RgbImage,
        seen: Window,
        spec: &InputSpec,
    ) -> RgbImage {
        let [rows, columns] = spec.size;
        let [y0, x0, y1, x1] = self.window(top, (rows, columns));
        let (wx, wy, ww, wh) = seen;
        let (sx, sy) = (ww / columns as f64, wh / rows as f64);
        let (iw, ih) = original.dimensions();
        let left = (wx + x0 as f64 * sx).floor().clamp(0.0, iw as f64 - 1.0) as u32;
        let top_edge = (wy + y0 as f64 * sy).floor().clamp(0.0, ih as f64 - 1.0) as u32;
        let right = ((wx + x1 as f64 * sx).ceil() as u32).clamp(left + 1, iw);
        let bottom = ((wy + y1 as f64 * sy).ceil() as u32).clamp(top_edge + 1, ih);
        image::imageops::crop_imm(original, left, top_edge, right - left, bottom - top_edge)
            .to_image()
    }
}

/// A dataset search in progress: batches in, statistics out.
pub struct Search<'m> {
    model: &'m Model,
    probe: Probe,
    k: usize,
    layers: Vec<Accumulator>,
}

/// One layer's statistics so far, with its running sums.
struct Accumulator {
    stats: LayerStats,
    sums: Vec<f64>,
}

impl<'m> Search<'m> {
    /// A search of `layers` of `model`, keeping each unit's `k` strongest inputs.
    pub fn new(model: &'m Model, layers: &[String], k: usize) -> Result<Self> {
        ensure!(!layers.is_empty(), "no layer to search");
        ensure!(k > 0, "k must be at least 1");
        let known = model.layers()?;
        // Only the layers' activations are read: the pass stops after them.
        let mut probe = Probe::new().values_only().stop_after_recorded();
        let mut accumulators = Vec::new();
        for name in layers {
            let Some(info) = known.iter().find(|l| &l.name == name) else {
                anyhow::bail!("the model has no layer `{name}`; `unitscope info` lists its layers");
            };
            let size = match info.shape.as_slice() {
                [_, h, w] => (*h, *w),
                _ => (1, 1),
            };
            probe = probe.record(name.as_str());
            accumulators.push(Accumulator {
                stats: LayerStats {
                    layer: name.clone(),
                    size,
                    field: info.field,
                    inputs: 0,
                    units: vec![UnitStats::empty(); info.units],
                },
                sums: vec![0.0; info.units],
            });
        }
        Ok(Self {
            model,
            probe,
            k,
            layers: accumulators,
        })
    }

    /// Takes in one batch of model inputs, `[N, C, H, W]`.
    pub fn add(&mut self, batch: &Tensor) -> Result<()> {
        let capture = self.model.forward(batch, &self.probe)?;
        for layer in &mut self.layers {
            let name = &layer.stats.layer;
            let a = capture.activation(name)?.to_dtype(DType::F32)?;
            let n = a.dim(0)?;
            let units = layer.stats.units.len();
            let area = layer.stats.size.0 * layer.stats.size.1;
            ensure!(
                a.elem_count() == n * units * area,
                "layer `{name}` has shape {:?}, expected {units} units of {:?}",
                a.dims(),
                layer.stats.size
            );
            let values = a.flatten_all()?.to_vec1::<f32>()?;
            let (width, first, k) = (layer.stats.size.1, layer.stats.inputs, self.k);
            // Units are independent: on a small model their bookkeeping costs as
            // much as the pass, so it is spread over the cores, in input order per unit.
            layer
                .stats
                .units
                .par_iter_mut()
                .zip(layer.sums.par_iter_mut())
                .enumerate()
                .for_each(|(c, (unit, sum))| {
                    for i in 0..n {
                        let start = (i * units + c) * area;
                        let map = &values[start..start + area];
                        *sum += map.iter().map(|&v| v as f64).sum::<f64>();
                        unit.add(first + i, map, width, k);
                    }
                });
            layer.stats.inputs += n;
        }
        Ok(())
    }

    /// The statistics of every layer, in the order asked.
    pub fn finish(self) -> Result<Vec<LayerStats>> {
        self.layers
            .into_iter()
            .map(|Accumulator { mut stats, sums }| {
                ensure!(stats.inputs > 0, "no inputs to search `{}` on", stats.layer);
                let count = (stats.inputs * stats.size.0 * stats.size.1) as f64;
                for (unit, sum) in stats.units.iter_mut().zip(sums) {
                    unit.mean = (sum / count) as f32;
                }
                Ok(stats)
            })
            .collect()
    }
}

/// Searches `layers` over `batches` (each `[N, C, H, W]`), keeping each unit's `k`
/// strongest inputs. Stops between batches when the running job is cancelled
/// ([`crate::jobs::checkpoint`]).
pub fn search(
    model: &Model,
    layers: &[String],
    k: usize,
    batches: impl IntoIterator<Item = Result<Tensor>>,
) -> Result<Vec<LayerStats>> {
    let mut search = Search::new(model, layers, k)?;
    for batch in batches {
        crate::jobs::checkpoint()?;
        search.add(&batch?)?;
    }
    search.finish()
}

impl UnitStats {
    fn empty() -> Self {
        Self {
            mean: 0.0,
            max: f32::NEG_INFINITY,
            peaks: Histogram::default(),
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
        self.peaks.add(peak);
        // A bounded list kept sorted, strongest first: k is a handful, so an insert
        // beats a heap and keeps the order the views read. Ties keep the earlier input.
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
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::data::Source;

    /// The statistics agree with a direct computation from one capture of all
    /// inputs: top inputs, positions, maps, means, maxima and the peaks' histogram,
    /// batch size irrelevant.
    #[test]
    fn a_search_matches_a_direct_computation() {
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
        let stats = search(&model, std::slice::from_ref(&layer), 3, batches.map(Ok)).unwrap();
        let stats = &stats[0];
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
            let (counts, (lo, hi)) = s.peaks.bins(5);
            assert_eq!(counts.iter().sum::<u64>(), 6);
            let lowest = peaks.iter().copied().fold(f32::MAX, f32::min);
            assert!(lo <= lowest && hi >= s.max, "{lo}..{hi} for {peaks:?}");
        }
    }
}
