//! Inputs: images from disk and the preprocessing a model expects.

pub mod image;
pub mod labels;
pub mod resample;

pub use image::{InputSpec, Interpolation, ResizeMode, load_image};
