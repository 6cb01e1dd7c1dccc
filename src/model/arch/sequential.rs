//! `nn.Sequential` as torchvision's VGG and AlexNet use it: modules numbered from 0,
//! each (except dropout) an inspectable layer named `prefix.index`; and the
//! `features` → `avgpool` → `classifier` network both are made of.

use anyhow::Result;
use candle_core::Tensor;

use crate::model::Network;
use crate::model::capture::Trace;
use crate::model::layer::LayerKind;
use crate::model::nn::{BatchNorm2d, Conv2d, ConvSpec, Linear, adaptive_avg_pool2d};
use crate::model::ops::max_pool2d;
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
    BatchNorm(BatchNorm2d),
    Relu,
    MaxPool { kernel: usize, stride: usize },
    Linear(Linear),
    Dropout,
}

/// A loaded sequential stack.
pub struct Sequential {
    prefix: &'static str,
    modules: Vec<Module>,
}

impl Sequential {
    /// Loads each module's weights from `prefix.index`.
    pub fn load(w: &WeightPath, prefix: &'static str, specs: &[Spec]) -> Result<Self> {
        let w = w.pp(prefix);
        let modules = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Ok(match *spec {
                    Spec::Conv(c) => Module::Conv(Conv2d::load(&w.pp(i), c)?),
                    Spec::BatchNorm(c) => Module::BatchNorm(BatchNorm2d::load(&w.pp(i), c, 1e-5)?),
                    Spec::Relu => Module::Relu,
                    Spec::MaxPool { kernel, stride } => Module::MaxPool { kernel, stride },
                    Spec::Linear { input, output } => {
                        Module::Linear(Linear::load(&w.pp(i), input, output)?)
                    }
                    Spec::Dropout => Module::Dropout,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { prefix, modules })
    }

    pub fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, m) in self.modules.iter().enumerate() {
            let (y, kind) = match m {
                Module::Conv(c) => (c.forward(&x)?, LayerKind::Conv),
                Module::BatchNorm(bn) => (bn.forward(&x)?, LayerKind::BatchNorm),
                Module::Relu => (t.relu(&x)?, LayerKind::Relu),
                Module::MaxPool { kernel, stride } => {
                    (max_pool2d(&x, *kernel, *stride, 0)?, LayerKind::MaxPool)
                }
                Module::Linear(l) => (l.forward(&x)?, LayerKind::Linear),
                Module::Dropout => continue,
            };
            x = t.tap(&format!("{}.{i}", self.prefix), kind, y)?;
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
    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = self.features.forward(x, t)?;
        let x = t.tap(
            "avgpool",
            LayerKind::AvgPool,
            adaptive_avg_pool2d(&x, self.grid)?,
        )?;
        self.classifier.forward(&x.flatten_from(1)?, t)
    }
}
