//! The architectures unitscope can inspect, written out layer by layer so that every
//! layer can be recorded and every rectifier can follow a backward rule.

mod alexnet;
mod efficientnet_lite;
mod plain_cnn;
mod resnet;
mod sequential;
mod vgg;

use anyhow::{Result, ensure};
use serde::Deserialize;

pub use efficientnet_lite::{EfficientNetLite, LiteOptions};
pub use plain_cnn::PlainCnn;
pub use resnet::ResNet;
pub use sequential::FeaturesClassifier;

use super::nn::PaddingStyle;
use super::trace::Network;
use super::weights::WeightPath;

/// An architecture a model card can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// torchvision `resnet18`.
    Resnet18,
    /// torchvision `resnet34`.
    Resnet34,
    /// torchvision `resnet50`.
    Resnet50,
    /// torchvision `vgg11`.
    Vgg11,
    /// torchvision `vgg11_bn`.
    Vgg11Bn,
    /// torchvision `vgg16`.
    Vgg16,
    /// torchvision `vgg16_bn`.
    Vgg16Bn,
    /// torchvision `alexnet`.
    Alexnet,
    /// EfficientNet-Lite0 with EfficientNet-PyTorch names.
    EfficientnetLite0,
    /// unitscope's plain CNN family (the demo models).
    PlainCnn,
}

/// Architecture options a model card may set; each has the architecture's own default.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchOptions {
    /// Padding of EfficientNet's strided convolutions (default `tf-same`).
    pub padding: Option<PaddingStyle>,
    /// Batch-norm epsilon of EfficientNet (default 1e-3).
    pub bn_eps: Option<f64>,
    /// Plain CNN: output channels of each stage.
    pub channels: Option<Vec<usize>>,
    /// Plain CNN: batch norm after each convolution (default true).
    pub batch_norm: Option<bool>,
}

impl ArchOptions {
    /// Checks the ranges a card's options may take.
    pub fn check(&self) -> Result<()> {
        if let Some(eps) = self.bn_eps {
            ensure!(
                eps.is_finite() && eps > 0.0 && eps <= 1.0,
                "options.bn_eps = {eps}: allowed above 0 and at most 1 (PyTorch's default is 1e-5)"
            );
        }
        if let Some(channels) = &self.channels {
            ensure!(
                (1..=8).contains(&channels.len()),
                "options.channels has {} stages: allowed 1 to 8",
                channels.len()
            );
            for &c in channels {
                ensure!(
                    (1..=4096).contains(&c),
                    "options.channels = {channels:?}: each stage takes 1 to 4096 channels"
                );
            }
        }
        Ok(())
    }
}

impl Architecture {
    /// The card's spelling, e.g. `resnet18`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
            Self::Vgg11 => "vgg11",
            Self::Vgg11Bn => "vgg11_bn",
            Self::Vgg16 => "vgg16",
            Self::Vgg16Bn => "vgg16_bn",
            Self::Alexnet => "alexnet",
            Self::EfficientnetLite0 => "efficientnet_lite0",
            Self::PlainCnn => "plain_cnn",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Architecture {
    /// Builds the network from `w`, which must hold exactly its parameters.
    pub fn build(
        self,
        w: &WeightPath,
        options: &ArchOptions,
        num_classes: usize,
    ) -> Result<Box<dyn Network>> {
        ensure!(num_classes > 0, "a model needs at least one class");
        let lite = LiteOptions {
            padding: options.padding.unwrap_or(PaddingStyle::TfSame),
            bn_eps: options.bn_eps.unwrap_or(1e-3),
        };
        Ok(match self {
            Self::Resnet18 => Box::new(ResNet::resnet18(w, num_classes)?),
            Self::Resnet34 => Box::new(ResNet::resnet34(w, num_classes)?),
            Self::Resnet50 => Box::new(ResNet::resnet50(w, num_classes)?),
            Self::Vgg11 => Box::new(vgg::vgg11(w, false, num_classes)?),
            Self::Vgg11Bn => Box::new(vgg::vgg11(w, true, num_classes)?),
            Self::Vgg16 => Box::new(vgg::vgg16(w, false, num_classes)?),
            Self::Vgg16Bn => Box::new(vgg::vgg16(w, true, num_classes)?),
            Self::Alexnet => Box::new(alexnet::alexnet(w, num_classes)?),
            Self::EfficientnetLite0 => Box::new(EfficientNetLite::lite0(w, lite, num_classes)?),
            Self::PlainCnn => {
                let channels = options.channels.as_deref().unwrap_or(&[32, 64, 128]);
                Box::new(PlainCnn::load(
                    w,
                    channels,
                    options.batch_norm.unwrap_or(true),
                    num_classes,
                )?)
            }
        })
    }
}
