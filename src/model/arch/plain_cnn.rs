//! The plain CNN family: VGG-style stages (3x3 convolution, optional batch norm,
//! ReLU, 2x2 max pool) of chosen widths, global average pooling and one linear
//! classifier. Small enough to train on a CPU; the demo world's model is one.
//! Names: `features.N`, `avgpool`, `fc`.

use anyhow::{Result, ensure};
use candle_core::Tensor;

use super::entry::{Architecture, Entry};
use super::sequential::{Sequential, vgg_features};
use crate::model::layer::LayerKind;
use crate::model::nn::Linear;
use crate::model::trace::{Network, Trace};
use crate::model::weights::WeightPath;

/// The plain CNN family; its stages' widths and batch norm are the card's to set.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[Architecture::PlainCnn],
    options: &[
        (
            "channels",
            "output channels of each stage (default [32, 64, 128])",
        ),
        (
            "batch_norm",
            "batch norm after each convolution (default true)",
        ),
    ],
    build: |_, w, options, classes| {
        let channels = options.channels.as_deref().unwrap_or(&[32, 64, 128]);
        let batch_norm = options.batch_norm.unwrap_or(true);
        Ok(Box::new(PlainCnn::load(w, channels, batch_norm, classes)?))
    },
};

/// A plain CNN.
pub struct PlainCnn {
    features: Sequential,
    fc: Linear,
}

impl PlainCnn {
    /// One stage per entry of `channels`, each halving the resolution.
    pub fn load(
        w: &WeightPath,
        channels: &[usize],
        batch_norm: bool,
        num_classes: usize,
    ) -> Result<Self> {
        ensure!(
            !channels.is_empty(),
            "a plain CNN needs at least one stage (`channels` in the card)"
        );
        let config: Vec<Option<usize>> = channels.iter().flat_map(|&c| [Some(c), None]).collect();
        let features = Sequential::load(w, "features", &vgg_features(&config, batch_norm))?;
        let fc = Linear::load(&w.pp("fc"), channels[channels.len() - 1], num_classes)?;
        Ok(Self { features, fc })
    }
}

impl Network for PlainCnn {
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        self.features.forward(x, t)
    }

    fn head(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = t.avg_pool(x, (1, 1))?;
        let x = t.tap("avgpool", LayerKind::AvgPool, x)?;
        let x = t.linear(&self.fc, &x.flatten_from(1)?)?;
        t.tap("fc", LayerKind::Linear, x)
    }
}
