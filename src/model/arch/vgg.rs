//! VGG-11/16 (Simonyan & Zisserman 2015), with and without batch norm, with
//! torchvision's names: `features.N`, `avgpool`, `classifier.N`.

use anyhow::Result;

use super::entry::{Architecture, Entry};
use super::sequential::{FeaturesClassifier, Spec, vgg_features};
use crate::model::weights::WeightPath;

/// torchvision's VGGs, with and without batch norm; no options.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[
        Architecture::Vgg11,
        Architecture::Vgg11Bn,
        Architecture::Vgg16,
        Architecture::Vgg16Bn,
    ],
    options: &[],
    build: |architecture, w, _, classes| {
        Ok(Box::new(match architecture {
            Architecture::Vgg11Bn => vgg11(w, true, classes)?,
            Architecture::Vgg16 => vgg16(w, false, classes)?,
            Architecture::Vgg16Bn => vgg16(w, true, classes)?,
            _ => vgg11(w, false, classes)?,
        }))
    },
};

/// A 2x2 max pool; `Some(c)` is a 3x3 convolution to `c` channels.
const M: Option<usize> = None;

/// Configuration "A", one row per resolution.
#[rustfmt::skip]
const VGG11: [Option<usize>; 13] = [
    Some(64), M,
    Some(128), M,
    Some(256), Some(256), M,
    Some(512), Some(512), M,
    Some(512), Some(512), M,
];

/// Configuration "D", one row per resolution.
#[rustfmt::skip]
const VGG16: [Option<usize>; 18] = [
    Some(64), Some(64), M,
    Some(128), Some(128), M,
    Some(256), Some(256), Some(256), M,
    Some(512), Some(512), Some(512), M,
    Some(512), Some(512), Some(512), M,
];

/// VGG-11 (configuration "A").
pub fn vgg11(w: &WeightPath, batch_norm: bool, num_classes: usize) -> Result<FeaturesClassifier> {
    load(w, &VGG11, batch_norm, num_classes)
}

/// VGG-16 (configuration "D").
pub fn vgg16(w: &WeightPath, batch_norm: bool, num_classes: usize) -> Result<FeaturesClassifier> {
    load(w, &VGG16, batch_norm, num_classes)
}

fn load(
    w: &WeightPath,
    config: &[Option<usize>],
    batch_norm: bool,
    num_classes: usize,
) -> Result<FeaturesClassifier> {
    let classifier = [
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
    ];
    FeaturesClassifier::load(w, &vgg_features(config, batch_norm), (7, 7), &classifier)
}
