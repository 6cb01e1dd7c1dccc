//! The C ABI itself: every type that crosses between host and plugin, as
//! `#[repr(C)]` structs of plain fields, raw pointers and `extern "C"` function
//! pointers. `include/unitscope.h` declares the same types for C and C++; a test
//! compiles it against these definitions, field by field.
//!
//! The rules that keep it stable across compilers and releases:
//! - No Rust type with an unstable layout (`String`, `Vec`, slices, trait objects,
//!   `Option` of anything but a function pointer) crosses.
//! - Text is UTF-8 with a length, not NUL-terminated ([`UsStr`], borrowed;
//!   [`UsText`], owned, with its owner's free function).
//! - Every buffer handed over for keeps carries the free function of the side that
//!   allocated it ([`UsTensor::free`], [`UsText::free`]); borrowed ones carry none.
//! - The structs that may grow ([`UsPlugin`], [`UsMethod`], [`UsModality`],
//!   [`UsWorld`], [`UsHost`], the info structs, [`UsDecoded`], [`UsSample`]) begin
//!   with their own `size`;
//!   fields are only ever appended, and a reader treats a field beyond the size it
//!   was given as absent. A struct one side fills for the other ([`UsModelInfo`],
//!   [`UsLayerInfo`], [`UsDecoded`], [`UsSample`]) has its `size` set by the caller to its own
//!   size, and the callee writes no more than that.
//! - Every entry a plugin fills in is a nullable function pointer
//!   (`Option<extern "C" fn>`), so that the host can refuse a missing required one;
//!   the host's own callbacks are never null.
//! - A method's entries may be called from several threads at once.

use std::ffi::c_void;

/// The ABI's major version: a plugin runs only on a host of the same major.
pub const ABI_MAJOR: u32 = 1;
/// The ABI's minor version: a host runs plugins of its minor or older. 1.1 added a
/// modality's world ([`UsModality::world`]); 1.2 its tracks ([`UsWorld::tracks`],
/// [`UsSample::tracks`]).
pub const ABI_MINOR: u32 = 2;
/// The one symbol a plugin exports, of type [`UsEntry`] (NUL-terminated, as
/// `dlsym` takes it). Its name carries the major version.
pub const ENTRY: &[u8] = b"unitscope_plugin_v1\0";
/// The most axes a [`UsTensor`] or [`UsLayerInfo`] has.
pub const MAX_RANK: usize = 8;

/// Status: the call succeeded.
pub const US_OK: i32 = 0;
/// Status: the call failed; its `error` says why.
pub const US_ERROR: i32 = 1;
/// Status: the call stopped because the host asked it to (see [`UsHost::cancelled`]).
pub const US_CANCELLED: i32 = 2;

/// [`UsPlugin::kind`]: an attribution method ([`UsMethod`]).
pub const KIND_METHOD: u32 = 1;
/// [`UsPlugin::kind`]: a modality ([`UsModality`]).
pub const KIND_MODALITY: u32 = 2;

/// [`UsParam::kind`]: a whole number in `integer_min..=integer_max`.
pub const PARAM_INTEGER: u32 = 1;
/// [`UsParam::kind`]: a finite real number in `real_min..=real_max`.
pub const PARAM_REAL: u32 = 2;
/// [`UsParam::kind`]: one of `choices`.
pub const PARAM_CHOICE: u32 = 3;
/// [`UsParam::kind`]: on or off, off by default.
pub const PARAM_FLAG: u32 = 4;
/// [`UsParam::kind`]: free text.
pub const PARAM_TEXT: u32 = 5;
/// [`UsParam::kind`]: layer names (`layer` is the host's own parameter, by default
/// the model's last feature map; any other is empty unless given).
pub const PARAM_LAYERS: u32 = 6;

/// [`UsTarget::kind`]: a class logit.
pub const TARGET_CLASS: u32 = 1;
/// [`UsTarget::kind`]: a unit: a channel's spatial mean, or one position.
pub const TARGET_UNIT: u32 = 2;
/// [`UsTarget::kind`]: a weighted sum of the class logits.
pub const TARGET_WEIGHTED: u32 = 3;

