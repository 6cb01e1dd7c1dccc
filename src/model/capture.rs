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

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Tensor, TensorId, Var};

use super::layer::{LayerInfo, LayerKind};
use super::nn::{self, Conv2d};
use super::ops::{self, Activation, Held, Rectifier};
use super::tape::Tape;

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

/// A model's stem: the convolution that reads the input, an affine map of it (batch
/// norm folded in where the pass folds it). Methods whose maps are linear in the
/// input gradient sum gradients at the stem's output and carry only the sum back
/// through it ([`InputGradient`]); on ResNet-18 the stem's 7x7 convolution is an
/// eighth of a forward + backward pass.
#[derive(Clone)]
pub struct Stem {
    conv: Conv2d,
    /// The input's rows and columns.
    size: (usize, usize),
    path: EnginePath,
}

impl Stem {
    /// The stem's output for `x` (shaped like the pass's input, converted to the
    /// stem's element type), off the graph.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.conv.weight().dtype())?.detach();
        self.conv.apply(&x, self.path, None)
    }

    /// Whether `other` is the same convolution on inputs of the same size.
    pub fn same_as(&self, other: &Stem) -> bool {
        self.conv.weight().id() == other.conv.weight().id()
            && (self.size, self.path) == (other.size, other.path)
    }
}

/// What a forward pass does at its stem.
enum AtStem<'p> {
    /// Nothing special: gradients pass through it to the input.
    Pass,
    /// Starts the backward pass at the stem's output, which `source` gives for the
    /// stem and the input.
    Hold(&'p StemSource<'p>),
    /// Done: the stem's output is where the backward pass stops.
    Held(HeldStem),
}

/// A stem whose output gradient the backward pass leaves with `held`
/// ([`ops::hold`]).
struct HeldStem {
    stem: Stem,
    held: Held,
    /// The hold's output (the stem's, rectified), which a max pool may read
    /// ([`Trace::max_pool`]).
    rectified: TensorId,
}

/// What gives a held stem's output: [`Stem::apply`] of the input, or the same
/// computed another way (from outputs already at hand, the stem being affine).
pub type StemSource<'a> = dyn Fn(&Stem, &Tensor) -> Result<Tensor> + 'a;

/// The context an architecture's forward pass runs in: every inspectable layer's
/// output passes through [`Trace::tap`], every rectifier through [`Trace::relu`] or
/// [`Trace::relu6`].
pub struct Trace<'p> {
    probe: &'p Probe,
    recorded: Vec<Recorded>,
    /// Set when the pass only describes the layers (names, kinds, shapes).
    described: Option<Vec<LayerInfo>>,
    /// The pass's input, whose reader is the stem.
    input: Option<TensorId>,
    at_stem: AtStem<'p>,
    /// Where the trunk's ops are recorded, in a pass that holds its input gradient
    /// on the CPU and records no layers ([`super::tape`]).
    tape: Option<Tape>,
}

impl<'p> Trace<'p> {
    pub(crate) fn new(probe: &'p Probe) -> Self {
        Self {
            probe,
            recorded: Vec::new(),
            described: None,
            input: None,
            at_stem: AtStem::Pass,
            tape: None,
        }
    }

    pub(crate) fn describing(probe: &'p Probe) -> Self {
        Self {
            described: Some(Vec::new()),
            ..Self::new(probe)
        }
    }

    /// A pass on `input` that holds the input gradient at the stem's output, which
    /// `source` gives (on the fast path; the reference path holds nothing).
    pub(crate) fn holding(probe: &'p Probe, input: &Tensor, source: &'p StemSource<'p>) -> Self {
        let at_stem = match probe.path {
            EnginePath::Fast => AtStem::Hold(source),
            EnginePath::Reference => AtStem::Pass,
        };
        Self {
            input: Some(input.id()),
            at_stem,
            ..Self::new(probe)
        }
    }

    /// Whether `x` is the pass's input, still to be read by the stem.
    pub(crate) fn is_input(&self, x: &Tensor) -> bool {
        self.input == Some(x.id()) && matches!(self.at_stem, AtStem::Hold(_))
    }

