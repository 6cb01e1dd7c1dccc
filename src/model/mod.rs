//! The network under inspection: architectures, weights, layer table, and forward
//! passes that record layers and backpropagate under a chosen rule.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use unitscope::model::{Model, ModelCard, Objective, Probe, BackwardRule};
//! let model = Model::from_card(&ModelCard::load("resnet18.toml".as_ref())?, &candle_core::Device::Cpu)?;
//! let x = model.input_spec().load_batch(&["cat.png"], model.device())?;
//! let capture = model.forward(&x, &Probe::new().record("layer4").rule(BackwardRule::GuidedBackprop))?;
//! let objective = capture.objective(&Objective::Logit(285))?;
//! let grads = capture.backward(&objective)?;
//! let (saliency, layer4) = (grads.input()?, grads.layer("layer4")?);
//! # Ok(()) }
//! ```

pub mod arch;
pub mod blocks;
pub mod capture;
pub mod card;
mod cpu;
pub mod demo;
pub mod device;
pub mod field;
mod holder;
pub mod layer;
pub mod nn;
pub mod objective;
mod ops;
pub mod probe;
mod propagate;
pub mod relevance;
pub mod rules;
mod tape;
pub mod trace;
pub mod weights;

use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};
use candle_core::{D, DType, Device, Tensor, Var};
use serde::Serialize;

pub use arch::{ArchOptions, Architecture};
pub use capture::{Capture, Gradients, InputGradient};
pub use card::ModelCard;
pub use device::DeviceChoice;
pub use field::ReceptiveField;
pub use layer::{LayerInfo, LayerKind, UnitAddress};
pub use objective::{Objective, Reduce};
pub use probe::{EnginePath, Probe};
pub use relevance::{Composite, Relevance};
pub use rules::{Activation, BackwardRule, Rectifier};
pub use trace::{Network, Stem, StemSource, Trace};
pub use weights::Weights;

use crate::data::InputSpec;

/// A loaded model: network, preprocessing and class names.
pub struct Model {
    name: String,
    architecture: Architecture,
    options: ArchOptions,
    /// The tensors the architecture took, in the order it took them.
    parameters: Vec<(String, Tensor)>,
    network: Box<dyn Network>,
    input: InputSpec,
    labels: Vec<String>,
    device: Device,
    /// The element type of its weights; inputs are converted to it.
    dtype: DType,
    layers: OnceLock<Vec<LayerInfo>>,
    /// A digest of the architecture and parameter values, found once.
    digest: OnceLock<String>,
    /// What loading found suspect but not fatal (non-finite weights), for the user.
    warnings: Vec<String>,
}

/// One ranked class of a prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Class index.
    pub index: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub p: f32,
}

impl Model {
    /// Loads the model a card describes: reads its weights, checks them against the
    /// architecture, reads its labels.
    pub fn from_card(card: &ModelCard, device: &Device) -> Result<Self> {
        let labels = card.class_names()?;
        let path = card.weights_path()?;
        let weights = Weights::load(&path, device)?;
        let non_finite = weights.non_finite()?;
        let model = Self::new(
            card.name.clone().unwrap_or_default(),
            card.architecture,
            &card.options,
            &weights,
            card.input.clone(),
            labels,
        );
        let mut model = model.with_context(|| {
            format!(
                "weights `{}` do not fit architecture `{}`",
                path.display(),
                card.architecture
            )
        })?;
        if let Some((first, _)) = non_finite.first() {
            let values: usize = non_finite.iter().map(|(_, n)| n).sum();
            model.warnings.push(format!(
                "{values} weight(s) in {} tensor(s) of `{}` are NaN or infinite (first: `{first}`); \
                 the model's outputs will be meaningless",
                non_finite.len(),
                path.display()
            ));
        }
        Ok(model)
    }

    /// What loading found suspect but not fatal, one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Builds a model from weights already in memory; one class per label.
    pub fn new(
        name: String,
        architecture: Architecture,
        options: &ArchOptions,
        weights: &Weights,
        input: InputSpec,
        labels: Vec<String>,
    ) -> Result<Self> {
        let network = architecture.build(&weights.root(), options, labels.len())?;
        weights.finish()?;
        Ok(Self {
            name,
            architecture,
            options: options.clone(),
            parameters: weights.handed(),
            network,
            input,
            labels,
            device: weights.root().device().clone(),
            dtype: weights.dtype(),
            layers: OnceLock::new(),
            digest: OnceLock::new(),
            warnings: Vec::new(),
        })
    }

    /// `architecture` with closed-form synthetic weights ([`Weights::synthetic`]),
    /// 1000 numbered classes and ImageNet preprocessing at 224 px: what benchmarks
    /// time, since a pass's cost does not depend on the weights' values.
    pub fn synthetic(architecture: Architecture, device: &Device) -> Result<Self> {
        Self::new(
            serde_json::to_value(architecture)?
                .as_str()
                .unwrap_or("synthetic")
                .to_string(),
            architecture,
            &ArchOptions::default(),
            &Weights::synthetic(device),
            InputSpec::default(),
            crate::data::labels::numbered(1000),
        )
    }

