//! VGG-11/16 (Simonyan & Zisserman 2015), with and without batch norm, with
//! torchvision's names: `features.N`, `avgpool`, `classifier.N`.

use anyhow::Result;
use candle_core::Tensor;

use super::sequential::{Sequential, Spec, vgg_features};
use crate::model::Network;
use crate::model::capture::Trace;
use crate::model::layer::LayerKind;
use crate::model::nn::adaptive_avg_pool2d;
use crate::model::weights::WeightPath;

const M: Option<usize> = None;
const VGG11: [Option<usize>; 13] = [
    Some(64),
    M,
    Some(128),
    M,
    Some(256),
    Some(256),
    M,
    Some(512),
    Some(512),
    M,
    Some(512),
    Some(512),
    M,
];
const VGG16: [Option<usize>; 18] = [
    Some(64),
    Some(64),
    M,
    Some(128),
    Some(128),
    M,
    Some(256),
    Some(256),
    Some(256),
    M,
    Some(512),
    Some(512),
    Some(512),
    M,
    Some(512),
    Some(512),
    Some(512),
    M,
];

/// A torchvision VGG.
pub struct Vgg {
    features: Sequential,
    classifier: Sequential,
}

impl Vgg {
    /// VGG-11 (configuration "A").
    pub fn vgg11(w: &WeightPath, batch_norm: bool, num_classes: usize) -> Result<Self> {
        Self::load(w, &VGG11, batch_norm, num_classes)
    }

    /// VGG-16 (configuration "D").
    pub fn vgg16(w: &WeightPath, batch_norm: bool, num_classes: usize) -> Result<Self> {
        Self::load(w, &VGG16, batch_norm, num_classes)
    }

    fn load(
        w: &WeightPath,
        config: &[Option<usize>],
        batch_norm: bool,
        num_classes: usize,
    ) -> Result<Self> {
        let features = Sequential::load(w, "features", &vgg_features(config, batch_norm))?;
        let classifier = Sequential::load(
            w,
            "classifier",
            &[
                Spec::Linear {
                    input: 512 * 7 * 7,
                    output: 4096,
                },
                Spec::Relu,
                Spec::Dropout,
                Spec::Linear {
                    input: 4096,
                    output: 4096,
                },
                Spec::Relu,
                Spec::Dropout,
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

impl Network for Vgg {
    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = self.features.forward(x, t)?;
        let x = t.tap(
            "avgpool",
            LayerKind::AvgPool,
            adaptive_avg_pool2d(&x, (7, 7))?,
        )?;
        self.classifier.forward(&x.flatten_from(1)?, t)
    }
}