/// Backward rule at every rectifier: the true gradient.
pub const RULE_GRADIENT: u32 = 0;
/// Backward rule at every rectifier: guided backpropagation.
pub const RULE_GUIDED_BACKPROP: u32 = 1;
/// Backward rule at every rectifier: DeconvNet.
pub const RULE_DECONVNET: u32 = 2;

/// [`UsDecoded::display`]: an RGB picture with two axes.
pub const DISPLAY_IMAGE: u32 = 1;
/// [`UsDecoded::display`]: a sequence of tokens.
pub const DISPLAY_TOKENS: u32 = 2;

/// Borrowed UTF-8 text: valid for as long as the call or the struct that holds it
/// says.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsStr {
    /// The first byte; may be null when `len` is 0.
    pub ptr: *const u8,
    /// Its length in bytes.
    pub len: usize,
}

/// Owned UTF-8 text (an error message), freed by the side that made it.
#[repr(C)]
#[derive(Debug)]
pub struct UsText {
    /// The first byte; null when there is no text.
    pub ptr: *mut u8,
    /// Its length in bytes.
    pub len: usize,
    /// Frees `ptr` (given `ptr` and `len`); null when there is nothing to free.
    pub free: Option<unsafe extern "C" fn(ptr: *mut u8, len: usize)>,
}

/// A dense float32 array in row-major order.
#[repr(C)]
#[derive(Debug)]
pub struct UsTensor {
    /// The first element; may be null when `len` is 0.
    pub data: *mut f32,
    /// The number of elements: the product of `dims[..rank]`.
    pub len: usize,
    /// The number of axes, at most [`MAX_RANK`].
    pub rank: u32,
    /// The length of each axis; entries beyond `rank` are 0.
    pub dims: [u64; MAX_RANK],
    /// Frees `data` (given `data` and `len`): set on a tensor handed over for
    /// keeps, null on a borrowed one.
    pub free: Option<unsafe extern "C" fn(data: *mut f32, len: usize)>,
}

/// One named choice of a [`PARAM_CHOICE`] parameter.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsChoice {
    /// The value as typed.
    pub name: UsStr,
    /// One line of help.
    pub help: UsStr,
}

/// A parameter a method declares: the same descriptor the host's own methods
/// declare, so it becomes a command-line option and a row of the TUI's panel.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsParam {
    /// Its name: the option is `--NAME`.
    pub name: UsStr,
    /// One line of help.
    pub help: UsStr,
    /// One of the `PARAM_*` constants.
    pub kind: u32,
    /// [`PARAM_INTEGER`]: the default.
    pub integer_default: u64,
    /// [`PARAM_INTEGER`]: the least allowed.
    pub integer_min: u64,
    /// [`PARAM_INTEGER`]: the most allowed.
    pub integer_max: u64,
    /// [`PARAM_REAL`]: the default.
    pub real_default: f64,
    /// [`PARAM_REAL`]: the least allowed.
    pub real_min: f64,
    /// [`PARAM_REAL`]: the most allowed.
    pub real_max: f64,
    /// [`PARAM_CHOICE`] and [`PARAM_TEXT`]: the default.
    pub text_default: UsStr,
    /// [`PARAM_CHOICE`]: the choices.
    pub choices: *const UsChoice,
    /// [`PARAM_CHOICE`]: how many.
    pub n_choices: usize,
}

/// A parameter's value for one call, borrowed for the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsArg {
    /// The parameter's name.
    pub name: UsStr,
    /// Its kind, as declared.
    pub kind: u32,
    /// [`PARAM_INTEGER`].
    pub integer: u64,
    /// [`PARAM_REAL`].
    pub real: f64,
    /// [`PARAM_FLAG`]: 0 or 1.
    pub flag: u8,
    /// [`PARAM_CHOICE`] and [`PARAM_TEXT`].
    pub text: UsStr,
    /// [`PARAM_LAYERS`]: the names.
    pub layers: *const UsStr,
    /// [`PARAM_LAYERS`]: how many.
    pub n_layers: usize,
}

