//! Occlusion (Zeiler & Fergus 2014): slide a window over the input, fill it with a
//! constant, and credit the drop of the target's value to every pixel under the
//! window; a pixel's attribution is the mean drop over the windows covering it. As
//! Captum's `Occlusion`: windows cover all channels, start every `stride` pixels,
//! `ceil((H - window) / stride) + 1` per axis (the last ones cut at the border).
//! Forward passes only, the occluded copies in batches of a set size.

use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};

use super::descriptor::shared::BATCH_SIZE;
use super::descriptor::{Build, Descriptor, Kind, Param};
use super::method::{Attribution, Method, Passes, in_batches, target_values};
use super::target::Target;
use crate::data::image::MAX_INPUT_SIDE;
use crate::model::Model;

/// Occlusion.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "occlusion",
    aliases: &[],
    about: "occlusion by a sliding window",
    citation: "Zeiler & Fergus 2014",
    params: &[WINDOW, STRIDE, BATCH_SIZE],
    build: Build::Method(&|p| {
        Ok(Box::new(Occlusion {
            window: p.count(&WINDOW)?,
            stride: p.count(&STRIDE)?,
            batch: p.count(&BATCH_SIZE)?,
            ..Occlusion::default()
        }))
    }),
}];

const WINDOW: Param = Param {
    name: "window",
    kind: Kind::Integer {
        default: DEFAULT_WINDOW as u64,
        min: 1,
        max: MAX_INPUT_SIDE as u64,
    },
    help: "Occlusion: window side in pixels",
};

const STRIDE: Param = Param {
    name: "stride",
    kind: Kind::Integer {
        default: DEFAULT_STRIDE as u64,
        min: 1,
        max: MAX_INPUT_SIDE as u64,
    },
    help: "Occlusion: pixels between windows",
};

const DEFAULT_WINDOW: usize = 16;
const DEFAULT_STRIDE: usize = 8;

/// Occlusion with a square window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Occlusion {
    /// Window side in pixels.
    pub window: usize,
    /// Pixels between window starts.
    pub stride: usize,
    /// The value the window is filled with (in the model's input space).
    pub fill: f64,
    /// Occluded copies per forward pass.
    pub batch: usize,
}

impl Default for Occlusion {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            stride: DEFAULT_STRIDE,
            fill: 0.0,
            batch: 32,
        }
    }
}

impl Occlusion {
    /// Window starts along an axis of `len` pixels.
    fn starts(&self, len: usize) -> Vec<usize> {
        let count = len.saturating_sub(self.window).div_ceil(self.stride) + 1;
        // A stride longer than the side leaves one window, at 0.
        (0..count)
            .map(|i| i * self.stride)
            .filter(|&s| s < len)
            .collect()
    }
}

impl Method for Occlusion {
    fn name(&self) -> String {
        format!(
            "occlusion(window={}, stride={}, fill={})",
            self.window, self.stride, self.fill
        )
    }

    fn passes(&self, (h, w): (usize, usize)) -> Passes {
        // A window per start along each axis, plus the clean pass.
        let windows = self.starts(h).len() * self.starts(w).len();
        Passes {
            backward: 0,
            forward: windows + 1,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        ensure!(
            self.window > 0 && self.stride > 0,
            "occlusion needs a window and a stride of at least one pixel"
        );
        let (n, c, h, w) = inputs.dims4()?;
        let inputs = inputs.to_dtype(DType::F32)?;
        let windows: Vec<(usize, usize)> = self
            .starts(h)
            .into_iter()
            .flat_map(|y| self.starts(w).into_iter().map(move |x| (y, x)))
            .collect();
        let clean = target_values(model, &inputs, targets)?.to_dtype(DType::F32)?;
        let clean = clean.to_vec1::<f32>()?;
        let mut total = vec![0f32; n * h * w];
        let mut count = vec![0f32; h * w];
        for &(y0, x0) in &windows {
            for y in y0..(y0 + self.window).min(h) {
                count[y * w + x0..y * w + (x0 + self.window).min(w)]
                    .iter_mut()
                    .for_each(|c| *c += 1.0);
            }
        }
        for (i, target) in targets.iter().enumerate() {
            let input = inputs.narrow(0, i, 1)?;
            in_batches(windows.len(), self.batch.max(1), |start, len| {
                let batch = &windows[start..start + len];
                let mut mask = vec![0f32; len * h * w];
                for (m, &(y0, x0)) in mask.chunks_exact_mut(h * w).zip(batch) {
                    for y in y0..(y0 + self.window).min(h) {
                        m[y * w + x0..y * w + (x0 + self.window).min(w)].fill(1.0);
                    }
                }
                let mask = Tensor::from_vec(mask, (len, 1, h, w), inputs.device())?;
                let keep = mask.affine(-1.0, 1.0)?;
                let occluded = input
                    .broadcast_mul(&keep)?
                    .broadcast_add(&(mask * self.fill)?)?;
                let values = target_values(model, &occluded, &vec![target.clone(); len])?;
                let values = values.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let plane = &mut total[i * h * w..][..h * w];
                for (&(y0, x0), value) in batch.iter().zip(values) {
                    let drop = clean[i] - value;
                    for y in y0..(y0 + self.window).min(h) {
                        plane[y * w + x0..y * w + (x0 + self.window).min(w)]
                            .iter_mut()
                            .for_each(|t| *t += drop);
                    }
                }
                Ok(())
            })?;
        }
        let mean: Vec<f32> = total
            .chunks_exact(h * w)
            .flat_map(|plane| {
                // A stride longer than the window leaves pixels no window covers:
                // nothing is known of them, so they get no attribution (not 0/0).
                plane
                    .iter()
                    .zip(&count)
                    .map(|(t, c)| if *c > 0.0 { t / c } else { 0.0 })
            })
            .collect();
        let map = Tensor::from_vec(mean, (n, 1, h, w), inputs.device())?;
        Ok(Attribution::Input(map.repeat((1, c, 1, 1))?))
    }
}
