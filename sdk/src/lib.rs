//! unitscope-sdk: extend unitscope with new attribution methods and modalities
//! shipped as dynamic libraries, without forking it and without linking its
//! engine.
//!
//! A plugin is a `cdylib` exporting one symbol, `unitscope_plugin_v1`, through
//! which the host learns what it is ([`abi::UsPlugin`]). Everything that crosses
//! is in [`abi`]: `#[repr(C)]` structs and `extern "C"` functions only, so host and
//! plugin may come from different compilers (`include/unitscope.h` declares the
//! same ABI for C and C++).
//!
//! A Rust author writes no `unsafe`: implement [`Method`] (or [`Modality`]) and
//! name the type in [`export_plugin!`]. Every call the host makes is caught: an
//! error or a panic comes back to the host as text, which disables the plugin
//! and tells the user in one line, and never unwinds into the host.
//!
//! ```no_run
//! use unitscope_sdk::{Args, Error, Host, Method, Param, Target, Tensor, export_plugin};
//!
//! #[derive(Default)]
//! struct InputTimesGradient;
//!
//! impl Method for InputTimesGradient {
//!     const NAME: &'static str = "input-x-gradient-example";
//!     const VERSION: &'static str = "0.1.0";
//!     const ABOUT: &'static str = "the input times its gradient";
//!     const CITATION: &'static str = "Shrikumar et al. 2016";
//!
//!     fn attribute(&self, host: &Host, _: &Args, inputs: &Tensor, targets: &[Target]) -> Result<Tensor, Error> {
//!         let mut map = host.gradient(inputs, targets, Default::default(), &[])?.input;
//!         for (m, x) in map.data_mut().iter_mut().zip(inputs.data()) {
//!             *m *= x;
//!         }
//!         Ok(map)
//!     }
//! }
//!
//! export_plugin!(method: InputTimesGradient);
//! ```

pub mod abi;
mod buffer;
#[doc(hidden)]
pub mod export;
mod host;
mod method;
mod modality;
mod param;
mod tensor;

pub use host::{Forward, Gradients, Host, LayerInfo, ModelInfo, Rule, Target};
pub use method::{Method, Passes};
pub use modality::{Axis, Concept, Decoded, Display, Modality, Sample};
pub use param::{Args, Kind, Param, Value};
pub use tensor::Tensor;

use std::fmt;

/// Why a call failed: text the host shows the user in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
    cancelled: bool,
}

impl Error {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cancelled: false,
        }
    }

    /// The work stopped because the host asked ([`Host::cancelled`]): not a
    /// failure of the plugin.
    pub fn cancelled() -> Self {
        Self {
            message: "cancelled".to_owned(),
            cancelled: true,
        }
    }

    /// Whether this is [`Error::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// `n` items at `ptr` as a slice (empty when `n` is 0, whatever `ptr` is).
///
/// # Safety
/// `ptr` points to `n` valid items for `'a` when `n > 0`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    if n == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: the caller vouches for the items.
    unsafe { std::slice::from_raw_parts(ptr, n) }
}
