//! Pictures side by side, each captioned (method, target, layer): a grid a reader
//! can tell apart without the file names. Captions are drawn in the public-domain
//! 8x8 font of the `font8x8` crate; small pictures are enlarged (nearest neighbour,
//! so pixels stay pixels) until a caption of [`CAPTION_CHARS`] characters fits.

use anyhow::{Result, ensure};
use font8x8::{BASIC_FONTS, UnicodeFonts};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::color::Colormap;
use crate::data::modality::{Axis, number};

/// Characters a caption line holds at least; longer lines are cut with `~`.
pub const CAPTION_CHARS: u32 = 20;

/// A glyph's side in pixels.
const GLYPH: u32 = 8;
/// Pixels between panels, and around caption text.
const GAP: u32 = 4;

const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const TEXT: Rgb<u8> = Rgb([235, 235, 235]);

/// One picture of a grid and its caption lines.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The picture; every panel of a grid has the same size.
    pub image: RgbImage,
    /// Caption lines, drawn under the picture.
    pub caption: Vec<String>,
}

/// `panels` in rows of `columns`, each picture enlarged to fit its caption, the
/// caption under it.
pub fn grid(panels: &[Panel], columns: usize) -> Result<RgbImage> {
    ensure!(!panels.is_empty() && columns > 0, "an empty grid");
    let (w, h) = panels[0].image.dimensions();
    ensure!(
        panels.iter().all(|p| p.image.dimensions() == (w, h)) && w > 0 && h > 0,
        "grid pictures differ in size"
    );
    let scale = (CAPTION_CHARS * GLYPH).div_ceil(w).max(1);
    let (pw, ph) = (w * scale, h * scale);
    let lines = panels.iter().map(|p| p.caption.len()).max().unwrap_or(0) as u32;
    let caption_height = match lines {
        0 => 0,
        n => n * (GLYPH + 2) + GAP,
    };
    let cell = (pw + GAP, ph + caption_height + GAP);
    let rows = panels.len().div_ceil(columns) as u32;
    let cols = columns.min(panels.len()) as u32;
    let mut out = RgbImage::from_pixel(cols * cell.0 + GAP, rows * cell.1 + GAP, BACKGROUND);
    for (i, panel) in panels.iter().enumerate() {
        let (x, y) = (
            GAP + (i % columns) as u32 * cell.0,
            GAP + (i / columns) as u32 * cell.1,
        );
        let picture = imageops::resize(&panel.image, pw, ph, FilterType::Nearest);
        imageops::replace(&mut out, &picture, x as i64, y as i64);
        for (n, line) in panel.caption.iter().enumerate() {
            let top = y + ph + GAP / 2 + n as u32 * (GLYPH + 2);
            text(&mut out, (x, top), &fit(line, pw / GLYPH));
        }
    }
    Ok(out)
}

/// `picture` with a colour bar under it for each of `bars`: the colormap across
/// the picture's width, its ends labelled (`low` at the left, `high` at the right)
/// and a caption under it.
pub fn with_colour_bars(picture: &RgbImage, bars: &[ColourBar]) -> RgbImage {
    const BAR: u32 = 12;
    let row = BAR + 2 * (GLYPH + 2) + GAP;
    let (w, h) = picture.dimensions();
    let mut out = RgbImage::from_pixel(w, h + bars.len() as u32 * row, BACKGROUND);
    imageops::replace(&mut out, picture, 0, 0);
    let span = w.saturating_sub(2 * GAP).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let top = h + i as u32 * row;
        for dx in 0..span {
            let color = bar.colormap.color(dx as f64 / (span - 1).max(1) as f64);
            for dy in 0..BAR {
                out.put_pixel(GAP + dx, top + dy, color);
            }
        }
        let labels = top + BAR + 2;
        text(&mut out, (GAP, labels), bar.low);
        let right = GAP + span.saturating_sub(bar.high.chars().count() as u32 * GLYPH);
        text(&mut out, (right, labels), bar.high);
        text(
            &mut out,
            (GAP, labels + GLYPH + 2),
            &fit(&bar.caption, span / GLYPH),
        );
    }
    out
}

