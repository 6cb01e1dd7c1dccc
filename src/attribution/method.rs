//! The shape every attribution method has ([`Method`]: a batch of inputs and one
//! target each in, one map each out), the maps it returns ([`Attribution`]), and
//! the passes methods share: one forward + backward of every sample's target, the
//! input gradient held at the stem, target values without a graph, batches.

use anyhow::{Result, ensure};
use candle_core::Tensor;

use super::superpixels::Segmentation;
use super::target::Target;
use crate::model::{Capture, Gradients, InputGradient, Model, Objective, Probe, StemSource};

/// A batch of attribution maps, raw (unnormalized).
#[derive(Clone, Debug)]
pub enum Attribution {
    /// One value per input element, `[N, C, H, W]`: the gradient family, integrated
    /// gradients, occlusion.
    Input(Tensor),
    /// One value per position of each named layer, `[N, h, w]` at that layer's
    /// resolution, rectified but not normalized: the CAM family.
    Layers(Vec<(String, Tensor)>),
}

impl Attribution {
    /// Every tensor of the batch, in order (one for [`Attribution::Input`]).
    pub fn tensors(&self) -> Vec<&Tensor> {
        match self {
            Self::Input(t) => vec![t],
            Self::Layers(layers) => layers.iter().map(|(_, t)| t).collect(),
        }
    }

