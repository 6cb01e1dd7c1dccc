//! The result of a forward pass, and the one backward pass that answers it.
//!
//! [`crate::model::Model::forward`] runs a [`Probe`]'s pass and returns a
//! [`Capture`]: the logits and the recorded activations, all still on the autograd
//! graph. [`Capture::backward`] then gives the gradient of any scalar with respect to
//! the input and to every recorded layer at once.
//!
//! Candle's `GradStore` keeps gradients only for variables, so each recorded layer's
//! output gets a zero [`Var`] added to it ([`Trace::tap`]); that variable's gradient
//! is exactly the gradient with respect to the activation. A layer of a trunk on a
//! tape ([`super::tape`]) gets its gradient from the tape's run instead, which the
//! backward pass starts once Candle's is done.
//!
//! [`Probe`]: super::probe::Probe

use std::collections::{BTreeMap, HashSet};

use anyhow::{Context, Result, bail, ensure};
use candle_core::{Tensor, Var};

use super::trace::{HeldStem, LayerGradient, Recorded, Stem, Trace};

/// The result of a forward pass: logits and recorded activations, on the graph.
pub struct Capture {
    input: Tensor,
    /// The variable the input gradient is taken for, unless the probe is layers-only.
    input_var: Option<Var>,
    /// Where the input gradient is held, if the pass held it at the stem.
    stem: Option<HeldStem>,
    /// `None` where the pass stopped after its recorded layers.
    logits: Option<Tensor>,
    recorded: Vec<Recorded>,
    /// Whether the pass can be backpropagated: not when it recorded values only.
    takes_gradients: bool,
}

impl Capture {
    /// The capture of a pass that ran on `input`, which is `input_var`'s tensor when
    /// the input gradient is taken.
    pub(crate) fn new(
        input: Tensor,
        input_var: Option<Var>,
        logits: Option<Tensor>,
        trace: Trace<'_>,
    ) -> Self {
        let takes_gradients = trace.takes_gradients();
        let (recorded, stem) = trace.into_parts();
        Self {
            input,
            input_var,
            stem,
            logits,
            recorded,
            takes_gradients,
        }
    }

    /// The input the pass ran on.
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// The logits, `[batch, classes]`; an error where the pass stopped after its
    /// recorded layers ([`super::Probe::stop_after_recorded`]).
    pub fn logits(&self) -> Result<&Tensor> {
        self.logits.as_ref().context(
            "the pass stopped after its recorded layers, so it has no logits; \
             take them from a probe without `stop_after_recorded`",
        )
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
        ensure!(
            self.takes_gradients,
            "this pass recorded values only (`Probe::values_only`); \
             take gradients from a pass whose probe keeps them"
        );
        let objective = match objective.rank() {
            0 => objective.clone(),
            _ if objective.elem_count() == 1 => objective.flatten_all()?.squeeze(0)?,
            _ => bail!(
                "the objective must be a scalar, got shape {:?}",
                objective.dims()
            ),
        };
        let grads = objective.backward()?;
        let taped = match &self.stem {
            Some(HeldStem {
                taped: Some(tape),
                held,
                ..
            }) => {
                let keep: HashSet<_> = self
                    .recorded
                    .iter()
                    .filter_map(|r| match r.gradient {
                        Some(LayerGradient::Taped(id)) => Some(id),
                        _ => None,
                    })
                    .collect();
                tape.run(held, &keep)?
            }
            _ => Default::default(),
        };
        let grad_of = |v: &Var| -> Result<Tensor> {
            match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => Ok(v.as_tensor().zeros_like()?),
            }
        };
        let layers = self
            .recorded
            .iter()
            .map(|r| {
                let grad = match r
                    .gradient
                    .as_ref()
                    .context("a recorded layer without a gradient")?
                {
                    LayerGradient::Probe(v) => grad_of(v)?,
                    LayerGradient::Taped(id) => match taped.get(id) {
                        Some(g) => g.clone(),
                        None => r.value.zeros_like()?,
                    },
                };
                Ok((r.name.clone(), grad))
            })
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
            Some((g, stem)) => Some(stem.transpose(g)?),
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