/// What one input's map explains.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsTarget {
    /// One of the `TARGET_*` constants.
    pub kind: u32,
    /// [`TARGET_CLASS`]: the class index.
    pub class_index: u64,
    /// [`TARGET_UNIT`]: the layer's name.
    pub layer: UsStr,
    /// [`TARGET_UNIT`]: the channel.
    pub channel: u64,
    /// [`TARGET_UNIT`]: 1 when `y` and `x` name a position, 0 for the channel's
    /// spatial mean.
    pub has_position: u8,
    /// [`TARGET_UNIT`]: the row in the layer's feature map.
    pub y: u64,
    /// [`TARGET_UNIT`]: the column.
    pub x: u64,
    /// [`TARGET_WEIGHTED`]: one weight per class.
    pub weights: *const f32,
    /// [`TARGET_WEIGHTED`]: how many (the model's class count).
    pub n_weights: usize,
}

/// Model passes per input.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsPasses {
    /// Forward passes followed by a backward pass.
    pub backward: u64,
    /// Forward passes alone.
    pub forward: u64,
}

/// The model under inspection. Its text is the host's, valid during the call
/// into the plugin that asked for it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsModelInfo {
    /// Set by the caller to its `size_of::<UsModelInfo>()`; the host fills at
    /// most that many bytes and sets it to what it filled.
    pub size: u32,
    /// The model's name.
    pub name: UsStr,
    /// One input's channels.
    pub channels: u64,
    /// One input's rows.
    pub height: u64,
    /// One input's columns.
    pub width: u64,
    /// The number of classes (logits).
    pub classes: u64,
    /// The number of layers ([`UsHost::layer`] gives each).
    pub layers: u64,
}

/// One layer of the model; text valid as for [`UsModelInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UsLayerInfo {
    /// Set by the caller to its `size_of::<UsLayerInfo>()`; the host fills at
    /// most that many bytes and sets it to what it filled.
    pub size: u32,
    /// Its name, as targets and recorded layers name it.
    pub name: UsStr,
    /// Its kind, e.g. `conv`, `relu`, `linear`.
    pub kind: UsStr,
    /// The number of axes of one input's activation.
    pub rank: u32,
    /// One input's activation shape, e.g. `[C, H, W]`.
    pub dims: [u64; MAX_RANK],
}

/// The host's side, handed to every call that may need it: the one engine every
/// plugin runs its model through. Callbacks return a status; on [`US_ERROR`] they
/// fill `error` (the plugin frees it with its `free`). Tensors they fill are the
/// host's, for keeps: the plugin frees each with its `free`. Call them from the
/// thread that called the plugin.
#[repr(C)]
#[derive(Debug)]
pub struct UsHost {
    /// `size_of::<UsHost>()` as the host knows it.
    pub size: u32,
    /// The host's ABI minor version: entries of later minors are absent.
    pub abi_minor: u32,
    /// The host's state, passed back to every callback.
    pub ctx: *mut c_void,
    /// The model's shape and sizes.
    pub model:
        unsafe extern "C" fn(ctx: *mut c_void, out: *mut UsModelInfo, error: *mut UsText) -> i32,
    /// Layer `index` (`0..layers`).
    pub layer: unsafe extern "C" fn(
        ctx: *mut c_void,
        index: u64,
        out: *mut UsLayerInfo,
        error: *mut UsText,
    ) -> i32,
    /// A forward pass of `inputs` (`[N, C, H, W]`): the logits `[N, classes]` and
    /// each of the `n_layers` named layers' activations (`recorded[i]`, `[N, ...]`).
    pub forward: unsafe extern "C" fn(
        ctx: *mut c_void,
        inputs: *const UsTensor,
        layers: *const UsStr,
        n_layers: usize,
        logits: *mut UsTensor,
        recorded: *mut UsTensor,
        error: *mut UsText,
    ) -> i32,
    /// One forward and one backward pass under `rule` (a `RULE_*`): the gradient
    /// of sample `i`'s target `targets[i]` with respect to the input (`[N, C, H,
    /// W]`) and to each of the `n_layers` named layers (`layer_gradients[i]`).
    pub gradient: unsafe extern "C" fn(
        ctx: *mut c_void,
        inputs: *const UsTensor,
        targets: *const UsTarget,
        n_targets: usize,
        rule: u32,
        layers: *const UsStr,
        n_layers: usize,
        input_gradient: *mut UsTensor,
        layer_gradients: *mut UsTensor,
        error: *mut UsText,
    ) -> i32,
    /// Nonzero once the user has cancelled the work: return [`US_CANCELLED`] soon.
    pub cancelled: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
}

