//! The context an architecture's forward pass runs in, and the contract between
//! them ([`Network`]): a network is a trunk and a head.
//!
//! Every inspectable layer's output passes through [`Trace::tap`], every rectifier
//! through [`Trace::relu`] or [`Trace::relu6`], every convolution through
//! [`Trace::conv`]. That is how a probe records layers and sets every rectifier's
//! backward rule, and how two speed-ups stay invisible to architectures:
//!
//! - a pass that holds its input gradient at the stem ([`Trace::stem`]) stops the
//!   backward pass at the output of the convolution that reads the input;
//! - on the CPU, such a pass keeps its trunk on a tape of its own ([`super::tape`])
//!   rather than Candle's graph; the recorded layers go onto the graph as they are
//!   tapped, and the trunk's output before the head runs ([`Trace::run`]).
//!
//! The second is why the split is structural: the trunk's ops must all go through
//! the trace (the tape refuses to lose a gradient, with an error naming the op), and
//! the head reads nothing of the trunk but its output.

use std::collections::HashMap;

use anyhow::{Result, ensure};
use candle_core::{Tensor, TensorId, Var};

use super::field::{Axis, ReceptiveField};

use super::layer::{LayerInfo, LayerKind};
use super::nn::{self, Conv2d, Linear};
use super::ops::{self, Held};
use super::probe::{EnginePath, Probe};
use super::propagate::{self, Affine};
use super::relevance::{LayerRole, Relevance};
use super::rules::{Activation, Rectifier};
use super::tape::{Tape, Taped};

/// An architecture's forward pass, written against a [`Trace`] so that every layer
/// can be recorded and every rectifier follows the probe's rule.
pub trait Network: Send + Sync {
    /// The trunk: `[N, 3, H, W]` inputs to its last feature maps. Every op here goes
    /// through the trace ([`Trace::conv`], [`Trace::relu`], [`Trace::max_pool`],
    /// [`Trace::add`], ... or [`Trace::record`] for an op of your own).
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor>;

    /// The head: the trunk's output to `[N, classes]` logits (pooling, classifier).
    /// It may use Candle's ops freely, but reads nothing of the trunk but its output.
    fn head(&self, features: &Tensor, t: &mut Trace) -> Result<Tensor>;

    /// A sequence model's logits at every step of `x`, `[N, classes, T]` (step `t`
    /// predicting the symbol after it), which training fits all at once; `None` for
    /// a model that predicts once per input.
    fn every_step(&self, _x: &Tensor, _t: &mut Trace) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// `x` (`[N, C, ...]`) with its channels mixed by `rotation` (`[C, C]`): channel
/// `i` of the result is `sum_j rotation[i, j] x[:, j]`.
fn rotate_channels(x: &Tensor, rotation: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    ensure!(
        dims.len() >= 2 && rotation.dims() == [dims[1], dims[1]],
        "a rotation of shape {:?} for a layer of shape {dims:?}",
        rotation.dims()
    );
    let flat = x.reshape((dims[0], dims[1], ()))?;
    let rotation = rotation.to_dtype(x.dtype())?;
    Ok(rotation.broadcast_matmul(&flat)?.reshape(dims)?)
}

/// `y`, the value of the sum `a + b` (rectified or not), in a relevance pass: each
/// term gets relevance in proportion to its contribution (Zennit's `Norm` on its
/// `Sum`), the rectifier passing it on.
fn relevant_sum(a: &Tensor, b: &Tensor, y: Tensor) -> Result<Tensor> {
    let (ta, tb) = (a.detach(), b.detach());
    Ok(ops::with_step(a, b, y, move |r| {
        let (ra, rb) = propagate::sum_relevance(&ta, &tb, r)?;
        Ok((Some(ra), Some(rb)))
    })?)
}

/// Why a pass stopped early: every layer its probe records is computed
/// ([`Probe::stop_after_recorded`]). Raised by [`Trace::tap`] through the
/// architecture's `?`s and caught in [`Trace::run`], so that architectures need not
/// know.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the pass stopped after its last recorded layer")
    }
}

impl std::error::Error for Stopped {}

/// A layer output recorded on the graph, and where its gradient is collected.
pub(crate) struct Recorded {
    pub(crate) name: String,
    pub(crate) value: Tensor,
    /// `None` in a pass that records values only.
    pub(crate) gradient: Option<LayerGradient>,
}

/// Where a recorded layer's gradient is found after a backward pass.
pub(crate) enum LayerGradient {
    /// With a zero variable added to the layer's output: Candle's `GradStore` keeps
    /// gradients only for variables.
    Probe(Var),
    /// On the tape, at this value ([`Taped::run`]).
    Taped(TensorId),
}

