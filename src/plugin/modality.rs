//! A modality plugin as one of the host's file types ([`crate::data::modality`]):
//! its files decode through the ABI into an input and a display the host copies
//! and checks, and, when the plugin draws, maps go back to it to be drawn.
//!
//! A file the plugin cannot decode is an error about that file (corrupt, too
//! large), and the plugin carries on. Garbage from it (an input of the wrong
//! shape, NaN, a display that does not add up, a drawing of the wrong size)
//! disables it for the rest of the process.

use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use image::RgbImage;
use unitscope_sdk::abi::{
    DISPLAY_IMAGE, DISPLAY_TOKENS, US_OK, UsDecoded, UsModality, UsSample, UsStr, UsTensor, UsText,
    UsWorld,
};

use super::disabled::Disabled;
use super::library::{read_sized, slice, text};
use crate::data::modality::{Axis, Decoded, Modality, Painter, Picture, Sample, View, World};
use crate::render;

/// The largest picture side a plugin may hand over.
const MAX_SIDE: u64 = 16_384;
/// The most tokens a plugin may hand over (more could not be drawn in a line).
const MAX_TOKENS: usize = 4096;

/// A loaded modality plugin.
pub struct Plugin {
    name: String,
    extensions: Vec<String>,
    card: Option<PathBuf>,
    entries: Entries,
    world: Option<PluginWorld>,
    /// Why it was disabled, once it is.
    pub disabled: Disabled,
}

/// A modality plugin's world, as it described it.
struct PluginWorld {
    classes: Vec<String>,
    concepts: Vec<(String, String)>,
    /// ABI 1.2's tracks; none from an older plugin.
    tracks: Vec<String>,
    held_out: u64,
    sample: SampleEntry,
}

/// [`UsWorld::sample`]'s type.
type SampleEntry = unsafe extern "C" fn(u64, u64, u64, u64, u64, *mut UsSample, *mut UsText) -> i32;

