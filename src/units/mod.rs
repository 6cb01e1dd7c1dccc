//! What excites each unit of a layer, found in data: per unit, the inputs whose
//! activation peaks highest (ranked by spatial maximum, as NetDissect-Lite ranks),
//! where the peak is and what input pixels it sees, and summary statistics over the
//! inputs seen; cached on disk per (weights, dataset, layer, preprocessing). And
//! which units follow a quantity a world knows at every position
//! ([`correlate`]).

mod cache;
mod correlate;
mod histogram;
mod search;

pub use cache::{Cache, Lookup, Searched, key, root, search_entries};
pub use correlate::{Correlations, LayerCorrelations, Match, correlate};
pub use histogram::Histogram;
pub use search::{LayerStats, Search, TopInput, UnitStats, search};