    /// The same kind of batch with each tensor replaced by `f(index, tensor)`.
    pub(super) fn map(&self, mut f: impl FnMut(usize, &Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(match self {
            Self::Input(t) => Self::Input(f(0, t)?),
            Self::Layers(layers) => Self::Layers(
                layers
                    .iter()
                    .enumerate()
                    .map(|(i, (name, t))| Ok((name.clone(), f(i, t)?)))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// Samples `start .. start + len` of the batch.
    pub fn narrow(&self, start: usize, len: usize) -> Result<Self> {
        self.map(|_, t| Ok(t.narrow(0, start, len)?))
    }

    /// The smallest and largest raw value over the whole batch, before any
    /// normalization: what a normalized picture no longer shows (a unit's CAM with
    /// raw maximum 0.06 is drawn as bright as a class's with 0.5).
    pub fn raw_range(&self) -> Result<(f64, f64)> {
        let mut range = (f64::INFINITY, f64::NEG_INFINITY);
        for t in self.tensors() {
            let t = t.to_dtype(candle_core::DType::F64)?;
            range.0 = range.0.min(t.min_all()?.to_scalar::<f64>()?);
            range.1 = range.1.max(t.max_all()?.to_scalar::<f64>()?);
        }
        Ok(range)
    }
}

/// What a method says about one of its maps besides the values, where it has
/// something to say.
#[derive(Clone, Debug, Default)]
pub struct Notes {
    /// LIME: the R² of its weighted linear fit, how well the surrogate follows the
    /// model on the perturbed inputs (low: read the map with care).
    pub r2: Option<f64>,
    /// LRP: the map's sum over the target's value (1: the relevance was conserved;
    /// biases and stabilizers absorb the rest).
    pub conservation: Option<f64>,
    /// LIME, KernelSHAP: the superpixels the map is painted on.
    pub segmentation: Option<Segmentation>,
}

/// An attribution method.
pub trait Method: Send + Sync {
    /// The method and its parameters, e.g. `smoothgrad(saliency, n=50, level=0.15)`.
    fn name(&self) -> String;

    /// Model passes per input of `size` (rows, columns): forward + backward pairs
    /// and forward-only passes (occlusion's count depends on the size).
    fn passes(&self, size: (usize, usize)) -> Passes;

    /// The maps of `inputs` (`[N, 3, H, W]`, preprocessed), sample `i` explaining
    /// `targets[i]`.
    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution>;

    /// [`Method::attribute`] with what the method says about each map ([`Notes`]);
    /// by default nothing.
    fn attribute_noted(
        &self,
        model: &Model,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<(Attribution, Vec<Notes>)> {
        let maps = self.attribute(model, inputs, targets)?;
        Ok((maps, vec![Notes::default(); targets.len()]))
    }

    /// For a method whose map is the input gradient itself, that gradient, held at
    /// the model's stem where it has one: a wrapper that averages maps sums these
    /// and carries only the sum back through the stem. `None` (the default, for
    /// every other method) computes nothing.
    fn input_gradient(
        &self,
        _model: &Model,
        _inputs: &Tensor,
        _targets: &[Target],
    ) -> Result<Option<InputGradient>> {
        Ok(None)
    }
}

/// What one input costs a method, in model passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Passes {
    /// Forward passes followed by a backward pass.
    pub backward: usize,
    /// Forward passes alone.
    pub forward: usize,
}

/// `method`'s maps of `inputs` for each entry of `targets` (each a target per input,
/// as [`TargetSpec::resolve`] gives them): one map per entry, all computed as one
/// batch of `targets.len() x N` inputs.
pub fn attribute(
    method: &dyn Method,
    model: &Model,
    inputs: &Tensor,
    targets: &[Vec<Target>],
) -> Result<Vec<Attribution>> {
    let noted = attribute_noted(method, model, inputs, targets)?;
    Ok(noted.into_iter().map(|(maps, _)| maps).collect())
}

/// [`attribute`] with the method's notes on each map.
pub fn attribute_noted(
    method: &dyn Method,
    model: &Model,
    inputs: &Tensor,
    targets: &[Vec<Target>],
) -> Result<Vec<(Attribution, Vec<Notes>)>> {
    ensure!(!targets.is_empty(), "no targets to attribute");
    let n = inputs.dim(0)?;
    ensure!(
        targets.iter().all(|t| t.len() == n),
        "each target list needs one target per input ({n})"
    );
    let batch = Tensor::cat(&vec![inputs; targets.len()], 0)?;
    let (maps, notes) = method.attribute_noted(model, &batch, &targets.concat())?;
    ensure!(
        notes.len() == n * targets.len(),
        "`{}` gave notes on {} maps of {}",
        method.name(),
        notes.len(),
        n * targets.len()
    );
    (0..targets.len())
        .map(|i| Ok((maps.narrow(i * n, n)?, notes[i * n..(i + 1) * n].to_vec())))
        .collect()
}

/// The layer CAM methods use unless told: the last one with feature maps (more than
/// one position) that is not a pooling layer, e.g. ResNet's `layer4`.
pub fn default_cam_layer(model: &Model) -> Result<String> {
    use crate::model::LayerKind;
    model
        .layers()?
        .iter()
        .rev()
        .find(|l| {
            l.shape.len() == 3
                && l.shape[1] * l.shape[2] > 1
                && !matches!(l.kind, LayerKind::MaxPool | LayerKind::AvgPool)
        })
        .map(|l| l.name.clone())
        .ok_or_else(|| anyhow::anyhow!("the model has no layer with feature maps for a CAM"))
}

/// One forward pass of `inputs` recording what `probe` and the targets need, and one
/// backward pass of every sample's target.
pub(super) fn backward(
    model: &Model,
    inputs: &Tensor,
    targets: &[Target],
    probe: Probe,
) -> Result<(Capture, Gradients)> {
    check_targets(inputs, targets)?;
    let capture = model.forward(inputs, &recording_targets(probe, targets))?;
    let grads = capture.backward(&capture.objective(&Target::batch_objective(targets))?)?;
    Ok((capture, grads))
}

/// Every sample's input gradient, held at the model's stem, whose output `source`
/// gives (see [`Model::forward_held`]); sample `i`'s objective scaled by
/// `weights[i]` if given.
pub(super) fn held_gradient(
    model: &Model,
    (inputs, targets): (&Tensor, &[Target]),
    weights: Option<&[f64]>,
    probe: Probe,
    source: &StemSource,
) -> Result<InputGradient> {
    check_targets(inputs, targets)?;
    let capture = model.forward_held(inputs, &recording_targets(probe, targets), source)?;
    let objective = match weights {
        None => Target::batch_objective(targets),
        Some(weights) => Objective::PerSample(
            targets
                .iter()
                .zip(weights)
                .map(|(t, &w)| Objective::Weighted(vec![(w, t.objective())]))
                .collect(),
        ),
    };
    let grads = capture.backward(&capture.objective(&objective)?)?;
    Ok(grads.input_gradient()?.clone())
}

/// Each sample's target value, `[N]`, without keeping a graph. (A layers-only
/// probe: the input is a constant, so nothing is tracked below a recorded layer, and
/// nothing at all for class targets.)
pub(super) fn target_values(model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Tensor> {
    check_targets(inputs, targets)?;
    let probe = recording_targets(Probe::new().layers_only(), targets);
    let capture = model.forward(inputs, &probe)?;
    Ok(capture
        .per_sample(&Target::batch_objective(targets))?
        .detach())
}

/// `probe`, also recording the layers of unit targets.
pub(super) fn recording_targets(probe: Probe, targets: &[Target]) -> Probe {
    targets
        .iter()
        .filter_map(Target::layer)
        .fold(probe, |p, layer| p.record(layer))
}

pub(super) fn check_targets(inputs: &Tensor, targets: &[Target]) -> Result<()> {
    let n = inputs.dim(0)?;
    ensure!(
        targets.len() == n,
        "{} targets for a batch of {n} inputs",
        targets.len()
    );
    Ok(())
}

/// `t: [len, ...]`, one entry per sample of a batch whose sample `i` belongs to input
/// `index[i]`, summed per input: `[n, ...]`.
pub(super) fn onto_inputs(t: &Tensor, index: &Tensor, n: usize) -> Result<Tensor> {
    let zeros = Tensor::zeros([&[n], &t.dims()[1..]].concat(), t.dtype(), t.device())?;
    Ok(zeros.index_add(index, t, 0)?)
}

/// Adds each sample of `part` onto its input's entry (`index`, as for
/// [`onto_inputs`]) of the running per-input sum `total`, or starts it.
pub(super) fn add_onto_inputs(
    total: &mut Option<InputGradient>,
    part: &InputGradient,
    index: &Tensor,
    n: usize,
) -> Result<()> {
    *total = Some(match total.take() {
        None => part.map_linear(|t| onto_inputs(t, index, n))?,
        Some(sum) => sum.zip_linear(part, |s, t| Ok(s.index_add(index, t, 0)?))?,
    });
    Ok(())
}

/// Runs `f` on consecutive batches of at most `size` of the `total` samples
/// (`f(start, len)`), joining the results in order.
pub(super) fn in_batches<R>(
    total: usize,
    size: usize,
    mut f: impl FnMut(usize, usize) -> Result<R>,
) -> Result<Vec<R>> {
    ensure!(size > 0, "the batch size must be at least 1");
    (0..total)
        .step_by(size)
        .map(|start| {
            // A cancelled job stops here, within one batch.
            crate::jobs::checkpoint()?;
            f(start, size.min(total - start))
        })
        .collect()
}