/// A modality plugin's entries.
struct Entries(&'static UsModality);

// SAFETY: the entries are static and never written; a decode may run on any
// thread, and calls on one handle are serialized by the host ([`Painting`]).
unsafe impl Send for Entries {}
unsafe impl Sync for Entries {}

/// The modality plugin `name` at `path` with `entries`, checked: its extensions
/// and the card it ships (relative to `path`). Leaked, as the plugin is never
/// unloaded.
pub fn describe(
    name: String,
    path: &Path,
    entries: &'static UsModality,
) -> Result<&'static Plugin> {
    ensure!(
        entries.n_extensions == 0 || !entries.extensions.is_null(),
        "{} extensions and no list",
        entries.n_extensions
    );
    // SAFETY: the plugin's static list, in the never-unloaded library.
    let raw = unsafe { slice(entries.extensions, entries.n_extensions) };
    let extensions = raw
        .iter()
        .map(|&e| {
            let e = text(e, "extension")?;
            ensure!(
                !e.is_empty()
                    && e.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "its extension `{e}` is not lower-case letters and digits without the dot"
            );
            Ok(e)
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!extensions.is_empty(), "it opens no file extension");
    let card = match text(entries.card, "card")? {
        card if card.is_empty() => None,
        card => {
            let at = path.parent().unwrap_or(Path::new(".")).join(&card);
            ensure!(
                at.is_file(),
                "the model card it ships, `{card}`, is not beside it (looked for `{}`)",
                at.display()
            );
            Some(at)
        }
    };
    let world = match entries.world.is_null() {
        true => None,
        // SAFETY: non-null, static in the never-unloaded library (the ABI's
        // contract); 1.1 introduced it up to its tracks, which 1.2 added.
        false => Some(describe_world(unsafe {
            read_sized(entries.world, offset_of!(UsWorld, tracks), "world entries")
        }?)?),
    };
    Ok(Box::leak(Box::new(Plugin {
        name,
        extensions,
        card,
        entries: Entries(entries),
        world,
        disabled: Disabled::default(),
    })))
}

/// The world `entries` describe, checked: named classes, concepts with their
/// categories, a `sample` entry.
fn describe_world(entries: &'static UsWorld) -> Result<PluginWorld> {
    let names = |ptr: *const UsStr, n: usize, what: &str| -> Result<Vec<String>> {
        ensure!(
            n == 0 || !ptr.is_null(),
            "its world has {n} {what}s and no list"
        );
        // SAFETY: the plugin's static list, in the never-unloaded library.
        let names = unsafe { slice(ptr, n) }.iter().map(|&s| text(s, what));
        let names = names.collect::<Result<Vec<_>>>()?;
        if let Some(empty) = names.iter().position(|n| n.trim().is_empty()) {
            bail!("its world's {what} {empty} has no name");
        }
        Ok(names)
    };
    let classes = names(entries.classes, entries.n_classes, "class")?;
    ensure!(
        classes.len() >= 2,
        "its world has {} classes, not two or more",
        classes.len()
    );
    let concepts = names(entries.concepts, entries.n_concepts, "concept")?;
    let categories = names(entries.categories, entries.n_concepts, "concept category")?;
    let tracks = names(entries.tracks, entries.n_tracks, "track")?;
    Ok(PluginWorld {
        classes,
        concepts: categories.into_iter().zip(concepts).collect(),
        tracks,
        held_out: entries.held_out,
        sample: entries.sample.context("its world has no `sample` entry")?,
    })
}

impl Plugin {
    /// One line on what it opens: `about`, its extensions and its card.
    pub fn about(&self, about: &str) -> String {
        let extensions: Vec<String> = self.extensions.iter().map(|e| format!(".{e}")).collect();
        let card = match &self.card {
            Some(card) => format!("; model {}", card.display()),
            None => String::new(),
        };
        format!("{about} ({}{card})", extensions.join(", "))
    }

    /// The plugin's failure, remembered: it is disabled.
    fn fail(&self, why: String) -> anyhow::Error {
        self.disabled.set(&why);
        anyhow!("the plugin `{}` failed and is disabled: {why}", self.name)
    }
}

impl Modality for Plugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn extensions(&self) -> &[String] {
        &self.extensions
    }

    fn card(&self) -> Option<&Path> {
        self.card.as_deref()
    }

    fn world(&self) -> Option<&dyn World> {
        self.world.as_ref().map(|_| self as &dyn World)
    }

    fn decode(&'static self, path: &Path, [c, h, w]: [usize; 3]) -> Result<Decoded> {
        if let Some(why) = self.disabled.why() {
            bail!("the plugin `{}` is disabled: {why}", self.name);
        }
        let path = path
            .to_str()
            .with_context(|| format!("`{}` is not a UTF-8 path", path.display()))?;
        let decode = self.entries.0.decode.context("internal: no decode entry")?;
        // SAFETY: all-zero is a valid UsDecoded (numbers, null pointers).
        let mut out: UsDecoded = unsafe { std::mem::zeroed() };
        out.size = size_of::<UsDecoded>() as u32;
        let mut error = UsText::NONE;
        // SAFETY: the entry's declared type; `out` sized as the ABI asks.
        let status = unsafe {
            decode(
                UsStr::new(path),
                c as u64,
                h as u64,
                w as u64,
                &mut out,
                &mut error,
            )
        };
        let message = unsafe { error.take() };
        if status != US_OK {
            // The file's problem, not the plugin's: it stays enabled.
            bail!(
                "{}",
                message.unwrap_or_else(|| "it gave no reason".to_owned())
            );
        }
        let handle = Handle {
            entries: self.entries.0,
            handle: out.handle,
        };
        // SAFETY: what the plugin filled, valid until `release` (the handle's drop).
        let (input, shown) = unsafe { copy_decoded(&out, [c, h, w]) }.map_err(|e| self.fail(e))?;
        let (picture, painter): (Picture, Option<Box<dyn Painter>>) = match shown {
            Shown::Picture(picture) if self.entries.0.draw.is_some() => {
                let painting = Painting {
                    plugin: self,
                    picture: picture.image.dimensions(),
                    handle: Mutex::new(handle),
                };
                (picture, Some(Box::new(painting)))
            }
            // Nothing more is asked of the file: its handle is released now.
            Shown::Picture(picture) => (picture, None),
            // Tokens in a line, each under its share of the input's columns.
            Shown::Tokens(tokens) => {
                let picture = Picture {
                    image: render::token_strip(&tokens)?,
                    x: Axis::tokens(tokens.len()),
                    y: Axis::default(),
                };
                (picture, None)
            }
        };
        Ok(Decoded {
            input,
            view: View { picture, painter },
        })
    }
}

