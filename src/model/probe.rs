//! What a forward pass records, and how its rectifiers backpropagate.

use std::collections::BTreeSet;

use super::relevance::Relevance;
use super::rules::BackwardRule;

/// Which implementation of the layers a forward pass uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnginePath {
    /// unitscope's: batch norm folded into the preceding convolution where nothing
    /// records the convolution itself, and a convolution backward that computes only
    /// the gradients needed.
    #[default]
    Fast,
    /// Candle's own convolution and its backward, batch norm as a separate layer: the
    /// baseline the benchmarks compare against. Same results, within rounding.
    Reference,
}

/// What one forward pass records, and how its rectifiers backpropagate.
#[derive(Clone, Debug, Default)]
pub struct Probe {
    layers: BTreeSet<String>,
    rule: BackwardRule,
    path: EnginePath,
    /// Whether backward passes stop at the recorded layers (no input gradient).
    layers_only: bool,
    /// Whether the capture takes no backward pass at all.
    values_only: bool,
    /// Whether forward passes stop after the last recorded layer (no logits).
    stop_after_recorded: bool,
    /// Layers whose channels are rotated, with the rotation (`[C, C]`, orthogonal).
    rotations: Vec<(String, candle_core::Tensor)>,
    /// Whether backward passes carry relevance by these rules instead of gradients.
    relevance: Option<Relevance>,
}

impl Probe {
    /// A probe that records nothing and uses the plain gradient.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also records `layer` (a name from [`crate::model::Model::layers`]).
    pub fn record(mut self, layer: impl Into<String>) -> Self {
        self.layers.insert(layer.into());
        self
    }

    /// Uses `rule` at every rectifier.
    pub fn rule(mut self, rule: BackwardRule) -> Self {
        self.rule = rule;
        self
    }

    /// Makes backward passes carry relevance by `rules` (layer-wise relevance
    /// propagation, [`super::relevance`]) instead of gradients: what reaches the
    /// input is a relevance map. The pass seeds it with
    /// [`crate::model::Capture::relevance`]; rectifier rules do not apply.
    pub fn relevance(mut self, rules: Relevance) -> Self {
        self.relevance = Some(rules);
        self
    }

    /// Uses the layer implementations of `path`.
    pub fn path(mut self, path: EnginePath) -> Self {
        self.path = path;
        self
    }

    /// Takes gradients with respect to the recorded layers only: the backward pass
    /// stops at the lowest of them instead of running down to the input (a CAM needs
    /// nothing below its layer; on ResNet-18's `layer4` that skips most of the pass).
    pub fn layers_only(mut self) -> Self {
        self.layers_only = true;
        self
    }

    /// Records the layers' values only: the capture takes no backward pass, so a
    /// recorded layer is its output as computed, without the zero variable added to
    /// it that carries its gradient ([`crate::model::Capture`]). That variable and
    /// its addition cost a quarter of a forward pass of the demo model recording
    /// four layers (`unitscope bench dissect`). Implies [`Probe::layers_only`].
    pub fn values_only(mut self) -> Self {
        self.values_only = true;
        self.layers_only = true;
        self
    }

    /// Ends forward passes once every recorded layer is computed: the rest of the
    /// network does not run and the capture has no logits. A unit's objective on
    /// ResNet-18's `layer1` then skips three quarters of the forward pass.
    pub fn stop_after_recorded(mut self) -> Self {
        self.stop_after_recorded = true;
        self
    }

    /// Rotates the channels of `layer` by the orthogonal `[C, C]` matrix `rotation`
    /// where the pass records it, and back by its transpose before the network goes
    /// on: the recorded units are the rotated ones, the logits are unchanged (within
    /// rounding). Network Dissection's test of whether units, rather than the space
    /// they span, carry the concepts (Bau et al. 2017, section 3.2). Layers-only
    /// passes only.
    pub fn rotate(mut self, layer: impl Into<String>, rotation: candle_core::Tensor) -> Self {
        self.rotations.push((layer.into(), rotation));
        self
    }

    /// The rotation of `layer`'s channels, if any.
    pub fn rotation(&self, layer: &str) -> Option<&candle_core::Tensor> {
        self.rotations
            .iter()
            .find(|(l, _)| l == layer)
            .map(|(_, r)| r)
    }

    /// Whether the input gradient is taken.
    pub fn input_gradient(&self) -> bool {
        !self.layers_only
    }

    /// Whether the capture takes a backward pass ([`Probe::values_only`]).
    pub fn takes_gradients(&self) -> bool {
        !self.values_only
    }

    /// The layers this probe records.
    pub fn layers(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(String::as_str)
    }

    /// The rule every rectifier follows.
    pub fn backward_rule(&self) -> BackwardRule {
        self.rule
    }

    /// The relevance rules backward passes follow, if they carry relevance.
    pub fn relevance_rules(&self) -> Option<&Relevance> {
        self.relevance.as_ref()
    }
}

impl Probe {
    /// Whether the probe records `layer`.
    pub fn records(&self, layer: &str) -> bool {
        self.layers.contains(layer)
    }

    /// Whether passes end after the last recorded layer.
    pub fn stops_after_recorded(&self) -> bool {
        self.stop_after_recorded
    }

    /// The layer implementations it asks for.
    pub fn engine_path(&self) -> EnginePath {
        self.path
    }
}
