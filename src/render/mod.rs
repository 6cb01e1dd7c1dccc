//! Maps as pictures: colors and scaling ([`color`]), a map over its input
//! ([`compose`]), captioned grids ([`grid`]), files ([`files`]), and the terminal
//! ([`terminal`]).

pub mod color;
pub mod compose;
pub mod files;
pub mod grid;
pub mod terminal;

pub use color::{Colormap, Scaling, heatmap};
pub use compose::{Scale, Style, draw, draw_all_on, draw_on, overlay};
pub use files::{file_part, save_npy, save_png};
pub use grid::{ColourBar, Panel, grid, with_colour_bars};
pub use terminal::{Cells, Protocol, Terminal};
