//! What excites each unit of a layer, found in data: per unit, the inputs whose
//! activation peaks highest (ranked by spatial maximum, as NetDissect-Lite ranks),
//! where the peak is, and summary statistics over the inputs seen.

mod stats;

pub use stats::{LayerStats, TopInput, UnitStats};
