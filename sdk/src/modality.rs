//! A modality as a plugin: files of its types become the model's input and a
//! display (a picture with labelled axes, or tokens) that maps are drawn onto.

use std::ffi::c_void;
use std::path::Path;

use crate::abi::{DISPLAY_IMAGE, DISPLAY_TOKENS, UsDecoded, UsModelInfo, UsStr, UsTensor, UsText};
use crate::export::{guarded, instance};
use crate::{Error, ModelInfo, Tensor};

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

/// A modality: the files it opens and how they become inputs.
pub trait Modality: Default + Send + Sync + 'static {
    /// Its name, e.g. `audio`.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line on what it opens.
    const ABOUT: &'static str;
    /// The extensions it opens, lower case without the dot.
    const EXTENSIONS: &'static [&'static str];
    /// A model card it ships, relative to the plugin's file ("" for none).
    const CARD: &'static str = "";

    /// The file at `path`, for `model`.
    fn decode(&self, path: &Path, model: &ModelInfo) -> Result<Decoded, Error>;
}

/// What a decode hands the host: the file and the borrowed views into it.
struct Handle {
    decoded: Decoded,
    tokens: Vec<UsStr>,
}

/// [`crate::abi::UsModality::decode`] for `M`.
pub(crate) unsafe extern "C" fn decode<M: Modality>(
    path: UsStr,
    model: *const UsModelInfo,
    out: *mut UsDecoded,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        let path = unsafe { crate::param::text(path) }?;
        // SAFETY: the host's model info, valid for the call.
        let model = unsafe { &*model };
        let model = ModelInfo {
            name: unsafe { crate::param::text(model.name) }?,
            input: [model.channels, model.height, model.width].map(|d| d as usize),
            classes: model.classes as usize,
        };
        let decoded = instance::<M>()?.decode(Path::new(&path), &model)?;
        let tokens = match &decoded.display {
            Display::Tokens(tokens) => tokens.iter().map(|t| UsStr::new(t)).collect(),
            Display::Image { .. } => Vec::new(),
        };
        let handle = Box::new(Handle { decoded, tokens });
        let view = describe(&handle)?;
        // SAFETY: the host's output slot; the handle now lives until `release`.
        unsafe {
            out.write(UsDecoded {
                handle: Box::into_raw(handle).cast::<c_void>(),
                ..view
            })
        };
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
