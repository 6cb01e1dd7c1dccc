//! `nn.Sequential` as torchvision's VGG and AlexNet use it: modules numbered from 0,
//! each (except dropout) an inspectable layer named `prefix.index`; and the
//! `features` → `avgpool` → `classifier` network both are made of.

use anyhow::{Result, bail};
use candle_core::Tensor;

use crate::model::blocks::ConvBn;
use crate::model::layer::LayerKind;
use crate::model::nn::{Conv2d, ConvSpec, Linear};
use crate::model::rules::Rectifier;
use crate::model::trace::{Network, Trace};
use crate::model::weights::WeightPath;

/// One module of a sequential stack, as declared.
#[derive(Clone, Copy, Debug)]
pub enum Spec {
    Conv(ConvSpec),
    BatchNorm(usize),
    Relu,
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    Linear {
        input: usize,
        output: usize,
    },
    /// Identity in eval mode; it still takes an index, as in PyTorch.
    Dropout,
}

enum Module {
    Conv(Conv2d),
    /// A convolution and the batch norm at the next index.
    ConvBn(ConvBn),
    Relu,
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    Linear(Linear),
}

/// A loaded sequential stack.
pub struct Sequential {
    prefix: &'static str,
    /// Modules by their first index (dropouts, identities in eval mode, are left out).
    modules: Vec<(usize, Module)>,
}

impl Sequential {
    /// Loads each module's weights from `prefix.index`.
    pub fn load(w: &WeightPath, prefix: &'static str, specs: &[Spec]) -> Result<Self> {
        let w = w.pp(prefix);
        let mut modules = Vec::new();
        let mut i = 0;
        while i < specs.len() {
            let module = match (specs[i], specs.get(i + 1)) {
                (Spec::Conv(c), Some(Spec::BatchNorm(_))) => {
                    let cb = ConvBn::load(&w, &i.to_string(), &(i + 1).to_string(), c, 1e-5)?;
                    modules.push((i, Module::ConvBn(cb)));
                    i += 2;
                    continue;
                }
                (Spec::Conv(c), _) => Some(Module::Conv(Conv2d::load(&w.pp(i), c)?)),
                (Spec::BatchNorm(_), _) => {
                    bail!("{prefix}.{i}: a batch norm must follow a convolution")
                }
                (Spec::Relu, _) => Some(Module::Relu),
                (Spec::MaxPool { kernel, stride }, _) => Some(Module::MaxPool { kernel, stride }),
                (Spec::Linear { input, output }, _) => {
                    Some(Module::Linear(Linear::load(&w.pp(i), input, output)?))
                }
                (Spec::Dropout, _) => None,
            };
            modules.extend(module.map(|m| (i, m)));
            i += 1;
        }
        Ok(Self { prefix, modules })
    }

    pub fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let mut x = x.clone();
        let p = self.prefix;
        let mut modules = self.modules.iter().peekable();
        while let Some((i, m)) = modules.next() {
            let name = format!("{p}.{i}");
            // A convolution right before a ReLU applies it itself (one op instead of
            // two), unless its own output must be recorded.
            let relu = match modules.peek() {
                Some((r, Module::Relu)) => Some(format!("{p}.{r}")),
                _ => None,
            };
            x = match (m, relu) {
                (Module::Conv(c), Some(relu)) if !t.needs(&name) => {
                    modules.next();
                    let relu_op = Some(t.activation(Rectifier::Relu));
                    let y = t.conv(c, &x, relu_op)?;
                    t.tap(&relu, LayerKind::Relu, y)?
                }
                (Module::ConvBn(cb), Some(relu)) => {
                    modules.next();
                    let names = (name.as_str(), format!("{p}.{}", i + 1));
                    let y = cb.forward_rectified(&x, t, (names.0, &names.1), Rectifier::Relu)?;
                    t.tap(&relu, LayerKind::Relu, y)?
                }
                (Module::Conv(c), _) => {
                    let y = t.conv(c, &x, None)?;
                    t.tap(&name, LayerKind::Conv, y)?
                }
                (Module::ConvBn(cb), _) => cb.forward(&x, t, &name, &format!("{p}.{}", i + 1))?,
                (Module::Relu, _) => {
                    let y = t.relu(&x)?;
                    t.tap(&name, LayerKind::Relu, y)?
                }
                (Module::MaxPool { kernel, stride }, _) => {
                    let y = t.max_pool(&x, *kernel, *stride, 0)?;
                    t.tap(&name, LayerKind::MaxPool, y)?
                }
                (Module::Linear(l), _) => {
                    let y = t.linear(l, &x)?;
                    t.tap(&name, LayerKind::Linear, y)?
                }
            };
        }
        Ok(x)
    }
}

/// VGG-style feature stacks: `Some(c)` is a 3x3 convolution to `c` channels (then
/// batch norm if asked, then ReLU), `None` a 2x2 max pool.
pub fn vgg_features(config: &[Option<usize>], batch_norm: bool) -> Vec<Spec> {
    let mut specs = Vec::new();
    let mut channels = 3;
    for item in config {
        match *item {
            Some(c) => {
                specs.push(Spec::Conv(ConvSpec::new(channels, c, 3).padding(1)));
                if batch_norm {
                    specs.push(Spec::BatchNorm(c));
                }
                specs.push(Spec::Relu);
                channels = c;
            }
            None => specs.push(Spec::MaxPool {
                kernel: 2,
                stride: 2,
            }),
        }
    }
    specs
}

/// torchvision's classic layout: `features`, an adaptive average pool to a fixed grid
/// (`avgpool`), then `classifier` on the flattened grid.
pub struct FeaturesClassifier {
    features: Sequential,
    grid: (usize, usize),
    classifier: Sequential,
}

impl FeaturesClassifier {
    /// Loads `features` and `classifier` from their specs.
    pub fn load(
        w: &WeightPath,
        features: &[Spec],
        grid: (usize, usize),
        classifier: &[Spec],
    ) -> Result<Self> {
        Ok(Self {
            features: Sequential::load(w, "features", features)?,
            grid,
            classifier: Sequential::load(w, "classifier", classifier)?,
        })
    }
}

impl Network for FeaturesClassifier {
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        self.features.forward(x, t)
    }

    fn head(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = t.avg_pool(x, self.grid)?;
        let x = t.tap("avgpool", LayerKind::AvgPool, x)?;
        self.classifier.forward(&x.flatten_from(1)?, t)
    }
}
