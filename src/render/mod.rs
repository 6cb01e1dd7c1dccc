//! Maps as pictures: colors and scaling ([`color`]), a map over its input
//! ([`compose`]), captioned grids ([`grid`]), files ([`files`]), values over text
//! as coloured characters ([`html`]), and the terminal ([`terminal`]).

pub mod color;
pub mod compose;
pub mod files;
pub mod grid;
pub mod html;
pub mod terminal;

pub use color::{Colormap, Scaling, heatmap};
pub use compose::{
    Backdrop, Scale, Style, draw, draw_all_on, draw_on, framed, framed_by_card, outline, overlay,
};
pub use files::{file_part, save_npy, save_png, save_segments};
pub use grid::{ColourBar, Panel, grid, token_strip, with_axes, with_colour_bars};
pub use terminal::{Cells, Protocol, Terminal};
