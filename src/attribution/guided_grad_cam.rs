//! Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation's map times the
//! layer's Grad-CAM brought up to the input's resolution. The paper upsamples
//! bilinearly; Captum's `GuidedGradCam` defaults to nearest. Both are offered; the CAM
//! is used raw (rectified, not normalized), as Captum does.

use anyhow::{Result, bail};
use candle_core::Tensor;

use super::cam::Cam;
use super::descriptor::shared::LAYER;
use super::descriptor::{Build, Descriptor, Kind, Param};
use super::gradient::Gradient;
use super::method::{Attribution, Method, Passes};
use super::target::Target;
use crate::model::Model;

/// Guided Grad-CAM, on one `--layer`.
pub const DESCRIPTORS: &[Descriptor] = &[Descriptor {
    name: "guided-grad-cam",
    aliases: &[],
    about: "guided backprop x Grad-CAM on --layer",
    citation: "Selvaraju et al. 2017",
    params: &[LAYER, NEAREST],
    build: Build::Method(&|p| {
        let layers = p.layers(&LAYER)?;
        if layers.len() > 1 {
            bail!("guided-grad-cam takes one --layer, got {}", layers.len());
        }
        Ok(Box::new(GuidedGradCam {
            layer: layers[0].clone(),
            upsampling: match p.flag(&NEAREST)? {
                true => Upsampling::Nearest,
                false => Upsampling::Bilinear,
            },
        }))
    }),
}];

const NEAREST: Param = Param {
    name: "nearest",
    kind: Kind::Flag,
    help: "Guided Grad-CAM: upsample the CAM by nearest neighbour (Captum's default) \
           instead of bilinearly (the paper's)",
};

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

    fn passes(&self, _size: (usize, usize)) -> Passes {
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
