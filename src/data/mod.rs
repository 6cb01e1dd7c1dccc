//! Inputs: images from disk and the preprocessing a model expects.

pub mod image;
pub mod labels;

pub use image::{InputSpec, Interpolation, ResizeMode, load_image};
