//! Forward passes that record layers, and the one backward pass that answers them.
//!
//! A [`Probe`] names the layers to record and the [`BackwardRule`] every rectifier
//! follows. [`crate::model::Model::forward`] returns a [`Capture`]: the logits and the
//! recorded activations, all still on the autograd graph. [`Capture::backward`] then
//! gives the gradient of any scalar with respect to the input and to every recorded
//! layer at once.
//!
//! Candle's `GradStore` keeps gradients only for variables, so each recorded layer's
//! output gets a zero [`Var`] added to it; that variable's gradient is exactly the
//! gradient with respect to the activation.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use candle_core::{Tensor, Var};

use super::layer::{LayerInfo, LayerKind};
use super::ops::{self, Activation, Rectifier};

/// How gradients pass backwards through every ReLU (and ReLU6) application.
///
/// With `x` the rectifier's input and `g` the gradient arriving from above:
///
/// | rule | ReLU | ReLU6 |
/// |---|---|---|
/// | `Gradient` | `g·[x>0]` | `g·[0<x<6]` |
/// | `GuidedBackprop` (Springenberg et al. 2015) | `max(g,0)·[x>0]` | `max(g,0)·[0<x<6]` |
/// | `DeconvNet` (Zeiler & Fergus 2014) | `max(g,0)` | `max(g,0)` |
///
/// The rule applies at every application, not per module: ResNet runs one ReLU
/// module two or three times per block, and each run follows the rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackwardRule {
    /// The true gradient.
    #[default]
    Gradient,
    /// Guided backpropagation: only positive gradients through open units.
    GuidedBackprop,
    /// DeconvNet: only positive gradients, ignoring the forward mask.
    #[value(name = "deconvnet")]
    DeconvNet,
}

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

    /// Whether the input gradient is taken.
    pub fn input_gradient(&self) -> bool {
        !self.layers_only
    }

    /// The layers this probe records.
    pub fn layers(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(String::as_str)
    }

    /// The rule every rectifier follows.
    pub fn backward_rule(&self) -> BackwardRule {
        self.rule
    }
}

/// A layer output recorded on the graph, with the zero variable that collects its
/// gradient.
struct Recorded {
    name: String,
    value: Tensor,
    probe: Var,
}

/// The context an architecture's forward pass runs in: every inspectable layer's
/// output passes through [`Trace::tap`], every rectifier through [`Trace::relu`] or
/// [`Trace::relu6`].
pub struct Trace<'p> {
    probe: &'p Probe,
    recorded: Vec<Recorded>,
    /// Set when the pass only describes the layers (names, kinds, shapes).
    described: Option<Vec<LayerInfo>>,
}

impl<'p> Trace<'p> {
    pub(crate) fn new(probe: &'p Probe) -> Self {
        Self {
            probe,
            recorded: Vec::new(),
            described: None,
        }
    }

    pub(crate) fn describing(probe: &'p Probe) -> Self {
        Self {
            probe,
            recorded: Vec::new(),
            described: Some(Vec::new()),
        }
    }

    /// Marks `x` as the output of layer `name`; returns the tensor to continue with.
    pub fn tap(&mut self, name: &str, kind: LayerKind, x: Tensor) -> Result<Tensor> {
        if let Some(layers) = &mut self.described {
            let shape = x.dims()[1..].to_vec();
            let units = shape.first().copied().unwrap_or(1);
            layers.push(LayerInfo {
                name: name.to_owned(),
                kind,
                shape,
                units,
            });
        }
        if !self.probe.layers.contains(name) {
            return Ok(x);
        }
        let probe = Var::zeros(x.shape(), x.dtype(), x.device())?;
        let value = x.add(probe.as_tensor())?;
        self.recorded.push(Recorded {
            name: name.to_owned(),
            value: value.clone(),
            probe,
        });
        Ok(value)
    }

    /// Whether the output of layer `name` must exist as such: it is recorded, or the
    /// pass describes every layer. Fused implementations may skip it otherwise.
    pub fn needs(&self, name: &str) -> bool {
        self.described.is_some() || self.probe.layers.contains(name)
    }

    /// The layer implementations this pass uses.
    pub fn engine_path(&self) -> EnginePath {
        self.probe.path
    }

