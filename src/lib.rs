//! unitscope: inspect what a neural network has learned.
//!
//! The pipeline reads top to bottom: [`model`] runs a network on Candle and captures
//! layers and gradients; [`attribution`] turns them into maps of what an input's
//! parts contribute; [`metrics`] measure how far to trust them; [`render`] draws
//! them; [`data`] turns images into inputs and draws the demo world;
//! [`train`] trains the demo model on it; [`units`] finds what excites each unit.

#![warn(missing_docs)]

pub mod atomic;
pub mod attribution;
pub mod choice;
pub mod data;
pub mod dissect;
pub mod featvis;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod render;
pub mod train;
pub mod units;