/// Reached through [`Modality::world`], which offers it only when the plugin
/// has a world: the fallbacks for none are never seen.
impl World for Plugin {
    fn classes(&self) -> &[String] {
        self.world.as_ref().map_or(&[], |w| &w.classes)
    }

    fn concepts(&self) -> &[(String, String)] {
        self.world.as_ref().map_or(&[], |w| &w.concepts)
    }

    fn tracks(&self) -> &[String] {
        self.world.as_ref().map_or(&[], |w| &w.tracks)
    }

    fn held_out(&self) -> u64 {
        self.world.as_ref().map_or(0, |w| w.held_out)
    }

    fn sample(&self, seed: u64, index: u64, [c, h, w]: [usize; 3]) -> Result<Sample> {
        if let Some(why) = self.disabled.why() {
            bail!("the plugin `{}` is disabled: {why}", self.name);
        }
        let world = self.world.as_ref().context("internal: no world")?;
        // SAFETY: all-zero is a valid UsSample (numbers, null pointers).
        let mut out: UsSample = unsafe { std::mem::zeroed() };
        out.size = size_of::<UsSample>() as u32;
        let mut error = UsText::NONE;
        let (c64, h64, w64) = (c as u64, h as u64, w as u64);
        // SAFETY: the entry's declared type; `out` sized as the ABI asks.
        let status = unsafe { (world.sample)(seed, index, c64, h64, w64, &mut out, &mut error) };
        let message = unsafe { error.take() };
        let checked = match status {
            // SAFETY: what the plugin filled, its tensors handed over.
            US_OK => Ok(unsafe { copy_sample(&out, world, [c, h, w]) }),
            // A sample it cannot make (say, of this shape): it stays enabled.
            _ => Err(message.unwrap_or_else(|| "it gave no reason".to_owned())),
        };
        // SAFETY: handed over with the plugin's free function (or empty).
        unsafe {
            out.input.release();
            out.masks.release();
            out.tracks.release();
        }
        let what = || format!("sample {index} of the `{}` world", self.name);
        // Garbage is the plugin's failure: it is disabled.
        match checked {
            Ok(sample) => sample.map_err(|e| self.fail(format!("{}: {e}", what()))),
            Err(e) => Err(anyhow!("{}: {e}", what())),
        }
    }
}

