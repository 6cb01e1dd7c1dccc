//! The host as a plugin sees it: the model's shape, and passes through the
//! host's one engine (forward, gradients). Every result is copied into an owned
//! [`Tensor`] and the host's buffer freed at once.

use crate::abi::{
    RULE_DECONVNET, RULE_GRADIENT, RULE_GUIDED_BACKPROP, TARGET_CLASS, TARGET_UNIT,
    TARGET_WEIGHTED, US_OK, UsHost, UsLayerInfo, UsModelInfo, UsStr, UsTarget, UsTensor, UsText,
};
use crate::param::text;
use crate::{Error, Tensor};

/// What a map explains, for one input.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A class's logit.
    Class(usize),
    /// A unit: its channel's spatial mean, or its value at `(y, x)`.
    Unit {
        /// The layer's name.
        layer: String,
        /// The channel.
        channel: usize,
        /// A position in the layer's feature map, or `None` for the mean.
        position: Option<(usize, usize)>,
    },
    /// A weighted sum of the class logits, one weight per class.
    Weighted(Vec<f32>),
}

/// How gradients pass back through every rectifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rule {
    /// The true gradient.
    #[default]
    Gradient,
    /// Guided backpropagation.
    GuidedBackprop,
    /// DeconvNet.
    DeconvNet,
}

/// The model under inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// Its name.
    pub name: String,
    /// One input's shape, `[C, H, W]`.
    pub input: [usize; 3],
    /// The number of classes.
    pub classes: usize,
}

/// One layer of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// Its name.
    pub name: String,
    /// Its kind, e.g. `conv`.
    pub kind: String,
    /// One input's activation shape.
    pub shape: Vec<usize>,
}

/// A forward pass's results.
#[derive(Clone, Debug)]
pub struct Forward {
    /// `[N, classes]`.
    pub logits: Tensor,
    /// Each asked-for layer's activations, `[N, ...]`, in the order asked.
    pub layers: Vec<Tensor>,
}

/// A backward pass's results.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// With respect to the input, `[N, C, H, W]`.
    pub input: Tensor,
    /// With respect to each asked-for layer, in the order asked.
    pub layers: Vec<Tensor>,
}

/// The host, for the length of one call into the plugin.
pub struct Host<'a> {
    raw: &'a UsHost,
}

impl<'a> Host<'a> {
    /// # Safety
    /// `raw` is the host's live table for this call.
    pub(crate) unsafe fn new(raw: &'a UsHost) -> Self {
        Self { raw }
    }

    /// The model's name, input shape and class count.
    pub fn model(&self) -> Result<ModelInfo, Error> {
        let info = self.model_raw()?;
        Ok(ModelInfo {
            name: unsafe { text(info.name) }?,
            input: [info.channels, info.height, info.width].map(|d| d as usize),
            classes: info.classes as usize,
        })
    }

    /// Every layer, in order.
    pub fn layers(&self) -> Result<Vec<LayerInfo>, Error> {
        (0..self.model_raw()?.layers)
            .map(|i| {
                // SAFETY: all-zero is a valid UsLayerInfo (integers, null text).
                let mut info: UsLayerInfo = unsafe { std::mem::zeroed() };
                info.size = size_of::<UsLayerInfo>() as u32;
                let mut error = UsText::NONE;
                let status = unsafe { (self.raw.layer)(self.raw.ctx, i, &mut info, &mut error) };
                check(status, &mut error)?;
                let rank = (info.rank as usize).min(info.dims.len());
                Ok(LayerInfo {
                    name: unsafe { text(info.name) }?,
                    kind: unsafe { text(info.kind) }?,
                    shape: info.dims[..rank].iter().map(|&d| d as usize).collect(),
                })
            })
            .collect()
    }

    /// A forward pass of `inputs` (`[N, C, H, W]`), recording `layers`.
    pub fn forward(&self, inputs: &Tensor, layers: &[&str]) -> Result<Forward, Error> {
        let input = lend(inputs)?;
        let names: Vec<UsStr> = layers.iter().map(|l| UsStr::new(l)).collect();
        let mut logits = UsTensor::EMPTY;
        let mut recorded: Vec<UsTensor> = layers.iter().map(|_| UsTensor::EMPTY).collect();
        let mut error = UsText::NONE;
        let status = unsafe {
            (self.raw.forward)(
                self.raw.ctx,
                &input,
                names.as_ptr(),
                names.len(),
                &mut logits,
                recorded.as_mut_ptr(),
                &mut error,
            )
        };
        let result = check(status, &mut error).and_then(|()| {
            Ok(Forward {
                logits: take(&logits)?,
                layers: recorded.iter().map(take).collect::<Result<_, _>>()?,
            })
        });
        release(std::iter::once(&mut logits).chain(&mut recorded));
        result
    }

