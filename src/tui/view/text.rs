//! Values over text as coloured characters, as `unitscope::render::html` draws them
//! on a page (Karpathy et al. 2015): each character's background is its value on
//! the diverging scale, blue below zero, white at zero, red above.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use unitscope::render::html::diverging;

/// `chars` in lines (a newline shown as `⏎` before the break), each character on
/// its value's colour at `±scale`, or unstyled where `values` is `None`; positions
/// without a character are skipped.
pub fn painted(chars: &[Option<char>], values: Option<&[f32]>) -> Vec<Line<'static>> {
    let scale = values.map_or(0.0, |v| v.iter().map(|v| v.abs()).fold(0.0, f32::max));
    let mut lines = vec![Vec::new()];
    for (t, c) in chars.iter().enumerate() {
        let Some(c) = c else { continue };
        let style = match values.and_then(|v| v.get(t)) {
            Some(&v) => {
                let [r, g, b] = diverging(v, scale);
                Style::new().bg(Color::Rgb(r, g, b)).fg(Color::Black)
            }
            None => Style::new(),
        };
        let line = lines.last_mut().expect("never empty");
        match c {
            '\n' => {
                line.push(Span::styled("⏎", style));
                lines.push(Vec::new());
            }
            c => line.push(Span::styled(c.to_string(), style)),
        }
    }
    lines.into_iter().map(Line::from).collect()
}