/// The sample the plugin filled in `out`, copied and checked: its input in the
/// shape asked for and finite, its class one of the world's, one mask of 0s and
/// 1s per concept.
///
/// # Safety
/// `out`'s tensors are the plugin's, valid until released.
unsafe fn copy_sample(
    out: &UsSample,
    world: &PluginWorld,
    [c, h, w]: [usize; 3],
) -> Result<Sample, String> {
    // A 1.1 plugin fills up to the tracks, which 1.2 added.
    let least = offset_of!(UsSample, tracks);
    if (out.size as usize) < least {
        return Err(format!(
            "it filled {} bytes of a sample, fewer than the {least} of plugin ABI 1.1",
            out.size
        ));
    }
    // SAFETY: the plugin's tensor, valid until released (the caller's contract).
    let input =
        unsafe { checked_input(&out.input, [c, h, w]) }.map_err(|e| format!("it sampled {e}"))?;
    let class = usize::try_from(out.class_index).unwrap_or(usize::MAX);
    if class >= world.classes.len() {
        return Err(format!(
            "its class is {}, not one of the {}",
            out.class_index,
            world.classes.len()
        ));
    }
    let concepts = world.concepts.len();
    let dims = out
        .masks
        .shape()
        .map_err(|e| format!("its masks are {e}"))?;
    if dims != [concepts, h, w] {
        return Err(format!(
            "its masks have shape {dims:?}, not {:?}",
            [concepts, h, w]
        ));
    }
    // SAFETY: as for the input.
    let masks = unsafe { out.masks.values() }.map_err(|e| format!("its masks are {e}"))?;
    if let Some(i) = masks.iter().position(|&v| v != 0.0 && v != 1.0) {
        return Err(format!(
            "its masks hold {} (element {i}), not 0 or 1",
            masks[i]
        ));
    }
    let tracks = match world.tracks.len() {
        0 => Vec::new(),
        n => {
            let dims = out
                .tracks
                .shape()
                .map_err(|e| format!("its tracks are {e}"))?;
            if dims != [n, h, w] {
                return Err(format!(
                    "its tracks have shape {dims:?}, not {:?}",
                    [n, h, w]
                ));
            }
            // SAFETY: as for the input.
            let values =
                unsafe { out.tracks.values() }.map_err(|e| format!("its tracks are {e}"))?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(format!("its tracks hold {} (element {i})", values[i]));
            }
            values.to_vec()
        }
    };
    Ok(Sample {
        input: input.to_vec(),
        class,
        masks: masks.iter().map(|&v| v == 1.0).collect(),
        tracks,
    })
}

/// The plugin's state for one decoded file, released when dropped.
struct Handle {
    entries: &'static UsModality,
    handle: *mut std::ffi::c_void,
}

// SAFETY: the plugin's state for one file, used one call at a time (behind the
// painter's mutex) as the ABI asks.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(release) = self.entries.release {
            // SAFETY: a handle its decode made, released once.
            unsafe { release(self.handle) };
        }
    }
}

/// A decoded file's display, as the plugin handed it over.
enum Shown {
    Picture(Picture),
    Tokens(Vec<String>),
}

/// The plugin's `input` values, checked: of the shape the model takes, finite.
///
/// # Safety
/// `input`'s pointer is the plugin's, valid for `'a`.
unsafe fn checked_input<'a>(input: &UsTensor, shape: [usize; 3]) -> Result<&'a [f32], String> {
    let dims = input.shape()?;
    if dims != shape {
        return Err(format!(
            "an input of shape {dims:?}; the model takes {shape:?}"
        ));
    }
    // SAFETY: the plugin's floats, their count checked against the shape above.
    let values = unsafe { input.values() }?;
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("an input holding {} (element {i})", values[i])),
        None => Ok(values),
    }
}