    /// One forward and one backward pass under `rule`: the gradient of each
    /// sample's target with respect to the input and to each of `layers`.
    pub fn gradient(
        &self,
        inputs: &Tensor,
        targets: &[Target],
        rule: Rule,
        layers: &[&str],
    ) -> Result<Gradients, Error> {
        let input = lend(inputs)?;
        let raw_targets: Vec<UsTarget> = targets.iter().map(Target::to_abi).collect();
        let names: Vec<UsStr> = layers.iter().map(|l| UsStr::new(l)).collect();
        let rule = match rule {
            Rule::Gradient => RULE_GRADIENT,
            Rule::GuidedBackprop => RULE_GUIDED_BACKPROP,
            Rule::DeconvNet => RULE_DECONVNET,
        };
        let mut input_gradient = UsTensor::EMPTY;
        let mut layer_gradients: Vec<UsTensor> = layers.iter().map(|_| UsTensor::EMPTY).collect();
        let mut error = UsText::NONE;
        let status = unsafe {
            (self.raw.gradient)(
                self.raw.ctx,
                &input,
                raw_targets.as_ptr(),
                raw_targets.len(),
                rule,
                names.as_ptr(),
                names.len(),
                &mut input_gradient,
                layer_gradients.as_mut_ptr(),
                &mut error,
            )
        };
        let result = check(status, &mut error).and_then(|()| {
            Ok(Gradients {
                input: take(&input_gradient)?,
                layers: layer_gradients.iter().map(take).collect::<Result<_, _>>()?,
            })
        });
        release(std::iter::once(&mut input_gradient).chain(&mut layer_gradients));
        result
    }

    /// Whether the user has cancelled the work: return [`Error::cancelled`] soon.
    pub fn cancelled(&self) -> bool {
        unsafe { (self.raw.cancelled)(self.raw.ctx) != 0 }
    }

    fn model_raw(&self) -> Result<UsModelInfo, Error> {
        // SAFETY: all-zero is a valid UsModelInfo (integers, null text).
        let mut info: UsModelInfo = unsafe { std::mem::zeroed() };
        info.size = size_of::<UsModelInfo>() as u32;
        let mut error = UsText::NONE;
        let status = unsafe { (self.raw.model)(self.raw.ctx, &mut info, &mut error) };
        check(status, &mut error)?;
        Ok(info)
    }
}

impl Target {
    /// The target as the ABI carries it, borrowing `self`'s text and weights.
    fn to_abi(&self) -> UsTarget {
        let mut t = UsTarget {
            kind: 0,
            class_index: 0,
            layer: UsStr::EMPTY,
            channel: 0,
            has_position: 0,
            y: 0,
            x: 0,
            weights: std::ptr::null(),
            n_weights: 0,
        };
        match self {
            Self::Class(c) => (t.kind, t.class_index) = (TARGET_CLASS, *c as u64),
            Self::Unit {
                layer,
                channel,
                position,
            } => {
                (t.kind, t.layer, t.channel) = (TARGET_UNIT, UsStr::new(layer), *channel as u64);
                if let Some((y, x)) = position {
                    (t.has_position, t.y, t.x) = (1, *y as u64, *x as u64);
                }
            }
            Self::Weighted(w) => {
                (t.kind, t.weights, t.n_weights) = (TARGET_WEIGHTED, w.as_ptr(), w.len());
            }
        }
        t
    }

    /// A target the host sent.
    ///
    /// # Safety
    /// `t`'s text and weights live for the call.
    pub(crate) unsafe fn read(t: &UsTarget) -> Result<Self, Error> {
        Ok(match t.kind {
            TARGET_CLASS => Self::Class(t.class_index as usize),
            TARGET_UNIT => Self::Unit {
                layer: unsafe { text(t.layer) }?,
                channel: t.channel as usize,
                position: (t.has_position != 0).then_some((t.y as usize, t.x as usize)),
            },
            TARGET_WEIGHTED => {
                Self::Weighted(unsafe { crate::slice(t.weights, t.n_weights) }.to_vec())
            }
            other => return Err(Error::new(format!("a target of unknown kind {other}"))),
        })
    }
}

/// `t` lent to the host for a call.
fn lend(t: &Tensor) -> Result<UsTensor, Error> {
    UsTensor::borrowed(t.dims(), t.data())
        .ok_or_else(|| Error::new(format!("a tensor of {} axes", t.dims().len())))
}

/// A copy of a tensor the host filled.
fn take(t: &UsTensor) -> Result<Tensor, Error> {
    let data = unsafe { t.values() }.map_err(|e| Error::new(format!("the host returned {e}")))?;
    Tensor::new(&t.shape().map_err(Error::new)?, data.to_vec())
}

/// Frees the host's buffers.
fn release<'t>(tensors: impl IntoIterator<Item = &'t mut UsTensor>) {
    for t in tensors {
        unsafe { t.release() };
    }
}

/// `Ok` for [`US_OK`], else the host's error text.
fn check(status: i32, error: &mut UsText) -> Result<(), Error> {
    let text = unsafe { error.take() };
    match status {
        US_OK => Ok(()),
        crate::abi::US_CANCELLED => Err(Error::cancelled()),
        _ => Err(Error::new(
            text.unwrap_or_else(|| "the host failed".to_owned()),
        )),
    }
}
