//! Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation's map times the
//! layer's Grad-CAM brought up to the input's resolution. The paper upsamples
//! bilinearly; Captum's `GuidedGradCam` defaults to nearest. Both are offered; the CAM
//! is used raw (rectified, not normalized), as Captum does.

use anyhow::{Result, bail};
use candle_core::Tensor;

use super::{Attribution, Cam, Gradient, Method, Passes, Target};
use crate::model::Model;

/// How a layer-resolution map is brought to the input's resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Upsampling {
    /// Bilinear with half-pixel centers (PyTorch `align_corners=False`).
    #[default]
    Bilinear,
    /// Nearest neighbour (PyTorch's `nearest`).
    Nearest,
}

impl Upsampling {
    /// `maps: [N, h, w]` resized to `[N, 1, height, width]`.
    pub(super) fn apply(self, maps: &Tensor, (height, width): (usize, usize)) -> Result<Tensor> {
        let maps = maps.unsqueeze(1)?;
        Ok(match self {
            Self::Bilinear => maps.upsample_bilinear2d(height, width, false)?,
            Self::Nearest => maps.upsample_nearest2d(height, width)?,
        })
    }
}

/// Guided Grad-CAM on one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuidedGradCam {
    /// The Grad-CAM layer.
    pub layer: String,
    /// How the CAM is upsampled.
    pub upsampling: Upsampling,
}

impl Method for GuidedGradCam {
    fn name(&self) -> String {
        let mode = match self.upsampling {
            Upsampling::Bilinear => "",
            Upsampling::Nearest => ", nearest",
        };
        format!("guided-grad-cam({}{mode})", self.layer)
    }

    fn passes(&self) -> Passes {
        Passes {
            backward: 2,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        let Attribution::Input(guided) =
            Gradient::guided_backprop().attribute(model, inputs, targets)?
        else {
            bail!("guided backpropagation gave no input map")
        };
        let Attribution::Layers(cams) =
            Cam::grad_cam(&self.layer).attribute(model, inputs, targets)?
        else {
            bail!("Grad-CAM gave no layer map")
        };
        let (_, _, h, w) = guided.dims4()?;
        let cam = self.upsampling.apply(&cams[0].1, (h, w))?;
        Ok(Attribution::Input(guided.broadcast_mul(&cam)?))
    }
}
