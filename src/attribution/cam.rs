//! Class activation maps from gradients: a layer's feature maps weighted by what the
//! target's gradient says about them, summed over channels and rectified.
//!
//! With `A` a layer's activations `[N, K, h, w]` and `G` the target's gradient with
//! respect to them:
//! - Grad-CAM (Selvaraju et al. 2017): `α_k = mean_ij G_kij`, map `ReLU(Σ_k α_k A_k)`;
//! - Grad-CAM++ (Chattopadhay et al. 2018), in the closed form of their eq. 19 that
//!   pytorch-grad-cam uses: `a_kij = G² / (2G² + (Σ_ij A_k) G³ + 1e-6)` (0 where
//!   `G = 0`), `α_k = Σ_ij a_kij ReLU(G_kij)`;
//! - LayerCAM (Jiang et al. 2021): per position, `ReLU(Σ_k ReLU(G_kij) A_kij)`.

use anyhow::{Result, ensure};
use candle_core::Tensor;

use super::descriptor::shared::LAYER;
use super::descriptor::{Build, Descriptor, Params};
use super::method::{Attribution, Method, Passes, backward};
use super::target::Target;
use crate::model::{Model, Probe};

/// The CAM family's methods, each on `--layer`.
pub const DESCRIPTORS: &[Descriptor] = &[
    Descriptor {
        name: "grad-cam",
        aliases: &[],
        about: "Grad-CAM on --layer",
        citation: "Selvaraju et al. 2017",
        params: &[LAYER],
        build: Build::Method(&|p| cam(p, CamWeighting::GradCam)),
    },
    Descriptor {
        name: "grad-cam++",
        aliases: &[],
        about: "Grad-CAM++ on --layer",
        citation: "Chattopadhay et al. 2018",
        params: &[LAYER],
        build: Build::Method(&|p| cam(p, CamWeighting::GradCamPlusPlus)),
    },
    Descriptor {
        name: "layer-cam",
        aliases: &[],
        about: "LayerCAM on --layer",
        citation: "Jiang et al. 2021",
        params: &[LAYER],
        build: Build::Method(&|p| cam(p, CamWeighting::LayerCam)),
    },
];

fn cam(params: &Params, weighting: CamWeighting) -> Result<Box<dyn Method>> {
    Ok(Box::new(Cam {
        layers: params.layers(&LAYER)?,
        weighting,
    }))
}

/// How a CAM weighs a layer's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CamWeighting {
    /// Grad-CAM.
    #[default]
    GradCam,
    /// Grad-CAM++.
    GradCamPlusPlus,
    /// LayerCAM.
    LayerCam,
}

/// A class activation map on one or more convolutional layers (or blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cam {
    /// The layers, each giving its own map.
    pub layers: Vec<String>,
    /// The channel weighting.
    pub weighting: CamWeighting,
}

impl Cam {
    /// Grad-CAM on `layer`.
    pub fn grad_cam(layer: impl Into<String>) -> Self {
        Self {
            layers: vec![layer.into()],
            weighting: CamWeighting::GradCam,
        }
    }
}

impl Method for Cam {
    fn name(&self) -> String {
        let base = match self.weighting {
            CamWeighting::GradCam => "grad-cam",
            CamWeighting::GradCamPlusPlus => "grad-cam++",
            CamWeighting::LayerCam => "layer-cam",
        };
        format!("{base}({})", self.layers.join(","))
    }

    fn passes(&self, _size: (usize, usize)) -> Passes {
        Passes {
            backward: 1,
            forward: 0,
        }
    }

    fn attribute(&self, model: &Model, inputs: &Tensor, targets: &[Target]) -> Result<Attribution> {
        ensure!(!self.layers.is_empty(), "a CAM needs at least one layer");
        let probe = (self.layers.iter()).fold(Probe::new().layers_only(), |p, l| p.record(l));
        let (capture, grads) = backward(model, inputs, targets, probe)?;
        let maps = self
            .layers
            .iter()
            .map(|layer| {
                let (a, g) = (capture.activation(layer)?, grads.layer(layer)?);
                ensure!(
                    a.rank() == 4,
                    "a CAM needs a layer with feature maps; `{layer}` has shape {:?}",
                    &a.dims()[1..]
                );
                Ok((layer.clone(), self.weighting.map(&a.detach(), g)?))
            })
            .collect::<Result<_>>()?;
        Ok(Attribution::Layers(maps))
    }
}

impl CamWeighting {
    /// The rectified map `[N, h, w]` of activations `a` and gradients `g`, both
    /// `[N, K, h, w]`.
    fn map(self, a: &Tensor, g: &Tensor) -> Result<Tensor> {
        let per_position = match self {
            Self::GradCam => g.mean_keepdim((2, 3))?.broadcast_mul(a)?,
            Self::GradCamPlusPlus => {
                let g2 = g.sqr()?;
                let g3 = (&g2 * g)?;
                let a_sum = a.sum_keepdim((2, 3))?;
                let denominator = ((g2.affine(2.0, 0.0)? + g3.broadcast_mul(&a_sum)?)? + 1e-6)?;
                let alpha = g
                    .ne(0.0)?
                    .where_cond(&(g2 / denominator)?, &g.zeros_like()?)?;
                let weights = (alpha * g.relu()?)?.sum_keepdim((2, 3))?;
                weights.broadcast_mul(a)?
            }
            Self::LayerCam => (g.relu()? * a)?,
        };
        Ok(per_position.sum(1)?.relu()?)
    }
}