/// An attribution method's entries.
#[repr(C)]
#[derive(Debug)]
pub struct UsMethod {
    /// `size_of::<UsMethod>()` as the plugin was built with.
    pub size: u32,
    /// Where the method comes from, e.g. `Petsiuk et al. 2018`.
    pub citation: UsStr,
    /// The parameters it reads.
    pub params: *const UsParam,
    /// How many.
    pub n_params: usize,
    /// The maps of `inputs` (`[N, C, H, W]`, preprocessed), sample `i` explaining
    /// `targets[i]`: into `maps`, `[N, C, H, W]` or `[N, 1, H, W]`, handed over
    /// with its free function. `args` holds every declared parameter's value.
    /// Required.
    pub attribute: Option<
        unsafe extern "C" fn(
            host: *const UsHost,
            args: *const UsArg,
            n_args: usize,
            inputs: *const UsTensor,
            targets: *const UsTarget,
            n_targets: usize,
            maps: *mut UsTensor,
            error: *mut UsText,
        ) -> i32,
    >,
    /// Optional: model passes per input of `height x width`. Absent: one backward
    /// pass.
    pub passes: Option<
        unsafe extern "C" fn(
            args: *const UsArg,
            n_args: usize,
            height: u64,
            width: u64,
            out: *mut UsPasses,
            error: *mut UsText,
        ) -> i32,
    >,
}

/// A decoded file: the model's input and what to draw it as. Everything it points
/// to is the plugin's, valid until [`UsModality::release`] is called on `handle`.
#[repr(C)]
#[derive(Debug)]
pub struct UsDecoded {
    /// Set by the host to its `size_of::<UsDecoded>()`; the plugin fills at most
    /// that many bytes and sets it to what it filled.
    pub size: u32,
    /// The plugin's own state for this file, given back to `draw` and `release`.
    pub handle: *mut c_void,
    /// The model's input, `[C, H, W]`, preprocessed (borrowed: no `free`).
    pub input: UsTensor,
    /// [`DISPLAY_IMAGE`] or [`DISPLAY_TOKENS`].
    pub display: u32,
    /// [`DISPLAY_IMAGE`]: RGB bytes, row-major, `3 * width * height` of them.
    pub rgb: *const u8,
    /// [`DISPLAY_IMAGE`]: the picture's columns.
    pub width: u64,
    /// [`DISPLAY_IMAGE`]: the picture's rows.
    pub height: u64,
    /// The horizontal axis: what it measures, e.g. `time`.
    pub x_label: UsStr,
    /// The horizontal axis's unit, e.g. `s`.
    pub x_unit: UsStr,
    /// The horizontal axis's value at the left edge.
    pub x_start: f64,
    /// The horizontal axis's value at the right edge.
    pub x_end: f64,
    /// The vertical axis: what it measures, e.g. `frequency`.
    pub y_label: UsStr,
    /// The vertical axis's unit, e.g. `Hz`.
    pub y_unit: UsStr,
    /// The vertical axis's value at the top edge.
    pub y_start: f64,
    /// The vertical axis's value at the bottom edge.
    pub y_end: f64,
    /// [`DISPLAY_TOKENS`]: the tokens, in order.
    pub tokens: *const UsStr,
    /// [`DISPLAY_TOKENS`]: how many.
    pub n_tokens: usize,
}

