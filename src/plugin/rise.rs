//! RISE (Petsiuk et al. 2018) written directly on the engine: what the RISE
//! plugin (`plugins/rise`) is checked against, map for map, and timed against, to
//! measure what the plugin ABI costs. It draws the same masks by the plugin's
//! protocol (see its module doc: ChaCha8 seeded with `seed`; per mask its `s x s`
//! cells row-major, `random::<f32>() < p`, then the shifts `dy`, `dx`) but makes
//! them with Candle's bilinear upsampling, and masks, scores and sums with tensor
//! ops, so the two share no code beyond the protocol.

use anyhow::{Result, ensure};
use candle_core::{D, DType, Tensor};
use candle_nn::ops::softmax;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::attribution::Target;
use crate::model::{Model, Probe};

/// RISE's settings, as the plugin's parameters name them.
#[derive(Clone, Copy, Debug)]
pub struct Rise {
    /// `masks`: the number of masks N.
    pub masks: usize,
    /// `cells`: the grid's cells per side s.
    pub cells: usize,
    /// `keep`: the probability p that a cell is kept.
    pub keep: f32,
    /// `seed`.
    pub seed: u64,
    /// `batch-size`: masked inputs per forward pass.
    pub batch: usize,
}

impl Rise {
    /// The maps of `inputs` (`[N, C, H, W]`), `[N, 1, H, W]`, sample `i` explaining
    /// `targets[i]`.
    pub fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Tensor> {
        let (n, _, h, w) = inputs.dims4()?;
        ensure!(
            targets.len() == n,
            "{} targets for {n} inputs",
            targets.len()
        );
        let maps = (0..n)
            .map(|i| self.explain(model, &inputs.narrow(0, i, 1)?, &targets[i], (h, w)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&maps, 0)?)
    }

    /// One input's map, `[1, H, W]`.
    fn explain(
        &self,
        model: &Model,
        x: &Tensor,
        target: &Target,
        (h, w): (usize, usize),
    ) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut map = Tensor::zeros((1, h * w), DType::F32, x.device())?;
        let mut done = 0;
        while done < self.masks {
            crate::jobs::checkpoint()?;
            let b = self.batch.min(self.masks - done);
            let masks = self.masks_of(&mut rng, b, (h, w), x.device())?;
            let masked = x.broadcast_mul(&masks)?;
            let scores = score(model, &masked, target)?;
            map = (map + scores.unsqueeze(0)?.matmul(&masks.reshape((b, h * w))?)?)?;
            done += b;
        }
        Ok((map / (self.masks as f64 * self.keep as f64))?.reshape((1, h, w))?)
    }

    /// The next `b` masks, `[b, 1, H, W]`.
    fn masks_of(
        &self,
        rng: &mut ChaCha8Rng,
        b: usize,
        (h, w): (usize, usize),
        device: &candle_core::Device,
    ) -> Result<Tensor> {
        let s = self.cells;
        let (cell_h, cell_w) = (h.div_ceil(s), w.div_ceil(s));
        let masks = (0..b)
            .map(|_| {
                let grid: Vec<f32> = (0..s * s)
                    .map(|_| f32::from(u8::from(rng.random::<f32>() < self.keep)))
                    .collect();
                let dy = rng.random_range(0..cell_h);
                let dx = rng.random_range(0..cell_w);
                let up = Tensor::from_vec(grid, (1, 1, s, s), device)?.upsample_bilinear2d(
                    (s + 1) * cell_h,
                    (s + 1) * cell_w,
                    false,
                )?;
                Ok(up.narrow(2, dy, h)?.narrow(3, dx, w)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&masks, 0)?)
    }
}

/// The target's score on each input of `batch`, `[b]`: a class's softmax
/// probability, a unit's activation.
fn score(model: &Model, batch: &Tensor, target: &Target) -> Result<Tensor> {
    let probe = match target.layer() {
        Some(layer) => Probe::new().values_only().record(layer),
        None => Probe::new().values_only(),
    };
    let capture = model.forward(batch, &probe)?;
    Ok(match target {
        Target::Class(c) => softmax(capture.logits()?, D::Minus1)?
            .narrow(1, *c, 1)?
            .squeeze(1)?,
        Target::Unit(_) => capture.per_sample(&target.objective())?,
    })
}