    /// The architecture it is built on.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The model's display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its parameters by PyTorch name, in the order the architecture takes them, which
    /// is forward order (the model-randomization check walks them backwards).
    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.parameters
    }

    /// The same model with other parameter values (same names and shapes).
    pub fn with_parameters(&self, parameters: Vec<(String, Tensor)>) -> Result<Self> {
        let weights = Weights::from_tensors(parameters, &self.device)?.with_dtype(self.dtype);
        Self::new(
            self.name.clone(),
            self.architecture,
            &self.options,
            &weights,
            self.input.clone(),
            self.labels.clone(),
        )
    }

    /// SHA-256 of the architecture, its options and every parameter (names, shapes,
    /// values as f32), in hex: what results computed from this model are cached
    /// under. The same weights read from a .pth or a .safetensors give the same one.
    pub fn digest(&self) -> Result<&str> {
        use sha2::{Digest, Sha256};
        if let Some(digest) = self.digest.get() {
            return Ok(digest);
        }
        let mut hasher = Sha256::new();
        hasher.update(format!("{:?} {:?}\n", self.architecture, self.options));
        for (name, tensor) in &self.parameters {
            hasher.update(format!("{name} {:?}\n", tensor.dims()));
            let values = tensor
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            hasher.update(&bytes);
        }
        let digest = format!("{:x}", hasher.finalize());
        Ok(self.digest.get_or_init(|| digest))
    }

    /// The preprocessing inputs need.
    pub fn input_spec(&self) -> &InputSpec {
        &self.input
    }

    /// Class names, by index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The device the model's tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The inspectable layers in forward order, with their shapes at the card's input
    /// size (found once, by a forward pass on a blank input).
    pub fn layers(&self) -> Result<&[LayerInfo]> {
        if let Some(layers) = self.layers.get() {
            return Ok(layers);
        }
        let [h, w] = self.input.size;
        let probe = Probe::new();
        let mut trace = Trace::describing(&probe);
        let blank = Tensor::zeros((1, self.input.channels, h, w), self.dtype, &self.device)?;
        trace.run(self.network.as_ref(), &blank)?;
        Ok(self.layers.get_or_init(|| trace.into_layers()))
    }

    /// A forward pass of `input` (`[N, 3, H, W]`) that records the probe's layers on
    /// the autograd graph; see [`Capture`].
    pub fn forward(&self, input: &Tensor, probe: &Probe) -> Result<Capture> {
        self.run(input, probe, None)
    }

    /// [`Model::forward`] with the input gradient held at the output of the stem
    /// (the convolution that reads the input; see [`InputGradient`]): the backward
    /// pass ends there. `source` gives the stem's output: [`Stem::apply`] of the
    /// input, or the same from outputs at hand (the stem is affine). A model whose
    /// input no convolution reads, or a pass on the reference path, holds nothing.
    pub fn forward_held(
        &self,
        input: &Tensor,
        probe: &Probe,
        source: &StemSource,
    ) -> Result<Capture> {
        ensure!(
            probe.input_gradient(),
            "a layers-only probe takes no input gradient to hold"
        );
        self.run(input, probe, Some(source))
    }

    fn run(&self, input: &Tensor, probe: &Probe, source: Option<&StemSource>) -> Result<Capture> {
        self.check_input(input)?;
        // Check the names before the pass, which may be long.
        let layers = self.layers()?;
        for name in probe.layers() {
            ensure!(
                layers.iter().any(|l| l.name == name),
                "the model has no layer `{name}`; `unitscope info` lists its layers"
            );
        }
        let input = input.to_dtype(self.dtype)?;
        // Without an input gradient the input is a constant, so the backward pass
        // ends at the lowest recorded layer.
        let (input, input_var) = match probe.input_gradient() {
            true => {
                let var = Var::from_tensor(&input)?;
                (var.as_tensor().clone(), Some(var))
            }
            false => (input.detach(), None),
        };
        let mut trace = match source {
            Some(source) => Trace::holding(probe, &input, source),
            None => Trace::new(probe),
        };
        let logits = trace.run(self.network.as_ref(), &input)?;
        Ok(Capture::new(input, input_var, logits, trace))
    }

    /// Logits of `input` without building a graph.
    pub fn logits(&self, input: &Tensor) -> Result<Tensor> {
        self.logits_with(input, &Probe::new())
    }

    /// Logits of `input` without building a graph, on the probe's engine path (the
    /// probe records nothing here).
    pub fn logits_with(&self, input: &Tensor, probe: &Probe) -> Result<Tensor> {
        self.check_input(input)?;
        let input = input.to_dtype(self.dtype)?.detach();
        Trace::new(probe)
            .run(self.network.as_ref(), &input)?
            .context("a probe that stops after its recorded layers gives no logits")
    }

    /// The `k` most probable classes of each input.
    pub fn predict(&self, input: &Tensor, k: usize) -> Result<Vec<Vec<Prediction>>> {
        let probs = candle_nn::ops::softmax(&self.logits(input)?, D::Minus1)?.to_vec2::<f32>()?;
        Ok(probs
            .into_iter()
            .map(|p| {
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                order
                    .into_iter()
                    .take(k)
                    .map(|i| Prediction {
                        index: i,
                        label: self.labels[i].clone(),
                        p: p[i],
                    })
                    .collect()
            })
            .collect())
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        let dims = input.dims();
        let c = self.input.channels;
        ensure!(
            dims.len() == 4 && dims[1] == c && dims[0] > 0,
            "input has shape {dims:?}; the model takes [N, {c}, H, W] inputs"
        );
        Ok(())
    }

    /// A sequence model's logits at every step of `input`, `[N, classes, T]`, on
    /// the autograd graph of its weights (for training); `None` for a model that
    /// predicts once per input.
    pub fn every_step(&self, input: &Tensor) -> Result<Option<Tensor>> {
        self.check_input(input)?;
        let input = input.to_dtype(self.dtype)?.detach();
        let probe = Probe::new();
        self.network.every_step(&input, &mut Trace::new(&probe))
    }
}
