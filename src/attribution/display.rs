//! From raw maps to one value per pixel, the form every view and export draws.
//!
//! Input-shaped maps lose their channel axis by a [`ChannelReduction`]; scaling is
//! left to the renderer (which clips outliers). CAM maps follow pytorch-grad-cam:
//! each layer's map min-max normalized per image (`(m - min) / (max - min + 1e-7)`),
//! resized bilinearly to the input (half-pixel centers), and with several layers,
//! rectified and averaged; then normalized again.

use anyhow::Result;
use candle_core::{D, Tensor};

use super::guided_grad_cam::Upsampling;
use super::method::Attribution;
use crate::choice::{Choice, display_by_name};

/// How the channels of an input-shaped map become one value per pixel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelReduction {
    /// The largest absolute value over channels (Simonyan et al.'s saliency).
    #[default]
    MaxAbs,
    /// The signed sum over channels.
    Sum,
    /// The Euclidean norm over channels.
    L2,
}

impl Choice for ChannelReduction {
    const ALL: &'static [Self] = &[Self::MaxAbs, Self::Sum, Self::L2];

    fn name(self) -> &'static str {
        match self {
            Self::MaxAbs => "max-abs",
            Self::Sum => "sum",
            Self::L2 => "l2",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Self::MaxAbs => "The largest absolute value over channels (Simonyan et al.'s saliency)",
            Self::Sum => "The signed sum over channels",
            Self::L2 => "The Euclidean norm over channels",
        }
    }
}

display_by_name!(ChannelReduction);

impl ChannelReduction {
    /// `map: [N, C, H, W]` to `[N, H, W]`.
    pub fn apply(self, map: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::MaxAbs => map.abs()?.max(1)?,
            Self::Sum => map.sum(1)?,
            Self::L2 => map.sqr()?.sum(1)?.sqrt()?,
        })
    }
}

impl Attribution {
    /// One map per input, `[N, H, W]` at the input's size `(H, W)`: input maps reduced
    /// over channels; CAM maps normalized to [0, 1] as pytorch-grad-cam does.
    pub fn display(&self, size: (usize, usize), reduction: ChannelReduction) -> Result<Tensor> {
        match self {
            Self::Input(map) => reduction.apply(map),
            Self::Layers(layers) => {
                let resized = layers
                    .iter()
                    .map(|(_, m)| Ok(Upsampling::Bilinear.apply(&min_max(m)?, size)?.squeeze(1)?))
                    .collect::<Result<Vec<_>>>()?;
                let mean = Tensor::stack(&resized, 0)?.relu()?.mean(0)?;
                min_max(&mean)
            }
        }
    }

    /// [`Attribution::display`] without any normalization, for maps to be drawn on
    /// one scale: CAM maps resized, rectified and averaged over layers as they are.
    pub fn display_raw(&self, size: (usize, usize), reduction: ChannelReduction) -> Result<Tensor> {
        match self {
            Self::Input(map) => reduction.apply(map),
            Self::Layers(layers) => {
                let resized = layers
                    .iter()
                    .map(|(_, m)| Ok(Upsampling::Bilinear.apply(m, size)?.squeeze(1)?))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::stack(&resized, 0)?.relu()?.mean(0)?)
            }
        }
    }
}

/// `maps: [N, h, w]` shifted and scaled per map to [0, 1]: `(m - min) / (max - min +
/// 1e-7)` (a constant map becomes zeros).
pub fn min_max(maps: &Tensor) -> Result<Tensor> {
    let flat = maps.flatten_from(1)?;
    let shifted = flat.broadcast_sub(&flat.min_keepdim(D::Minus1)?)?;
    let scale = (shifted.max_keepdim(D::Minus1)? + 1e-7)?;
    Ok(shifted.broadcast_div(&scale)?.reshape(maps.shape())?)
}
