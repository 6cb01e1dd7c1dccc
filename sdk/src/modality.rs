//! A modality as a plugin: files of its types become the model's input and a
//! display (a picture with labelled axes, or tokens) that maps are drawn onto;
//! and, optionally, a world of labelled samples made on demand (ABI 1.1), which
//! the host trains the modality's model on and dissects it against.

use std::ffi::c_void;
use std::path::Path;

use crate::abi::{
    DISPLAY_IMAGE, DISPLAY_TOKENS, UsDecoded, UsSample, UsStr, UsTensor, UsText, fill_sized,
};
use crate::export::{guarded, instance};
use crate::{Error, Tensor};

/// One axis of a picture: what it measures, in which unit, from edge to edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Axis {
    /// What it measures, e.g. `time`.
    pub label: String,
    /// Its unit, e.g. `s`.
    pub unit: String,
    /// The value at the left (or top) edge.
    pub start: f64,
    /// The value at the right (or bottom) edge.
    pub end: f64,
}

/// What a decoded file is drawn as.
#[derive(Clone, Debug, PartialEq)]
pub enum Display {
    /// An RGB picture, row-major, `3 * width * height` bytes, with its axes.
    Image {
        /// The bytes.
        rgb: Vec<u8>,
        /// Columns.
        width: usize,
        /// Rows.
        height: usize,
        /// The horizontal axis.
        x: Axis,
        /// The vertical axis.
        y: Axis,
    },
    /// A sequence of tokens (one input position each).
    Tokens(Vec<String>),
}

/// A decoded file.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The model's input, `[C, H, W]`, preprocessed.
    pub input: Tensor,
    /// What to draw it as.
    pub display: Display,
}

/// A concept that a world's samples are labelled with, position by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concept {
    /// What kind of concept, e.g. `event` (Broden's categories: `color`, ...).
    pub category: &'static str,
    /// Its name, e.g. `chirp up`.
    pub name: &'static str,
}

/// One sample of a world.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The model's input, `[C, H, W]`, as [`Modality::decode`] makes a file's.
    pub input: Tensor,
    /// Its class, an index into [`Modality::CLASSES`].
    pub class: usize,
    /// Where each of [`Modality::CONCEPTS`] is: `[concepts, H, W]`, 0 or 1.
    pub masks: Tensor,
    /// Each of [`Modality::TRACKS`] at every position, `[tracks, H, W]`; `None` for a
    /// world of no tracks.
    pub tracks: Option<Tensor>,
}

/// A modality: the files it opens, how they become inputs, (optionally) how maps
/// are drawn back onto them, and (optionally) its world.
pub trait Modality: Default + Send + Sync + 'static {
    /// Its name, e.g. `audio`.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line on what it opens.
    const ABOUT: &'static str;
    /// The extensions it opens, lower case without the dot.
    const EXTENSIONS: &'static [&'static str];
    /// A model card it ships, relative to the plugin's file, or absolute ("" for
    /// none): the model its files open with when the user names none.
    const CARD: &'static str = "";
    /// Whether [`Modality::draw`] draws maps itself; when not, the host draws its
    /// heatmap over the picture.
    const DRAWS: bool = false;

    /// The file at `path`, its input in the shape the model takes, `[C, H, W]`.
    /// An error is the file's (unreadable, corrupt, too large): the host reports
    /// it and carries on.
    fn decode(&self, path: &Path, input: [usize; 3]) -> Result<Decoded, Error>;

    /// Draws `map` (`[H, W]` over the input's positions, values in `0..=1`; a
    /// signed map comes as `(1 + v) / 2`) onto `file`'s picture: `[height, width,
    /// 3]` colours in `0..=1` at the picture's size. Called only when
    /// [`Modality::DRAWS`] is set.
    fn draw(&self, file: &Decoded, map: &Tensor) -> Result<Tensor, Error> {
        let _ = (file, map);
        Err(Error::new(format!("{} does not draw maps", Self::NAME)))
    }

    /// The world's classes, in class order; none (the default): it has no world.
    const CLASSES: &'static [&'static str] = &[];
    /// The concepts its samples are labelled with, in the masks' order.
    const CONCEPTS: &'static [Concept] = &[];
    /// Samples from this index on are held out: training never draws them.
    const HELD_OUT: u64 = 1 << 40;
    /// Real-valued quantities known at every position of a sample (ABI 1.2), in
    /// the order of [`Sample::tracks`]: what units are correlated with.
    const TRACKS: &'static [&'static str] = &[];

    /// Sample `index` of the world of `seed`, its input in the shape the model
    /// takes, `[C, H, W]`: the same arguments give the same sample. Called only
    /// when [`Modality::CLASSES`] is not empty, from any thread.
    fn sample(&self, seed: u64, index: u64, input: [usize; 3]) -> Result<Sample, Error> {
        let _ = (seed, index, input);
        Err(Error::new(format!("{} has no world", Self::NAME)))
    }
}

/// What a decode hands the host: the file and the borrowed views into it.
struct Handle {
    decoded: Decoded,
    tokens: Vec<UsStr>,
}

