//! ResNet-18/34/50 (He et al. 2016) with torchvision's parameter names: `conv1`,
//! `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, ..., `fc`. ResNet-50 uses
//! torchvision's "v1.5" bottleneck, striding in the 3x3 convolution.

use anyhow::Result;
use candle_core::Tensor;

use super::entry::{Architecture, Entry};
use crate::model::blocks::ConvBn;
use crate::model::layer::LayerKind;
use crate::model::nn::{ConvSpec, Linear};
use crate::model::rules::Rectifier;
use crate::model::trace::{Network, Trace};
use crate::model::weights::WeightPath;

/// torchvision's ResNets; no options.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[
        Architecture::Resnet18,
        Architecture::Resnet34,
        Architecture::Resnet50,
    ],
    options: &[],
    build: |architecture, w, _, classes| {
        Ok(Box::new(match architecture {
            Architecture::Resnet34 => ResNet::resnet34(w, classes)?,
            Architecture::Resnet50 => ResNet::resnet50(w, classes)?,
            _ => ResNet::resnet18(w, classes)?,
        }))
    },
};

const BN_EPS: f64 = 1e-5;

/// Which residual block a ResNet stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1, 3x3, 1x1 with 4x expansion (ResNet-50 and deeper).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

struct Block {
    name: String,
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn load(
        w: &WeightPath,
        name: String,
        kind: BlockKind,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let w = w.pp(&name);
        let out = planes * kind.expansion();
        let specs = match kind {
            BlockKind::Basic => vec![
                ConvSpec::new(inplanes, planes, 3).stride(stride).padding(1),
                ConvSpec::new(planes, planes, 3).padding(1),
            ],
            BlockKind::Bottleneck => vec![
                ConvSpec::new(inplanes, planes, 1),
                ConvSpec::new(planes, planes, 3).stride(stride).padding(1),
                ConvSpec::new(planes, out, 1),
            ],
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                ConvBn::load(
                    &w,
                    &format!("conv{}", i + 1),
                    &format!("bn{}", i + 1),
                    spec.no_bias(),
                    BN_EPS,
                )
            })
            .collect::<Result<_>>()?;
        let downsample = (stride != 1 || inplanes != out)
            .then(|| {
                ConvBn::load(
                    &w.pp("downsample"),
                    "0",
                    "1",
                    ConvSpec::new(inplanes, out, 1).stride(stride).no_bias(),
                    BN_EPS,
                )
            })
            .transpose()?;
        Ok(Self {
            name,
            convs,
            downsample,
        })
    }

    /// The block's ReLU module runs after every inner batch norm and once more after
    /// the residual sum; that last run is the block's output, tapped as the block.
    /// The first run is tapped as `relu`, its module's name.
    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let n = &self.name;
        let mut y = x.clone();
        for (i, cb) in self.convs.iter().enumerate() {
            let (conv, bn) = (format!("{n}.conv{}", i + 1), format!("{n}.bn{}", i + 1));
            if i + 1 == self.convs.len() {
                y = cb.forward(&y, t, &conv, &bn)?;
                break;
            }
            y = cb.forward_rectified(&y, t, (&conv, &bn), Rectifier::Relu)?;
            if i == 0 {
                y = t.tap(&format!("{n}.relu"), LayerKind::Relu, y)?;
            }
        }
        let identity = match &self.downsample {
            Some(d) => d.forward(
                x,
                t,
                &format!("{n}.downsample.0"),
                &format!("{n}.downsample.1"),
            )?,
            None => x.clone(),
        };
        let out = t.rectify_sum(&y, &identity, Rectifier::Relu)?;
        t.tap(n, LayerKind::Block, out)
    }
}

/// A torchvision ResNet.
pub struct ResNet {
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
    fc: Linear,
}

impl ResNet {
    /// ResNet-18: basic blocks, [2, 2, 2, 2].
    pub fn resnet18(w: &WeightPath, num_classes: usize) -> Result<Self> {
        Self::load(w, BlockKind::Basic, [2, 2, 2, 2], num_classes)
    }

    /// ResNet-34: basic blocks, [3, 4, 6, 3].
    pub fn resnet34(w: &WeightPath, num_classes: usize) -> Result<Self> {
        Self::load(w, BlockKind::Basic, [3, 4, 6, 3], num_classes)
    }

    /// ResNet-50: bottleneck blocks, [3, 4, 6, 3].
    pub fn resnet50(w: &WeightPath, num_classes: usize) -> Result<Self> {
        Self::load(w, BlockKind::Bottleneck, [3, 4, 6, 3], num_classes)
    }

    fn load(
        w: &WeightPath,
        kind: BlockKind,
        depths: [usize; 4],
        num_classes: usize,
    ) -> Result<Self> {
        let stem = ConvBn::load(
            w,
            "conv1",
            "bn1",
            ConvSpec::new(3, 64, 7).stride(2).padding(3).no_bias(),
            BN_EPS,
        )?;
        let mut inplanes = 64;
        let mut stages = Vec::new();
        for (s, (&depth, planes)) in depths.iter().zip([64, 128, 256, 512]).enumerate() {
            let mut blocks = Vec::new();
            for b in 0..depth {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::load(
                    w,
                    format!("layer{}.{b}", s + 1),
                    kind,
                    inplanes,
                    planes,
                    stride,
                )?);
                inplanes = planes * kind.expansion();
            }
            stages.push(blocks);
        }
        let fc = Linear::load(&w.pp("fc"), inplanes, num_classes)?;
        Ok(Self { stem, stages, fc })
    }
}

impl Network for ResNet {
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = self
            .stem
            .forward_rectified(x, t, ("conv1", "bn1"), Rectifier::Relu)?;
        let x = t.tap("relu", LayerKind::Relu, x)?;
        let x = t.max_pool(&x, 3, 2, 1)?;
        let mut x = t.tap("maxpool", LayerKind::MaxPool, x)?;
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                x = block.forward(&x, t)?;
            }
            x = t.tap(&format!("layer{}", s + 1), LayerKind::Stage, x)?;
        }
        Ok(x)
    }

    fn head(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = t.avg_pool(x, (1, 1))?;
        let x = t.tap("avgpool", LayerKind::AvgPool, x)?;
        let x = t.linear(&self.fc, &x.flatten_from(1)?)?;
        t.tap("fc", LayerKind::Linear, x)
    }
}