/// `picture` with its axes: the vertical axis's end values at the left of its top
/// and bottom rows, the horizontal axis's under its left and right edges, and both
/// axes named under it (`x: time (s)`). A small picture is enlarged first
/// (nearest neighbour) so that the labels fit beside it.
pub fn with_axes(picture: &RgbImage, x: &Axis, y: &Axis) -> RgbImage {
    // An axis without a label (a token strip's rows) is not drawn.
    let (x_shown, y_shown) = (!x.label.is_empty(), !y.label.is_empty());
    let with_unit = |axis: &Axis| match axis.unit.is_empty() {
        true => axis.label.clone(),
        false => format!("{} ({})", axis.label, axis.unit),
    };
    let names: Vec<String> = [(x_shown, "x", x), (y_shown, "y", y)]
        .into_iter()
        .filter(|(shown, ..)| *shown)
        .map(|(_, name, axis)| format!("{name}: {}", with_unit(axis)))
        .collect();
    let ends = |shown: bool, axis: &Axis| match shown {
        true => (number(axis.start), number(axis.end)),
        false => (String::new(), String::new()),
    };
    let ((x0, x1), (y0, y1)) = (ends(x_shown, x), ends(y_shown, y));
    let chars = |s: &str| s.chars().count() as u32;
    let margin = chars(&y0).max(chars(&y1)) * GLYPH + GAP;
    // Wide enough for both x values apart, and tall enough for both y values.
    let (w, h) = picture.dimensions();
    let scale = ((chars(&x0) + chars(&x1) + 1) * GLYPH)
        .div_ceil(w)
        .max(match y_shown {
            true => (2 * GLYPH + GAP).div_ceil(h),
            false => 1,
        })
        .max(1);
    let (pw, ph) = (w * scale, h * scale);
    let line = GLYPH + 2;
    let below = GAP + (1 + names.len() as u32) * line;
    let width =
        (margin + pw + GAP).max(margin + names.iter().map(|n| chars(n)).max().unwrap_or(0) * GLYPH);
    let mut out = RgbImage::from_pixel(width, GAP + ph + below, BACKGROUND);
    let big = imageops::resize(picture, pw, ph, FilterType::Nearest);
    imageops::replace(&mut out, &big, margin as i64, GAP as i64);
    text(&mut out, (0, GAP), &y0);
    text(&mut out, (0, GAP + ph - GLYPH), &y1);
    let ticks = GAP + ph + GAP / 2;
    text(&mut out, (margin, ticks), &x0);
    text(&mut out, (margin + pw - chars(&x1) * GLYPH, ticks), &x1);
    for (i, name) in names.iter().enumerate() {
        text(&mut out, (margin, ticks + (i as u32 + 1) * line), name);
    }
    out
}

/// The widest picture [`token_strip`] draws.
pub const MAX_STRIP: u32 = 16_384;

/// `tokens` drawn in one line, each in a cell of the same width (the longest
/// token's, up to 8 characters; longer ones cut with `~`), so that a map over
/// the input's positions, stretched over the strip, colours each token's cell.
/// Blanks show as `_` (space), `|` (newline) and `>` (tab).
pub fn token_strip(tokens: &[String]) -> Result<RgbImage> {
    let shown: Vec<String> = tokens
        .iter()
        .map(|t| {
            t.chars()
                .map(|c| match c {
                    ' ' => '_',
                    '\n' => '|',
                    '\t' => '>',
                    c => c,
                })
                .collect()
        })
        .collect();
    let chars = shown
        .iter()
        .map(|t: &String| t.chars().count())
        .max()
        .unwrap_or(1);
    let cell = chars.clamp(1, 8) as u32 * GLYPH + 2;
    let width = tokens.len() as u32 * cell;
    ensure!(
        !tokens.is_empty() && width <= MAX_STRIP,
        "{} tokens cannot be drawn in one line of at most {MAX_STRIP} px",
        tokens.len()
    );
    let mut out = RgbImage::from_pixel(width, GLYPH + 4, BACKGROUND);
    for (i, token) in shown.iter().enumerate() {
        text(
            &mut out,
            (i as u32 * cell + 1, 2),
            &fit(token, cell / GLYPH),
        );
    }
    Ok(out)
}

/// A colour bar's colormap and labels.
#[derive(Clone, Debug)]
pub struct ColourBar {
    /// Its colors, 0 at the left.
    pub colormap: Colormap,
    /// The left end's label.
    pub low: &'static str,
    /// The right end's label.
    pub high: &'static str,
    /// What the colors mean.
    pub caption: String,
}

/// `line` cut to `chars` characters, the cut marked by a final `~`.
fn fit(line: &str, chars: u32) -> String {
    let chars = chars as usize;
    match line.chars().count() {
        n if n <= chars => line.to_owned(),
        _ => line
            .chars()
            .take(chars.saturating_sub(1))
            .chain(['~'])
            .collect(),
    }
}

