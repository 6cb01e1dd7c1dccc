//! The architectures unitscope can inspect, written out layer by layer so that every
//! layer can be recorded and every rectifier can follow a backward rule.

mod alexnet;
mod char_rnn;
mod efficientnet_lite;
mod entry;
mod plain_cnn;
mod resnet;
mod sequential;
mod vgg;

use anyhow::{Context, Result, ensure};

pub use char_rnn::{Cell, CharRnn, Sizes};
pub use efficientnet_lite::{EfficientNetLite, LiteOptions};
pub use entry::{ArchOptions, Architecture, Entry};
pub use plain_cnn::PlainCnn;
pub use resnet::ResNet;
pub use sequential::FeaturesClassifier;

use super::trace::Network;
use super::weights::WeightPath;

/// Every architecture file's entry.
const ENTRIES: &[&Entry] = &[
    &resnet::ENTRY,
    &vgg::ENTRY,
    &alexnet::ENTRY,
    &efficientnet_lite::ENTRY,
    &plain_cnn::ENTRY,
    &char_rnn::ENTRY,
];

/// The entry that builds `architecture`.
fn entry(architecture: Architecture) -> Result<&'static Entry> {
    ENTRIES
        .iter()
        .copied()
        .find(|e| e.architectures.contains(&architecture))
        .with_context(|| format!("internal: no entry builds `{architecture}`"))
}

/// Checks `options` for `architecture`: every option set is one it reads, and in
/// range.
pub fn check_options(architecture: Architecture, options: &ArchOptions) -> Result<()> {
    let known = entry(architecture)?.options;
    for key in options.given() {
        ensure!(
            known.iter().any(|(name, _)| *name == key),
            "options.{key}: {architecture} takes no option `{key}` (its options: {})",
            match known {
                [] => "none".to_owned(),
                known => known.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            }
        );
    }
    options.check_ranges()
}

impl Architecture {
    /// Builds the network from `w`, which must hold exactly its parameters, after
    /// checking `options` for it ([`check_options`]).
    pub fn build(
        self,
        w: &WeightPath,
        options: &ArchOptions,
        num_classes: usize,
    ) -> Result<Box<dyn Network>> {
        ensure!(num_classes > 0, "a model needs at least one class");
        check_options(self, options)?;
        (entry(self)?.build)(self, w, options, num_classes)
    }
}