/// The input and display the plugin filled in `out`, copied and checked against
/// the input shape asked for.
///
/// # Safety
/// `out`'s pointers are the plugin's, valid for the call (the ABI's contract).
unsafe fn copy_decoded(out: &UsDecoded, input: [usize; 3]) -> Result<(Vec<f32>, Shown), String> {
    if (out.size as usize) < size_of::<UsDecoded>() {
        return Err(format!(
            "it filled {} bytes of the {}-byte decoded file",
            out.size,
            size_of::<UsDecoded>()
        ));
    }
    // SAFETY: the plugin's tensor, valid for the call (the caller's contract).
    let values =
        unsafe { checked_input(&out.input, input) }.map_err(|e| format!("it decoded {e}"))?;
    let display = match out.display {
        DISPLAY_IMAGE => {
            let (w, h) = (out.width, out.height);
            if !(1..=MAX_SIDE).contains(&w) || !(1..=MAX_SIDE).contains(&h) {
                return Err(format!("it drew a {w}x{h} picture (sides 1 to {MAX_SIDE})"));
            }
            if out.rgb.is_null() {
                return Err("it drew a picture with no pixels".to_owned());
            }
            // SAFETY: `3 * width * height` bytes, the ABI's contract for `rgb`.
            let rgb = unsafe { std::slice::from_raw_parts(out.rgb, (3 * w * h) as usize) };
            let image = RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
                .ok_or("internal: picture size")?;
            let axis = |label, unit, start: f64, end: f64| -> Result<Axis, String> {
                if !start.is_finite() || !end.is_finite() {
                    return Err(format!("it gave an axis from {start} to {end}"));
                }
                // SAFETY: text valid until `release`.
                let text = |s: UsStr| unsafe { s.to_str() }.map(str::to_owned);
                Ok(Axis {
                    label: text(label).map_err(|e| format!("its axis label is {e}"))?,
                    unit: text(unit).map_err(|e| format!("its axis unit is {e}"))?,
                    start,
                    end,
                })
            };
            Shown::Picture(Picture {
                image,
                x: axis(out.x_label, out.x_unit, out.x_start, out.x_end)?,
                y: axis(out.y_label, out.y_unit, out.y_start, out.y_end)?,
            })
        }
        DISPLAY_TOKENS => {
            if out.n_tokens == 0 || out.n_tokens > MAX_TOKENS || out.tokens.is_null() {
                return Err(format!(
                    "it decoded {} tokens (1 to {MAX_TOKENS}, in a list)",
                    out.n_tokens
                ));
            }
            // SAFETY: `n_tokens` tokens, valid until `release`.
            let tokens = unsafe { std::slice::from_raw_parts(out.tokens, out.n_tokens) };
            Shown::Tokens(
                tokens
                    .iter()
                    .map(|t| unsafe { t.to_str() }.map(str::to_owned))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("a token is {e}"))?,
            )
        }
        other => return Err(format!("it gave a display of unknown kind {other}")),
    };
    Ok((values.to_vec(), display))
}

/// A plugin's drawing of maps onto one file's picture.
struct Painting {
    plugin: &'static Plugin,
    /// The picture's `(width, height)`: the drawing's size.
    picture: (u32, u32),
    handle: Mutex<Handle>,
}

impl Painter for Painting {
    fn paint(&self, map: &[f32], (h, w): (usize, usize)) -> Result<RgbImage> {
        let plugin = self.plugin;
        if let Some(why) = plugin.disabled.why() {
            bail!("the plugin `{}` is disabled: {why}", plugin.name);
        }
        let draw = plugin.entries.0.draw.context("internal: no draw entry")?;
        let map = UsTensor::borrowed(&[h, w], map).context("internal: map size")?;
        let handle = self
            .handle
            .lock()
            .map_err(|_| anyhow!("a drawing panicked"))?;
        let mut rgb = UsTensor::EMPTY;
        let mut error = UsText::NONE;
        // SAFETY: the entry's declared type, on a live handle, one call at a time.
        let status = unsafe { draw(handle.handle, &map, &mut rgb, &mut error) };
        let message = unsafe { error.take() };
        let drawn = match status {
            US_OK => self.picture(&rgb),
            _ => Err(message.unwrap_or_else(|| "its drawing failed".to_owned())),
        };
        // SAFETY: handed over with the plugin's free function.
        unsafe { rgb.release() };
        drawn.map_err(|e| plugin.fail(e))
    }
}

impl Painting {
    /// The plugin's drawing as a picture: `[height, width, 3]` finite colours,
    /// clamped to `0..=1`.
    fn picture(&self, rgb: &UsTensor) -> Result<RgbImage, String> {
        let (w, h) = self.picture;
        let dims = rgb.shape().map_err(|e| format!("it drew {e}"))?;
        if dims != [h as usize, w as usize, 3] {
            return Err(format!(
                "it drew a picture of shape {dims:?} on its {w}x{h} picture (expected [{h}, {w}, 3])"
            ));
        }
        // SAFETY: the plugin's floats, their count checked against the shape above.
        let values = unsafe { rgb.values() }.map_err(|e| format!("it drew {e}"))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!("it drew a colour of {} (element {i})", values[i]));
        }
        let bytes = values
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        RgbImage::from_raw(w, h, bytes).ok_or_else(|| "internal: picture size".to_owned())
    }
}
