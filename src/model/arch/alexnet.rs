//! AlexNet (Krizhevsky et al. 2012) as torchvision builds it (the one-GPU variant):
//! `features.N`, `avgpool`, `classifier.N`.

use anyhow::Result;

use super::entry::{Architecture, Entry};
use super::sequential::{FeaturesClassifier, Spec};
use crate::model::nn::ConvSpec;
use crate::model::weights::WeightPath;

/// torchvision's AlexNet; no options.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[Architecture::Alexnet],
    options: &[],
    build: |_, w, _, classes| Ok(Box::new(alexnet(w, classes)?)),
};

/// torchvision's AlexNet with a `num_classes`-way classifier.
pub fn alexnet(w: &WeightPath, num_classes: usize) -> Result<FeaturesClassifier> {
    let pool = Spec::MaxPool {
        kernel: 3,
        stride: 2,
    };
    let features = [
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
    ];
    let classifier = [
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
    ];
    FeaturesClassifier::load(w, &features, (6, 6), &classifier)
}
