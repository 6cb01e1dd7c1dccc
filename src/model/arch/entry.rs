//! What the architecture registry is made of: the names a card can give, the
//! options a card can set, and the entry each architecture file declares.

use anyhow::{Result, ensure};
use serde::Deserialize;

use crate::model::nn::PaddingStyle;
use crate::model::trace::Network;
use crate::model::weights::WeightPath;

/// What an architecture file declares: the card names it builds, the `[options]`
/// it reads, and how it is built.
pub struct Entry {
    /// The architectures it builds.
    pub architectures: &'static [Architecture],
    /// The options it reads, with a line of help (and its default) each.
    pub options: &'static [(&'static str, &'static str)],
    /// Builds one of `architectures` from `w` (which must hold exactly its
    /// parameters) with a `num_classes`-way classifier.
    pub build: Build,
}

/// How an [`Entry`]'s networks are built.
pub type Build = fn(Architecture, &WeightPath, &ArchOptions, usize) -> Result<Box<dyn Network>>;

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
    /// A character-level LSTM language model.
    CharLstm,
    /// A character-level GRU language model.
    CharGru,
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
    /// Character models: embedding dimensions (default 32).
    pub embedding: Option<usize>,
    /// Character models: units per recurrent layer (default 128).
    pub hidden: Option<usize>,
    /// Character models: recurrent layers (default 1).
    pub layers: Option<usize>,
}

impl ArchOptions {
    /// The options set, by their card names.
    pub fn given(&self) -> Vec<&'static str> {
        let set = [
            ("padding", self.padding.is_some()),
            ("bn_eps", self.bn_eps.is_some()),
            ("channels", self.channels.is_some()),
            ("batch_norm", self.batch_norm.is_some()),
            ("embedding", self.embedding.is_some()),
            ("hidden", self.hidden.is_some()),
            ("layers", self.layers.is_some()),
        ];
        set.into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| k)
            .collect()
    }

    /// Checks the ranges a card's options may take.
    pub fn check_ranges(&self) -> Result<()> {
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
        for (key, value, most) in [
            ("embedding", self.embedding, 4096),
            ("hidden", self.hidden, 4096),
            ("layers", self.layers, 8),
        ] {
            if let Some(v) = value {
                ensure!(
                    (1..=most).contains(&v),
                    "options.{key} = {v}: allowed 1 to {most}"
                );
            }
        }
        Ok(())
    }
}

impl Architecture {
    /// Whether it models sequences, predicting at every step (the character
    /// models): trained at every step, read as text.
    pub fn is_sequence(self) -> bool {
        matches!(self, Self::CharLstm | Self::CharGru)
    }

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
            Self::CharLstm => "char_lstm",
            Self::CharGru => "char_gru",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