/// A modality's entries: files it opens, how they become inputs, how maps go back
/// onto them.
#[repr(C)]
#[derive(Debug)]
pub struct UsModality {
    /// `size_of::<UsModality>()` as the plugin was built with.
    pub size: u32,
    /// The file extensions it opens, lower case, without the dot (`wav`).
    pub extensions: *const UsStr,
    /// How many.
    pub n_extensions: usize,
    /// A model card shipped with the plugin, relative to the plugin's file; empty
    /// when it ships none.
    pub card: UsStr,
    /// Decodes the file at `path` into `out`, its input in the shape the model
    /// takes, `[channels, height, width]`. An error is the file's (unreadable,
    /// corrupt, too large), not the plugin's: the host reports it and carries on.
    /// Required.
    pub decode: Option<
        unsafe extern "C" fn(
            path: UsStr,
            channels: u64,
            height: u64,
            width: u64,
            out: *mut UsDecoded,
            error: *mut UsText,
        ) -> i32,
    >,
    /// Frees what `decode` made. Required.
    pub release: Option<unsafe extern "C" fn(handle: *mut c_void)>,
    /// Optional: draws `map` (`[H, W]`, the input's positions, values in `0..=1`;
    /// a signed map comes as `(1 + v) / 2`, so that 0.5 is zero) onto the file's
    /// picture, into `rgb` (`[height, width, 3]` floats in `0..=1` at the
    /// picture's size, handed over with its `free`). Called for attributions and
    /// unit activations alike, one call at a time per handle. Absent: the host
    /// draws its heatmap over the picture.
    pub draw: Option<
        unsafe extern "C" fn(
            handle: *mut c_void,
            map: *const UsTensor,
            rgb: *mut UsTensor,
            error: *mut UsText,
        ) -> i32,
    >,
    /// ABI 1.1, optional: the modality's world, null when it has none. Past the
    /// `size` of a 1.0 plugin's struct, so absent there.
    pub world: *const UsWorld,
}

/// A modality's world (ABI 1.1): samples made on demand whose class and concepts
/// are known position by position, for the host to train the modality's model on
/// and to dissect it against. Static for the life of the process.
#[repr(C)]
#[derive(Debug)]
pub struct UsWorld {
    /// `size_of::<UsWorld>()` as the plugin was built with.
    pub size: u32,
    /// The class names, in class order.
    pub classes: *const UsStr,
    /// How many.
    pub n_classes: usize,
    /// The concept names, in concept order (the masks' order).
    pub concepts: *const UsStr,
    /// Each concept's category (`n_concepts` of them), e.g. `event`.
    pub categories: *const UsStr,
    /// How many concepts.
    pub n_concepts: usize,
    /// Samples from this index on are held out: training never draws them.
    pub held_out: u64,
    /// Makes sample `index` of the world of `seed` into `out` (whose `size` the
    /// host set: fill no more), its input `[channels, height, width]` as
    /// [`UsModality::decode`] makes a file's. The same arguments give the same
    /// sample, on any thread. Required.
    pub sample: Option<
        unsafe extern "C" fn(
            seed: u64,
            index: u64,
            channels: u64,
            height: u64,
            width: u64,
            out: *mut UsSample,
            error: *mut UsText,
        ) -> i32,
    >,
    /// The track names (ABI 1.2): real-valued quantities known at every position of
    /// a sample, in the tracks' order (a text's bracket depth, its column).
    pub tracks: *const UsStr,
    /// How many (0: none).
    pub n_tracks: usize,
}

