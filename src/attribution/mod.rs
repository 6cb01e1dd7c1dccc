//! Pixel attribution: how much each part of an input matters to a target (a class
//! logit or any unit), by the lecture's methods and their refinements.
//!
//! Every method implements [`Method`]: a batch of inputs and one [`Target`] per input
//! in, one map per input out ([`Attribution`]). Gradient methods differentiate every
//! sample's own target in one backward pass of the whole batch; wrappers
//! ([`SmoothGrad`]) and path methods ([`IntegratedGradients`]) run their extra
//! samples as batches of a user-set size, so memory stays bounded. [`attribute`]
//! resolves what the user asked for ("the predicted class", several targets per
//! input) into one call.

pub mod descriptor;
mod display;
mod method;
pub mod registry;
mod regression;
pub mod superpixels;
mod target;

descriptor::method_files! {
    gradient,
    cam,
    guided_grad_cam,
    integrated_gradients,
    occlusion,
    lime,
    kernel_shap,
    gradient_shap,
    lrp,
    smooth_grad,
    random,
}

pub use cam::{Cam, CamWeighting};
pub use descriptor::{Descriptor, Param, Params};
pub use display::{ChannelReduction, min_max};
pub use gradient::Gradient;
pub use gradient_shap::{Draws, GradientShap};
pub use guided_grad_cam::{GuidedGradCam, Upsampling};
pub use integrated_gradients::{Baseline, IntegratedGradients, Quadrature};
pub use kernel_shap::KernelShap;
pub use lime::{Fill, Fit, Lime};
pub use lrp::{Lrp, conservation};
pub use method::{
    Attribution, Method, Notes, Passes, attribute, attribute_noted, default_cam_layer,
};
pub use occlusion::Occlusion;
pub use smooth_grad::{SmoothGrad, Statistic};
pub use target::{Target, TargetSpec, predicted};