    /// The stem `conv` applied to the input `x`, then `activation` if given: its
    /// output, from the pass's source, is where the backward pass stops.
    pub(crate) fn stem(
        &mut self,
        conv: &Conv2d,
        x: &Tensor,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        let path = self.engine_path();
        let AtStem::Hold(source) = self.at_stem else {
            return conv.apply(x, path, activation);
        };
        let stem = Stem {
            conv: conv.clone(),
            size: (x.dim(2)?, x.dim(3)?),
            path,
        };
        let value = source(&stem, x)?;
        let expected = conv.output_dims(x.dims())?;
        ensure!(
            value.dims() == expected,
            "the stem's output is given as {:?}, expected {expected:?}",
            value.dims()
        );
        // A pass that records no layers needs Candle's graph only for its head: the
        // trunk's backward runs from a tape.
        let (y, held) = if ops::on_cpu_kernels(&value) && self.probe.layers.is_empty() {
            let (y, held) = ops::hold_off_graph(&value, activation)?;
            self.tape = Some(Tape::new(&y));
            (y, held)
        } else {
            ops::hold(&value, activation)?
        };
        self.at_stem = AtStem::Held(HeldStem {
            stem,
            held,
            rectified: y.id(),
        });
        Ok(y)
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

    /// Records the op that computed `output` from `inputs` on the pass's tape, if
    /// they are the tape's: `backward` gives their gradients, in order, from the
    /// gradient at `output`. Every op of a trunk goes through here.
    pub(crate) fn record<F>(
        &mut self,
        inputs: &[&Tensor],
        output: &Tensor,
        backward: F,
    ) -> Result<()>
    where
        F: Fn(&Tensor) -> Result<Vec<Tensor>> + Send + Sync + 'static,
    {
        if let Some(tape) = &mut self.tape
            && tape.takes(inputs)?
        {
            tape.record(inputs, output, backward);
        }
        Ok(())
    }

    /// ReLU following the probe's backward rule.
    pub fn relu(&mut self, x: &Tensor) -> Result<Tensor> {
        self.rectify(x, Rectifier::Relu)
    }

    /// ReLU6 following the probe's backward rule.
    pub fn relu6(&mut self, x: &Tensor) -> Result<Tensor> {
        self.rectify(x, Rectifier::Relu6)
    }

    /// The rectifier `kind` following the probe's backward rule.
    pub(crate) fn rectify(&mut self, x: &Tensor, kind: Rectifier) -> Result<Tensor> {
        let activation = self.activation(kind);
        let y = ops::rectify(x, activation)?;
        let output = y.clone();
        self.record(&[x], &y, move |grad| {
            Ok(vec![ops::rectify_grad(&output, grad, activation)?])
        })?;
        Ok(y)
    }

    /// Max pooling of `x` (`kernel x kernel` windows every `stride`, `padding` of
    /// -inf on every side). Reading a held stem's rectified output off the tape,
    /// the pool takes over the hold's backward ([`ops::max_pool2d_held`]).
    pub(crate) fn max_pool(
        &mut self,
        x: &Tensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        let window = (kernel, stride, padding);
        if let AtStem::Held(h) = &self.at_stem
            && h.rectified == x.id()
            && self.tape.is_none()
        {
            return Ok(ops::max_pool2d_held(x, window, &h.held)?);
        }
        let y = ops::max_pool2d(x, kernel, stride, padding)?;
        let input = x.clone();
        self.record(&[x], &y, move |grad| {
            Ok(vec![ops::max_pool2d_grad(&input, grad, window)?])
        })?;
        Ok(y)
    }

    /// The rectifier `kind` of `a + b` following the probe's backward rule.
    pub(crate) fn rectify_sum(
        &mut self,
        a: &Tensor,
        b: &Tensor,
        kind: Rectifier,
    ) -> Result<Tensor> {
        let activation = self.activation(kind);
        let y = ops::rectify_sum(a, b, activation)?;
        let output = y.clone();
        self.record(&[a, b], &y, move |grad| {
            let grad = ops::rectify_grad(&output, grad, activation)?;
            Ok(vec![grad.clone(), grad])
        })?;
        Ok(y)
    }

    /// `a + b` (a residual sum without a rectifier).
    pub(crate) fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let y = (a + b)?;
        self.record(&[a, b], &y, |grad| Ok(vec![grad.clone(), grad.clone()]))?;
        Ok(y)
    }