    /// ReLU following the probe's backward rule.
    pub fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.rectify(x, Rectifier::Relu)
    }

    /// ReLU6 following the probe's backward rule.
    pub fn relu6(&self, x: &Tensor) -> Result<Tensor> {
        self.rectify(x, Rectifier::Relu6)
    }

    /// The rectifier `kind` following the probe's backward rule.
    pub(crate) fn rectify(&self, x: &Tensor, kind: Rectifier) -> Result<Tensor> {
        Ok(ops::rectify(x, self.activation(kind))?)
    }

    /// The rectifier `kind` of `a + b` following the probe's backward rule.
    pub(crate) fn rectify_sum(&self, a: &Tensor, b: &Tensor, kind: Rectifier) -> Result<Tensor> {
        Ok(ops::rectify_sum(a, b, self.activation(kind))?)
    }

    /// The rectifier `kind` with the probe's backward rule, for an op to apply.
    pub(crate) fn activation(&self, kind: Rectifier) -> Activation {
        Activation {
            kind,
            rule: self.probe.rule,
        }
    }

    pub(crate) fn into_layers(self) -> Vec<LayerInfo> {
        self.described.unwrap_or_default()
    }
}

/// The result of a forward pass: logits and recorded activations, on the graph.
pub struct Capture {
    input: Tensor,
    /// The variable the input gradient is taken for, unless the probe is layers-only.
    input_var: Option<Var>,
    logits: Tensor,
    recorded: Vec<Recorded>,
}

impl Capture {
    /// The capture of a pass that ran on `input`, which is `input_var`'s tensor when
    /// the input gradient is taken.
    pub(crate) fn new(
        input: Tensor,
        input_var: Option<Var>,
        logits: Tensor,
        trace: Trace<'_>,
    ) -> Self {
        Self {
            input,
            input_var,
            logits,
            recorded: trace.recorded,
        }
    }

    /// The input the pass ran on.
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// The logits, `[batch, classes]`.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// A recorded layer's output, `[batch, ...]`.
    pub fn activation(&self, layer: &str) -> Result<&Tensor> {
        self.recorded
            .iter()
            .find(|r| r.name == layer)
            .map(|r| &r.value)
            .with_context(|| format!("layer `{layer}` was not recorded; add it to the probe"))
    }

    /// The names of the recorded layers, in forward order.
    pub fn recorded(&self) -> impl Iterator<Item = &str> {
        self.recorded.iter().map(|r| r.name.as_str())
    }

    /// Backpropagates the scalar `objective` (built from this capture's logits and
    /// activations) once, returning its gradient with respect to the input and to
    /// every recorded layer.
    pub fn backward(&self, objective: &Tensor) -> Result<Gradients> {
        let objective = match objective.rank() {
            0 => objective.clone(),
            _ if objective.elem_count() == 1 => objective.flatten_all()?.squeeze(0)?,
            _ => bail!(
                "the objective must be a scalar, got shape {:?}",
                objective.dims()
            ),
        };
        let grads = objective.backward()?;
        let grad_of = |v: &Var| -> Result<Tensor> {
            match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => Ok(v.as_tensor().zeros_like()?),
            }
        };
        let layers = self
            .recorded
            .iter()
            .map(|r| Ok((r.name.clone(), grad_of(&r.probe)?)))
            .collect::<Result<_>>()?;
        Ok(Gradients {
            input: self.input_var.as_ref().map(grad_of).transpose()?,
            layers,
        })
    }
}

/// Gradients of one objective with respect to the input and the recorded layers.
pub struct Gradients {
    input: Option<Tensor>,
    layers: BTreeMap<String, Tensor>,
}

impl Gradients {
    /// The gradient with respect to the input, shaped like it (an error if the probe
    /// was [`Probe::layers_only`]).
    pub fn input(&self) -> Result<&Tensor> {
        self.input
            .as_ref()
            .context("the input gradient was not taken: the probe is layers-only")
    }

    /// The gradient with respect to a recorded layer's output, shaped like it.
    pub fn layer(&self, name: &str) -> Result<&Tensor> {
        self.layers
            .get(name)
            .with_context(|| format!("layer `{name}` was not recorded; add it to the probe"))
    }
}
