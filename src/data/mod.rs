//! Inputs: images from disk, the preprocessing a model expects, the demo world, and
//! concept-labelled images (Broden, or the demo world's concepts).

mod blur;
pub mod broden;
pub mod concepts;
pub mod image;
pub mod labels;
pub mod modality;
pub mod resample;
mod source;
pub mod text;
pub mod vocabulary;
pub mod world;

pub use blur::{MAX_SIGMA, gaussian_blur};
pub use broden::Broden;
pub use concepts::ConceptSet;
pub use image::{InputColormap, InputSpec, ResizeMode, Window, load_image};
pub use resample::Interpolation;
pub use source::{Entry, Sample, Source};
pub use vocabulary::{ImageLabels, Label, Vocabulary};