/// [`crate::abi::UsModality::decode`] for `M`.
pub(crate) unsafe extern "C" fn decode<M: Modality>(
    path: UsStr,
    channels: u64,
    height: u64,
    width: u64,
    out: *mut UsDecoded,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        let path = unsafe { crate::param::text(path) }?;
        let input = [channels, height, width].map(|d| d as usize);
        let decoded = instance::<M>()?.decode(Path::new(&path), input)?;
        let tokens = match &decoded.display {
            Display::Tokens(tokens) => tokens.iter().map(|t| UsStr::new(t)).collect(),
            Display::Image { .. } => Vec::new(),
        };
        let handle = Box::new(Handle { decoded, tokens });
        let mut view = describe(&handle)?;
        view.handle = Box::into_raw(handle).cast::<c_void>();
        // SAFETY: the host's output slot, sized by the host; the handle now lives
        // until `release`.
        unsafe { fill_sized(out, view) };
        Ok(())
    })
}

/// [`crate::abi::UsModality::draw`] for `M`.
pub(crate) unsafe extern "C" fn draw<M: Modality>(
    handle: *mut c_void,
    map: *const UsTensor,
    rgb: *mut UsTensor,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        // SAFETY: a handle `decode` made, not yet released; the host's map for the
        // call.
        let (handle, map) = unsafe { (&*handle.cast::<Handle>(), &*map) };
        let dims = map.shape()?;
        // SAFETY: the host's floats, valid for the call.
        let map = Tensor::new(&dims, unsafe { map.values() }?.to_vec())?;
        let drawn = instance::<M>()?.draw(&handle.decoded, &map)?;
        let dims = drawn.dims().to_vec();
        let drawn =
            UsTensor::owned(&dims, drawn.into_data()).ok_or("the drawing has too many axes")?;
        // SAFETY: the host's output slot; the floats are now the host's to free.
        unsafe { rgb.write(drawn) };
        Ok(())
    })
}

/// [`crate::abi::UsWorld::sample`] for `M`.
pub(crate) unsafe extern "C" fn sample<M: Modality>(
    seed: u64,
    index: u64,
    channels: u64,
    height: u64,
    width: u64,
    out: *mut UsSample,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        let input = [channels, height, width].map(|d| d as usize);
        let sample = instance::<M>()?.sample(seed, index, input)?;
        let take = |t: Tensor, what: &str| {
            let dims = t.dims().to_vec();
            UsTensor::owned(&dims, t.into_data())
                .ok_or_else(|| Error::new(format!("the {what} has too many axes")))
        };
        let view = UsSample {
            size: size_of::<UsSample>() as u32,
            input: take(sample.input, "input")?,
            class_index: sample.class as u64,
            masks: take(sample.masks, "masks")?,
            tracks: match sample.tracks {
                Some(tracks) => take(tracks, "tracks")?,
                None => UsTensor::EMPTY,
            },
        };
        // SAFETY: the host's output slot, sized by the host; the tensors are now
        // the host's to free.
        unsafe { fill_sized(out, view) };
        Ok(())
    })
}

/// The ABI's view of `handle`, borrowing it.
fn describe(handle: &Handle) -> Result<UsDecoded, Error> {
    let input = &handle.decoded.input;
    let mut view = UsDecoded {
        size: size_of::<UsDecoded>() as u32,
        handle: std::ptr::null_mut(),
        input: UsTensor::borrowed(input.dims(), input.data())
            .ok_or("the input has too many axes")?,
        display: DISPLAY_TOKENS,
        rgb: std::ptr::null(),
        width: 0,
        height: 0,
        x_label: UsStr::EMPTY,
        x_unit: UsStr::EMPTY,
        x_start: 0.0,
        x_end: 0.0,
        y_label: UsStr::EMPTY,
        y_unit: UsStr::EMPTY,
        y_start: 0.0,
        y_end: 0.0,
        tokens: handle.tokens.as_ptr(),
        n_tokens: handle.tokens.len(),
    };
    if let Display::Image {
        rgb,
        width,
        height,
        x,
        y,
    } = &handle.decoded.display
    {
        if rgb.len() != 3 * width * height {
            return Err(Error::new(format!(
                "a {width}x{height} picture needs {} bytes, not {}",
                3 * width * height,
                rgb.len()
            )));
        }
        (view.display, view.rgb) = (DISPLAY_IMAGE, rgb.as_ptr());
        (view.width, view.height) = (*width as u64, *height as u64);
        (view.x_label, view.x_unit) = (UsStr::new(&x.label), UsStr::new(&x.unit));
        (view.x_start, view.x_end) = (x.start, x.end);
        (view.y_label, view.y_unit) = (UsStr::new(&y.label), UsStr::new(&y.unit));
        (view.y_start, view.y_end) = (y.start, y.end);
    }
    Ok(view)
}

/// [`crate::abi::UsModality::release`].
pub(crate) unsafe extern "C" fn release(handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: made by `decode` from `Box<Handle>`, released once.
        drop(unsafe { Box::from_raw(handle.cast::<Handle>()) });
    }
}
