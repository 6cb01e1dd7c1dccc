//! What a model exposes for inspection: named layers and the units inside them.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use serde::Serialize;

/// The kind of an inspectable layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// A convolution.
    Conv,
    /// A depthwise convolution (one filter per channel).
    DepthwiseConv,
    /// Batch normalisation (eval mode).
    BatchNorm,
    /// A ReLU.
    Relu,
    /// A ReLU6.
    Relu6,
    /// Max pooling.
    MaxPool,
    /// Average pooling.
    AvgPool,
    /// A fully connected layer.
    Linear,
    /// A residual or inverted-residual block's output (after its final activation).
    Block,
    /// A stage of blocks, such as ResNet's `layer3`.
    Stage,
    /// An embedding of symbols (characters), at every step.
    Embedding,
    /// A recurrent layer's hidden states (LSTM or GRU), at every step.
    Recurrent,
    /// An LSTM layer's cell states, at every step.
    CellState,
}

impl LayerKind {
    /// The kind's name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Conv => "conv",
            Self::DepthwiseConv => "depthwise_conv",
            Self::BatchNorm => "batch_norm",
            Self::Relu => "relu",
            Self::Relu6 => "relu6",
            Self::MaxPool => "max_pool",
            Self::AvgPool => "avg_pool",
            Self::Linear => "linear",
            Self::Block => "block",
            Self::Stage => "stage",
            Self::Embedding => "embedding",
            Self::Recurrent => "recurrent",
            Self::CellState => "cell_state",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One inspectable layer: its PyTorch name, kind and per-sample output shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerInfo {
    /// The PyTorch module name, e.g. `layer3.1.conv2` or `features.8`.
    pub name: String,
    /// What the layer computes.
    pub kind: LayerKind,
    /// Output shape without the batch dimension: `[C, H, W]` or `[features]`.
    pub shape: Vec<usize>,
    /// Number of units: channels of a feature map, or features of a vector.
    pub units: usize,
    /// The input pixels each position sees, for a layer of the trunk (a pooled or
    /// flattened head layer sees the whole input: `None`).
    pub field: Option<super::field::ReceptiveField>,
}

/// A unit: a channel of a layer, optionally one spatial position of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnitAddress {
    /// The layer's name.
    pub layer: String,
    /// The channel (or feature) index.
    pub channel: usize,
    /// `(y, x)` in the layer's feature map; `None` means the whole channel.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for UnitAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.layer, self.channel)?;
        if let Some((y, x)) = self.position {
            write!(f, ":{y}:{x}")?;
        }
        Ok(())
    }
}

/// Parses `LAYER:CHANNEL` or `LAYER:CHANNEL:Y:X`, e.g. `layer4:12:3:3`.
impl FromStr for UnitAddress {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str, what: &str| {
            p.parse::<usize>()
                .with_context(|| format!("unit `{s}`: {what} `{p}` is not a non-negative integer"))
        };
        match parts.as_slice() {
            [layer, ch] => Ok(Self {
                layer: layer.to_string(),
                channel: num(ch, "channel")?,
                position: None,
            }),
            [layer, ch, y, x] => Ok(Self {
                layer: layer.to_string(),
                channel: num(ch, "channel")?,
                position: Some((num(y, "y")?, num(x, "x")?)),
            }),
            _ => bail!(
                "unit `{s}` must be LAYER:CHANNEL or LAYER:CHANNEL:Y:X (e.g. layer4:12 or layer4:12:3:3)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_addresses_round_trip() {
        for s in ["layer4:12", "features.8:3:1:2"] {
            assert_eq!(s.parse::<UnitAddress>().unwrap().to_string(), s);
        }
        assert!("layer4".parse::<UnitAddress>().is_err());
        assert!("layer4:x".parse::<UnitAddress>().is_err());
    }
}
