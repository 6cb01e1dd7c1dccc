//! HTML pieces: text made safe, and values over text as coloured characters, as
//! Karpathy, Johnson & Fei-Fei (2015) drew LSTM cells and LSTMVis (Strobelt et al.
//! 2018) draws hidden states: each character's background is its value on a
//! diverging scale (blue below zero, white at zero, red above), its value in the
//! character's tooltip.

use std::fmt::Write as _;

use super::Colormap;

/// Text safe inside HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colour of `value` on the diverging scale that reaches full colour at
/// `±scale`.
pub fn diverging(value: f32, scale: f32) -> [u8; 3] {
    let t = match scale > 0.0 {
        true => (value / scale).clamp(-1.0, 1.0),
        false => 0.0,
    };
    Colormap::RedBlue.color(0.5 + 0.5 * f64::from(t)).0
}

/// Characters and a value for each, drawn as one block.
pub struct Painted<'a> {
    /// What the block shows, above it.
    pub caption: String,
    /// The characters; `None` for a position that holds none (padding).
    pub chars: &'a [Option<char>],
    /// One value per character.
    pub values: &'a [f32],
    /// The value drawn in full colour (`±scale`): blocks of one scale compare.
    pub scale: f32,
}

/// A page of `blocks` under `title`, `note` below it.
pub fn painted_page(title: &str, note: &str, blocks: &[Painted]) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:2em}} \
         pre{{font:14px/1.5 monospace;white-space:pre-wrap;border:1px solid #ddd;padding:.5em}} \
         pre span{{padding:0 1px}} .note{{color:#555}}</style></head><body>\
         <h1>{title}</h1><p class=\"note\">{note} Blue is below zero, red above, full \
         colour at each block's scale; hover a character for its value.</p>",
        title = escape(title),
        note = escape(note),
    );
    for block in blocks {
        let _ = write!(
            html,
            "<h3>{} <small>(full colour at ±{:.3})</small></h3><pre>",
            escape(&block.caption),
            block.scale
        );
        for (c, &v) in block.chars.iter().zip(block.values) {
            let Some(c) = c else { continue };
            let [r, g, b] = diverging(v, block.scale);
            let shown = match c {
                '\n' => "⏎\n".to_owned(),
                c => escape(&c.to_string()),
            };
            let _ = write!(
                html,
                "<span style=\"background:#{r:02x}{g:02x}{b:02x}\" title=\"{v:.4}\">{shown}</span>"
            );
        }
        html.push_str("</pre>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zero is white, the ends of the scale blue and red, past them clamped.
    #[test]
    fn the_diverging_scale() {
        let white = diverging(0.0, 2.0);
        assert!(white.iter().all(|&c| c > 230), "{white:?}");
        let [r, _, b] = diverging(2.0, 2.0);
        assert!(r > b + 50, "red: {r} {b}");
        let [r, _, b] = diverging(-2.0, 2.0);
        assert!(b > r + 50, "blue: {r} {b}");
        assert_eq!(diverging(5.0, 2.0), diverging(2.0, 2.0));
        assert_eq!(diverging(1.0, 0.0), white);
    }

    /// Every character is on the page once, escaped, with its value; padding is
    /// not drawn.
    #[test]
    fn a_page_paints_each_character() {
        let chars = [None, Some('a'), Some('<'), Some('\n'), Some('b')];
        let values = [9.0, 1.0, -1.0, 0.0, 0.5];
        let page = painted_page(
            "unit 3",
            "cells.",
            &[Painted {
                caption: "sample 0".into(),
                chars: &chars,
                values: &values,
                scale: 1.0,
            }],
        );
        assert_eq!(page.matches("<span").count(), 4);
        assert!(page.contains(">&lt;</span>") && page.contains("⏎\n"));
        assert!(page.contains("title=\"-1.0000\"") && !page.contains("9.0000"));
    }
}
