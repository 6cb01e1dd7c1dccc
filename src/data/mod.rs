//! Inputs: images from disk, the preprocessing a model expects, and the demo world.

mod blur;
pub mod image;
pub mod labels;
pub mod resample;
mod source;
pub mod world;

pub use blur::{MAX_SIGMA, gaussian_blur};
pub use image::{InputSpec, ResizeMode, load_image};
pub use resample::Interpolation;
pub use source::{Entry, Sample, Source};