    /// PyTorch's `AdaptiveAvgPool2d` of `x` ([`nn::adaptive_avg_pool2d`]): the end
    /// of the trunk, where a pass that records it on a tape puts `x` back on
    /// Candle's graph.
    pub(crate) fn adaptive_avg_pool2d(
        &mut self,
        x: &Tensor,
        size: (usize, usize),
    ) -> Result<Tensor> {
        let x = match (&mut self.tape, &self.at_stem) {
            (Some(tape), AtStem::Held(h)) if tape.takes(&[x])? => tape.end(x, &h.held)?,
            _ => x.clone(),
        };
        nn::adaptive_avg_pool2d(&x, size)
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
    /// Where the input gradient is held, if the pass held it at the stem.
    stem: Option<HeldStem>,
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
    ) -> Result<Self> {
        if let Some(tape) = &trace.tape {
            tape.check_ended()?;
        }
        let stem = match trace.at_stem {
            AtStem::Held(held) => Some(held),
            AtStem::Pass | AtStem::Hold(_) => None,
        };
        Ok(Self {
            input,
            input_var,
            stem,
            logits,
            recorded: trace.recorded,
        })
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
        let input = match (&self.stem, &self.input_var) {
            (Some(at_stem), input) => Some(InputGradient {
                held: Some((at_stem.held.take()?, at_stem.stem.clone())),
                direct: input
                    .as_ref()
                    .and_then(|v| grads.get(v.as_tensor()).cloned()),
            }),
            (None, Some(input)) => Some(InputGradient {
                held: None,
                direct: Some(grad_of(input)?),
            }),
            (None, None) => None,
        };
        Ok(Gradients { input, layers })
    }
}

/// The gradient with respect to the input, possibly still held at the stem's output
/// (by [`crate::model::Model::forward_held`]). The transpose of the stem is linear, so
/// any linear map that acts on samples alone (a weighting per sample, a sum of
/// samples) may be applied where the gradient is held ([`InputGradient::map_linear`],
/// [`InputGradient::zip_linear`]) and the result carried back once
/// ([`InputGradient::resolve`]).
#[derive(Clone)]
pub struct InputGradient {
    /// At the stem's output, still to be carried back through the stem.
    held: Option<(Tensor, Stem)>,
    /// At the input: all of it when nothing is held, else what reached the input
    /// around the stem (nothing, in this crate's architectures).
    direct: Option<Tensor>,
}

impl InputGradient {
    /// `f` applied to every part. `f` must be linear and act along the batch axis
    /// only, or the result means nothing.
    pub fn map_linear(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        let held = self
            .held
            .as_ref()
            .map(|(g, stem)| -> Result<_> { Ok((f(g)?, stem.clone())) });
        Ok(Self {
            held: held.transpose()?,
            direct: self.direct.as_ref().map(&f).transpose()?,
        })
    }

    /// `f` applied to the matching parts of two gradients of passes alike (both held
    /// at the same stem, or neither). `f` must be linear in both operands and act on
    /// samples alone, such as a sum or an `index_add`.
    pub fn zip_linear(
        &self,
        other: &Self,
        f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let zip = |a: Option<&Tensor>, b: Option<&Tensor>| -> Result<Option<Tensor>> {
            match (a, b) {
                (Some(a), Some(b)) => Ok(Some(f(a, b)?)),
                (None, None) => Ok(None),
                _ => bail!("gradients of unlike passes cannot be combined; resolve them first"),
            }
        };
        if let (Some((_, a)), Some((_, b))) = (&self.held, &other.held) {
            ensure!(
                a.same_as(b),
                "gradients held at different stems cannot be combined; resolve them first"
            );
        }
        let held = zip(
            self.held.as_ref().map(|(g, _)| g),
            other.held.as_ref().map(|(g, _)| g),
        )?;
        Ok(Self {
            held: held.zip(self.held.as_ref().map(|(_, stem)| stem.clone())),
            direct: zip(self.direct.as_ref(), other.direct.as_ref())?,
        })
    }

    /// The gradient at the input, shaped like it.
    pub fn resolve(&self) -> Result<Tensor> {
        let held = match &self.held {
            Some((g, stem)) => Some(stem.conv.transpose(g, stem.size)?),
            None => None,
        };
        Ok(match (held, &self.direct) {
            (Some(h), Some(d)) => (h + d)?,
            (Some(h), None) => h,
            (None, Some(d)) => d.clone(),
            (None, None) => bail!("an input gradient with no parts"),
        })
    }
}

/// Gradients of one objective with respect to the input and the recorded layers.
pub struct Gradients {
    input: Option<InputGradient>,
    layers: BTreeMap<String, Tensor>,
}

impl Gradients {
    /// The gradient with respect to the input, shaped like it (an error if the probe
    /// was [`Probe::layers_only`]).
    pub fn input(&self) -> Result<Tensor> {
        self.input_gradient()?.resolve()
    }

    /// The gradient with respect to the input, where the pass left it: held at the
    /// stem by [`crate::model::Model::forward_held`], else at the input.
    pub fn input_gradient(&self) -> Result<&InputGradient> {
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