/// Draws `line` with its top-left corner at `(x, y)`; characters the font lacks
/// are drawn as `?`.
fn text(img: &mut RgbImage, (x, y): (u32, u32), line: &str) {
    for (i, c) in line.chars().enumerate() {
        let glyph = BASIC_FONTS.get(c).or_else(|| BASIC_FONTS.get('?'));
        let Some(rows) = glyph else { continue };
        for (dy, row) in rows.iter().enumerate() {
            for dx in 0..GLYPH {
                // Bit 0 is the glyph's leftmost pixel.
                let (px, py) = (x + i as u32 * GLYPH + dx, y + dy as u32);
                if row & (1 << dx) != 0 && px < img.width() && py < img.height() {
                    img.put_pixel(px, py, TEXT);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(color: [u8; 3], caption: &[&str]) -> Panel {
        Panel {
            image: RgbImage::from_pixel(16, 8, Rgb(color)),
            caption: caption.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Small pictures are enlarged to hold a caption, tiles keep their places, and
    /// captions put text pixels under their own picture only.
    #[test]
    fn panels_are_enlarged_and_captioned() {
        let (red, blue) = ([200, 0, 0], [0, 0, 200]);
        let img = grid(&[panel(red, &["grad-cam"]), panel(blue, &[])], 2).unwrap();
        // 16 px wide, enlarged 10x to hold 20 glyphs of 8 px.
        let scale = (CAPTION_CHARS * GLYPH).div_ceil(16);
        let (pw, ph) = (16 * scale, 8 * scale);
        assert_eq!(
            img.dimensions(),
            (2 * (pw + GAP) + GAP, ph + GLYPH + 2 + 2 * GAP + GAP)
        );
        assert_eq!(img[(GAP, GAP)], Rgb(red));
        assert_eq!(img[(2 * GAP + pw + pw - 1, GAP + ph - 1)], Rgb(blue));
        let lit = |x0: u32, x1: u32| {
            (x0..x1)
                .flat_map(|x| (GAP + ph..img.height()).map(move |y| (x, y)))
                .filter(|&(x, y)| img[(x, y)] == TEXT)
                .count()
        };
        assert!(lit(GAP, GAP + pw) > 20, "the first caption is drawn");
        assert_eq!(
            lit(2 * GAP + pw, 2 * GAP + 2 * pw),
            0,
            "the second has none"
        );
    }

    /// A bar runs the colormap left to right under the picture.
    #[test]
    fn colour_bars_run_the_colormap_under_the_picture() {
        let picture = RgbImage::from_pixel(100, 10, Rgb([1, 2, 3]));
        let bar = ColourBar {
            colormap: Colormap::Viridis,
            low: "0",
            high: "max",
            caption: "each panel to its own max".into(),
        };
        let out = with_colour_bars(&picture, &[bar.clone(), bar]);
        assert_eq!(out.width(), 100);
        assert!(out.height() > 10 + 2 * 12);
        assert_eq!(out[(50, 5)], Rgb([1, 2, 3]));
        assert_eq!(out[(GAP, 10)], Colormap::Viridis.color(0.0));
        assert_eq!(out[(100 - GAP - 1, 10)], Colormap::Viridis.color(1.0));
    }

    /// The picture keeps its pixels, enlarged to hold the labels, and the labels
    /// light text pixels beside and under it, not on it.
    #[test]
    fn axes_are_labelled_around_the_picture() {
        let picture = RgbImage::from_pixel(16, 8, Rgb([9, 9, 9]));
        let axis = |label: &str, unit: &str, start, end| Axis {
            label: label.into(),
            unit: unit.into(),
            start,
            end,
        };
        let out = with_axes(
            &picture,
            &axis("time", "s", 0.0, 1.5),
            &axis("frequency", "Hz", 8000.0, 0.0),
        );
        // "8000" is the widest y label: 4 glyphs and a gap to the picture.
        let margin = 4 * GLYPH + GAP;
        // "0" and "1.5" apart need 5 glyphs: 40 px, so 16 px become 48.
        let scale = 3;
        assert_eq!(out[(margin, GAP)], Rgb([9, 9, 9]));
        assert_eq!(
            out[(margin + 16 * scale - 1, GAP + 8 * scale - 1)],
            Rgb([9, 9, 9])
        );
        assert_ne!(out[(margin + 16 * scale, GAP)], Rgb([9, 9, 9]));
        let lit = |xs: std::ops::Range<u32>, ys: std::ops::Range<u32>| {
            xs.flat_map(|x| ys.clone().map(move |y| (x, y)))
                .filter(|&(x, y)| out[(x, y)] == TEXT)
                .count()
        };
        assert!(lit(0..margin, 0..GAP + 8 * scale) > 20, "the y values");
        assert!(
            lit(margin..out.width(), GAP + 8 * scale..out.height()) > 60,
            "the x values and names"
        );
        assert_eq!(lit(margin..margin + 16 * scale, GAP..GAP + 8 * scale), 0);
    }

    #[test]
    fn long_lines_are_cut_visibly() {
        assert_eq!(fit("integrated-gradients(steps=50)", 10), "integrate~");
        assert_eq!(fit("saliency", 10), "saliency");
        assert!(grid(&[], 2).is_err());
        let mixed = [
            panel([0; 3], &[]),
            Panel {
                image: RgbImage::new(3, 3),
                caption: vec![],
            },
        ];
        assert!(grid(&mixed, 2).is_err());
    }
}
