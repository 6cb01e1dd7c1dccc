//! AlexNet (Krizhevsky et al. 2012) as torchvision builds it (the one-GPU variant):
//! `features.N`, `avgpool`, `classifier.N`.

use anyhow::Result;
use candle_core::Tensor;

use super::sequential::{Sequential, Spec};
use crate::model::Network;
use crate::model::capture::Trace;
use crate::model::layer::LayerKind;
use crate::model::nn::{ConvSpec, adaptive_avg_pool2d};
use crate::model::weights::WeightPath;

/// torchvision's AlexNet.
pub struct AlexNet {
    features: Sequential,
    classifier: Sequential,
}

impl AlexNet {
    /// Loads AlexNet with a `num_classes`-way classifier.
    pub fn load(w: &WeightPath, num_classes: usize) -> Result<Self> {
        let pool = Spec::MaxPool {
            kernel: 3,
            stride: 2,
        };
        let features = Sequential::load(
            w,
            "features",
            &[
                Spec::Conv(ConvSpec::new(3, 64, 11).stride(4).padding(2)),
                Spec::Relu,
                pool,
                Spec::Conv(ConvSpec::new(64, 192, 5).padding(2)),
                Spec::Relu,
                pool,
                Spec::Conv(ConvSpec::new(192, 384, 3).padding(1)),
                Spec::Relu,
                Spec::Conv(ConvSpec::new(384, 256, 3).padding(1)),
                Spec::Relu,
                Spec::Conv(ConvSpec::new(256, 256, 3).padding(1)),
                Spec::Relu,
                pool,
            ],
        )?;
        let classifier = Sequential::load(
            w,
            "classifier",
            &[
                Spec::Dropout,
                Spec::Linear {
                    input: 256 * 6 * 6,
                    output: 4096,
                },
                Spec::Relu,
                Spec::Dropout,
                Spec::Linear {
                    input: 4096,
                    output: 4096,
                },
                Spec::Relu,
                Spec::Linear {
                    input: 4096,
                    output: num_classes,
                },
            ],
        )?;
        Ok(Self {
            features,
            classifier,
        })
    }
}

impl Network for AlexNet {
    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = self.features.forward(x, t)?;
        let x = t.tap(
            "avgpool",
            LayerKind::AvgPool,
            adaptive_avg_pool2d(&x, (6, 6))?,
        )?;
        self.classifier.forward(&x.flatten_from(1)?, t)
    }
}