/// One sample of a world, handed over: both tensors carry their `free`.
#[repr(C)]
#[derive(Debug)]
pub struct UsSample {
    /// `size_of::<UsSample>()` as the caller was built with; the callee sets it to
    /// the bytes it filled.
    pub size: u32,
    /// The input, `[channels, height, width]`.
    pub input: UsTensor,
    /// Its class, below `n_classes`.
    pub class_index: u64,
    /// Where each concept is, `[n_concepts, height, width]`, 0 or 1.
    pub masks: UsTensor,
    /// Each track's value at every position, `[n_tracks, height, width]`, finite
    /// (ABI 1.2; empty for a world of no tracks).
    pub tracks: UsTensor,
}

/// What a plugin is, as its entry returns it; static for the life of the process.
#[repr(C)]
#[derive(Debug)]
pub struct UsPlugin {
    /// `size_of::<UsPlugin>()` as the plugin was built with.
    pub size: u32,
    /// The ABI major it was built for ([`ABI_MAJOR`]).
    pub abi_major: u32,
    /// The ABI minor it was built for ([`ABI_MINOR`]).
    pub abi_minor: u32,
    /// [`KIND_METHOD`] or [`KIND_MODALITY`].
    pub kind: u32,
    /// Its name: a method's name on the command line (`rise`).
    pub name: UsStr,
    /// Its own version, e.g. `0.1.0`.
    pub version: UsStr,
    /// One line on what it does.
    pub about: UsStr,
    /// [`KIND_METHOD`]: the method's entries.
    pub method: *const UsMethod,
    /// [`KIND_MODALITY`]: the modality's entries.
    pub modality: *const UsModality,
}

/// The entry symbol's type. The host passes its ABI version; the plugin returns
/// its static description, or null with `error` filled when it cannot run here.
pub type UsEntry =
    unsafe extern "C" fn(host_major: u32, host_minor: u32, error: *mut UsText) -> *const UsPlugin;

impl UsStr {
    /// Borrows `s`.
    pub const fn new(s: &str) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The empty text.
    pub const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// The text; an error when it is not UTF-8, or is a null pointer with a
    /// length.
    ///
    /// # Safety
    /// A non-null `ptr` points to `len` readable bytes for `'a`.
    pub unsafe fn to_str<'a>(self) -> Result<&'a str, String> {
        if self.len == 0 {
            return Ok("");
        }
        if self.ptr.is_null() || self.len > isize::MAX as usize {
            return Err(format!("text of {} bytes at a null pointer", self.len));
        }
        // SAFETY: the caller vouches for the bytes; the pointer is not null.
        std::str::from_utf8(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
            .map_err(|e| format!("text that is not UTF-8 ({e})"))
    }
}

impl UsText {
    /// No text.
    pub const NONE: Self = Self {
        ptr: std::ptr::null_mut(),
        len: 0,
        free: None,
    };
}

impl UsTensor {
    /// No tensor: what an output starts as.
    pub const EMPTY: Self = Self {
        data: std::ptr::null_mut(),
        len: 0,
        rank: 0,
        dims: [0; MAX_RANK],
        free: None,
    };
}

/// Fills `out`, a struct the caller sized (its first field, `size`, set to the
/// caller's `size_of::<T>()`), with at most that many bytes of `value`, and sets
/// its `size` to the bytes filled: what a newer side writes into an older side's
/// smaller struct.
///
/// # Safety
/// `T` is one of this module's structs that begin with `size: u32`; `out` is valid
/// for writes of the size it states, and for reads of its first four bytes.
pub unsafe fn fill_sized<T>(out: *mut T, value: T) {
    // SAFETY: the caller vouches for `out`'s first field.
    let wanted = unsafe { out.cast::<u32>().read() } as usize;
    let n = wanted.min(size_of::<T>());
    let value = std::mem::ManuallyDrop::new(value);
    // SAFETY: `n` bytes fit both; the structs hold no owned data to drop.
    unsafe {
        std::ptr::copy_nonoverlapping((&*value as *const T).cast::<u8>(), out.cast::<u8>(), n);
        if n >= 4 {
            out.cast::<u32>().write(n as u32);
        }
    }
}