/// A model's stem: the convolution that reads the input, an affine map of it (batch
/// norm folded in where the pass folds it). Methods whose maps are linear in the
/// input gradient sum gradients at the stem's output and carry only the sum back
/// through it ([`super::capture::InputGradient`]); on ResNet-18 the stem's 7x7
/// convolution is an eighth of a forward + backward pass.
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

    /// The gradient at the input, given `grad` at the stem's output: the transpose of
    /// the convolution.
    pub(crate) fn transpose(&self, grad: &Tensor) -> Result<Tensor> {
        self.conv.transpose(grad, self.size)
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
pub(crate) struct HeldStem {
    pub(crate) stem: Stem,
    pub(crate) held: Held,
    /// The hold's output (the stem's, rectified), which a max pool may read
    /// ([`Trace::max_pool`]).
    rectified: TensorId,
    /// The trunk, once recorded on a tape: its backward pass still to run.
    pub(crate) taped: Option<Taped>,
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
    /// In a describing pass, the receptive field of each trunk tensor so far.
    fields: HashMap<TensorId, ReceptiveField>,
    /// The pass's input, whose reader is the stem.
    input: Option<TensorId>,
    at_stem: AtStem<'p>,
    /// Where the trunk's ops are recorded, in a pass that holds its input gradient
    /// on the CPU ([`super::tape`]).
    tape: Option<Tape>,
}

impl<'p> Trace<'p> {
    pub(crate) fn new(probe: &'p Probe) -> Self {
        Self {
            probe,
            recorded: Vec::new(),
            described: None,
            fields: HashMap::new(),
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
        // A relevance pass's first layer follows a rule of its own: nothing is held.
        let at_stem = match (probe.engine_path(), probe.relevance_rules()) {
            (EnginePath::Fast, None) => AtStem::Hold(source),
            _ => AtStem::Pass,
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
        // The trunk's backward runs from a tape; Candle's graph holds only what
        // leaves the trunk.
        let (y, held) = if ops::on_cpu_kernels(&value) {
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
            taped: None,
        });
        Ok(y)
    }

    /// Marks `x` as the output of layer `name`; returns the tensor to continue with.
    /// In a pass that stops after its recorded layers, the last of them ends the
    /// pass here: an error that [`Trace::run`] turns into the pass's end, which the
    /// architecture passes on with `?` like any other.
    pub fn tap(&mut self, name: &str, kind: LayerKind, x: Tensor) -> Result<Tensor> {
        let x = self.record_layer(name, kind, x)?;
        if self.probe.stops_after_recorded()
            && self.described.is_none()
            && self.recorded.len() == self.probe.layers().count()
        {
            return Err(Stopped.into());
        }
        Ok(x)
    }

    fn record_layer(&mut self, name: &str, kind: LayerKind, x: Tensor) -> Result<Tensor> {
        if let Some(layers) = &mut self.described {
            let shape = x.dims()[1..].to_vec();
            let units = shape.first().copied().unwrap_or(1);
            layers.push(LayerInfo {
                name: name.to_owned(),
                kind,
                field: self
                    .fields
                    .get(&x.id())
                    .copied()
                    .filter(|_| shape.len() == 3),
                shape,
                units,
            });
        }
        if !self.probe.records(name) {
            return Ok(x);
        }
        if let Some(rotation) = self.probe.rotation(name) {
            ensure!(
                !self.probe.input_gradient(),
                "a rotated layer takes a layers-only probe (no input gradient)"
            );
            let rotated = rotate_channels(&x, rotation)?;
            let back = rotate_channels(&rotated, &rotation.t()?)?;
            self.keep(name, rotated)?;
            return Ok(back);
        }
        // A layer of a taped trunk leaves the tape for its readers on the graph; the
        // trunk goes on from it on the tape.
        if let (Some(tape), AtStem::Held(h)) = (&mut self.tape, &self.at_stem)
            && tape.takes(&[&x])?
        {
            self.recorded.push(Recorded {
                name: name.to_owned(),
                value: tape.exit(&x, &h.held)?,
                gradient: Some(LayerGradient::Taped(x.id())),
            });
            return Ok(x);
        }
        self.keep(name, x)
    }

    /// Records `x` as the value of layer `name`, and returns it as the pass goes on
    /// with it: plus a zero variable whose gradient will be the layer's, unless the
    /// pass records values only.
    fn keep(&mut self, name: &str, x: Tensor) -> Result<Tensor> {
        let (value, gradient) = match self.probe.takes_gradients() {
            true => {
                let probe = Var::zeros(x.shape(), x.dtype(), x.device())?;
                (x.add(probe.as_tensor())?, Some(LayerGradient::Probe(probe)))
            }
            false => (x, None),
        };
        self.recorded.push(Recorded {
            name: name.to_owned(),
            value: value.clone(),
            gradient,
        });
        Ok(value)
    }

    /// Whether the output of layer `name` must exist as such: it is recorded, or the
    /// pass describes every layer. Fused implementations may skip it otherwise.
    pub fn needs(&self, name: &str) -> bool {
        self.described.is_some() || self.probe.records(name)
    }

    /// The layer implementations this pass uses.
    pub fn engine_path(&self) -> EnginePath {
        self.probe.engine_path()
    }

    /// Records the op that computed `output` from `inputs` on the pass's tape, if
    /// they are the tape's: `backward` gives their gradients, in order, from the
    /// gradient at `output`. Every op of a trunk goes through here.
    pub fn record<F>(&mut self, inputs: &[&Tensor], output: &Tensor, backward: F) -> Result<()>
    where
        F: Fn(&Tensor) -> Result<Vec<Tensor>> + Send + Sync + 'static,
    {
        if self.described.is_some() && !self.fields.contains_key(&output.id()) {
            // An op that keeps positions: an element-wise map, or a sum of branches.
            let field = inputs
                .iter()
                .filter_map(|x| self.fields.get(&x.id()).copied())
                .reduce(ReceptiveField::union);
            if let Some(field) = field {
                self.fields.insert(output.id(), field);
            }
        }
        if let Some(tape) = &mut self.tape
            && tape.takes(inputs)?
        {
            tape.record(inputs, output, Box::new(backward));
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
    pub fn rectify(&mut self, x: &Tensor, kind: Rectifier) -> Result<Tensor> {
        let activation = self.activation(kind);
        if self.probe.relevance_rules().is_some() {
            // Relevance passes through rectifiers (Zennit's `Pass`).
            let y = ops::rectify(&x.detach(), activation)?;
            return Ok(ops::with_step(x, x, y, |r| Ok((Some(r.clone()), None)))?);
        }
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
    pub fn max_pool(
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
        let axis = Axis {
            kernel,
            stride,
            padding,
        };
        self.window_op(x, &y, (axis, axis));
        let input = x.clone();
        self.record(&[x], &y, move |grad| {
            Ok(vec![ops::max_pool2d_grad(&input, grad, window)?])
        })?;
        Ok(y)
    }

    /// The rectifier `kind` of `a + b` following the probe's backward rule.
    pub fn rectify_sum(&mut self, a: &Tensor, b: &Tensor, kind: Rectifier) -> Result<Tensor> {
        let activation = self.activation(kind);
        if self.probe.relevance_rules().is_some() {
            let y = ops::rectify(&(a.detach() + b.detach())?, activation)?;
            return relevant_sum(a, b, y);
        }
        let y = ops::rectify_sum(a, b, activation)?;
        let output = y.clone();
        self.record(&[a, b], &y, move |grad| {
            let grad = ops::rectify_grad(&output, grad, activation)?;
            Ok(vec![grad.clone(), grad])
        })?;
        Ok(y)
    }

    /// `a + b` (a residual sum without a rectifier).
    pub fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if self.probe.relevance_rules().is_some() {
            return relevant_sum(a, b, (a.detach() + b.detach())?);
        }
        let y = (a + b)?;
        self.record(&[a, b], &y, |grad| Ok(vec![grad.clone(), grad.clone()]))?;
        Ok(y)
    }

    /// A 2-D convolution of `x` (one group or depthwise), then `activation` if
    /// given (on the fast path, as part of the convolution's op). The convolution
    /// that reads the pass's input is its stem, which the trace may stand in for
    /// ([`Trace::stem`]).
    pub fn conv(
        &mut self,
        conv: &Conv2d,
        x: &Tensor,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        if let Some(rules) = self.probe.relevance_rules() {
            return self.relevant(rules, conv, LayerRole::Conv, x, activation);
        }
        if conv.groups() == 1 && self.is_input(x) {
            return self.stem(conv, x, activation);
        }
        let y = conv.apply(x, self.engine_path(), activation)?;
        let size = (x.dim(2)?, x.dim(3)?);
        self.window_op(x, &y, conv.axes(size)?);
        let (conv, output) = (conv.clone(), y.clone());
        self.record(&[x], &y, move |grad| {
            let grad = match activation {
                Some(a) => ops::rectify_grad(&output, grad, a)?,
                None => grad.clone(),
            };
            Ok(vec![conv.transpose(&grad, size)?])
        })?;
        Ok(y)
    }

    /// A fully connected layer (`[N, in]` to `[N, out]`); heads run theirs here so
    /// that relevance passes apply its rule.
    pub fn linear(&mut self, layer: &Linear, x: &Tensor) -> Result<Tensor> {
        match self.probe.relevance_rules() {
            Some(rules) => self.relevant(rules, layer, LayerRole::Dense, x, None),
            None => layer.forward(x),
        }
    }

    /// PyTorch's `AdaptiveAvgPool2d` to a `grid` of cells ([`nn::adaptive_avg_pool2d`]);
    /// heads pool here so that relevance passes share it in proportion to the inputs.
    pub fn avg_pool(&mut self, x: &Tensor, grid: (usize, usize)) -> Result<Tensor> {
        if self.probe.relevance_rules().is_none() {
            return nn::adaptive_avg_pool2d(x, grid);
        }
        let input = x.detach();
        let z = nn::adaptive_avg_pool2d(&input, grid)?.contiguous()?;
        let value = z.clone();
        Ok(ops::with_step(x, x, value, move |r| {
            Ok((Some(propagate::pool_relevance(&input, &z, r, grid)?), None))
        })?)
    }

    /// `layer` on `x`, then `activation`, in a relevance pass: the layer's rule gives
    /// its input's relevance (the first layer's rule for the one reading the input),
    /// and the rectifier passes it on.
    fn relevant<L: Affine + Clone>(
        &self,
        rules: &Relevance,
        layer: &L,
        role: LayerRole,
        x: &Tensor,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        let rule = rules.rule(role, self.input == Some(x.id()));
        let input = x.detach();
        let z = layer.forward(&input)?;
        let y = match activation {
            Some(a) => ops::rectify(&z, a)?,
            None => z.clone(),
        };
        let (layer, without_bias) = (layer.clone(), rules.without_bias);
        Ok(ops::with_step(x, x, y, move |r| {
            let r_in = propagate::layer_relevance(&rule, &layer, &input, &z, r, without_bias)?;
            Ok((Some(r_in), None))
        })?)
    }

    /// Notes, in a describing pass, that `y` is a window op of `geometry` on `x`.
    fn window_op(&mut self, x: &Tensor, y: &Tensor, geometry: (Axis, Axis)) {
        if self.described.is_some()
            && let Some(field) = self.fields.get(&x.id())
        {
            self.fields.insert(y.id(), field.then(geometry));
        }
    }

    /// Runs `network` on `x`: its trunk, then its head, giving the logits, or
    /// `None` where the pass stopped after its recorded layers. Where the trunk was
    /// recorded on a tape, its output goes back onto Candle's graph in between.
    pub(crate) fn run(&mut self, network: &dyn Network, x: &Tensor) -> Result<Option<Tensor>> {
        if self.described.is_some() {
            self.fields.insert(x.id(), ReceptiveField::INPUT);
        }
        self.input.get_or_insert(x.id());
        let logits = self.trunk_and_head(network, x);
        if let (Some(tape), AtStem::Held(h)) = (&mut self.tape, &mut self.at_stem)
            && h.taped.is_none()
        {
            h.taped = Some(tape.finish()?);
        }
        match logits {
            Ok(logits) => Ok(Some(logits)),
            Err(e) if e.is::<Stopped>() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn trunk_and_head(&mut self, network: &dyn Network, x: &Tensor) -> Result<Tensor> {
        let features = network.trunk(x, self)?;
        let features = match (&mut self.tape, &mut self.at_stem) {
            (Some(tape), AtStem::Held(h)) => {
                let (features, taped) = tape.end(&features, &h.held)?;
                h.taped = Some(taped);
                features
            }
            _ => features,
        };
        network.head(&features, self)
    }

    /// The rectifier `kind` with the probe's backward rule, for an op to apply.
    pub fn activation(&self, kind: Rectifier) -> Activation {
        Activation {
            kind,
            rule: self.probe.backward_rule(),
        }
    }

    pub(crate) fn into_layers(self) -> Vec<LayerInfo> {
        self.described.unwrap_or_default()
    }

    /// Whether the pass can be backpropagated ([`Probe::takes_gradients`]).
    pub(crate) fn takes_gradients(&self) -> bool {
        self.probe.takes_gradients()
    }

    /// What a finished pass leaves for its capture: the recorded layers, and the
    /// held stem if the pass held its input gradient there.
    pub(crate) fn into_parts(self) -> (Vec<Recorded>, Option<HeldStem>) {
        let stem = match self.at_stem {
            AtStem::Held(held) => Some(held),
            AtStem::Pass | AtStem::Hold(_) => None,
        };
        (self.recorded, stem)
    }
}
