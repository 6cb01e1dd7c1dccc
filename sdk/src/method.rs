//! An attribution method as a plugin: the trait a Rust author implements, and the
//! `extern "C"` entries the host calls, which catch every error and panic.

use crate::abi::{UsArg, UsHost, UsPasses, UsTarget, UsTensor, UsText};
use crate::export::{guarded, instance};
use crate::{Args, Error, Host, Param, Target, Tensor};

/// Model passes per input, which the host shows and bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passes {
    /// Forward passes followed by a backward pass.
    pub backward: u64,
    /// Forward passes alone.
    pub forward: u64,
}

/// An attribution method. The host builds one instance with `Default` and calls
/// it from one thread at a time per call, possibly several calls at once.
pub trait Method: Default + Send + Sync + 'static {
    /// Its name on the command line, e.g. `rise`.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// One line on what it computes.
    const ABOUT: &'static str;
    /// Where it comes from, e.g. `Petsiuk et al. 2018`.
    const CITATION: &'static str;

    /// The parameters it reads; `args` holds each one's value in every call.
    fn params() -> Vec<Param> {
        Vec::new()
    }

    /// The maps of `inputs` (`[N, C, H, W]`, preprocessed), sample `i` explaining
    /// `targets[i]`: `[N, C, H, W]`, or `[N, 1, H, W]` for one value per position.
    fn attribute(
        &self,
        host: &Host,
        args: &Args,
        inputs: &Tensor,
        targets: &[Target],
    ) -> Result<Tensor, Error>;

    /// Model passes per input of `height x width`.
    fn passes(&self, _args: &Args, _height: usize, _width: usize) -> Result<Passes, Error> {
        Ok(Passes {
            backward: 1,
            forward: 0,
        })
    }
}

/// [`crate::abi::UsMethod::attribute`] for `M`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe extern "C" fn attribute<M: Method>(
    host: *const UsHost,
    args: *const UsArg,
    n_args: usize,
    inputs: *const UsTensor,
    targets: *const UsTarget,
    n_targets: usize,
    maps: *mut UsTensor,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        // SAFETY: the host's pointers are valid for the call (the ABI's contract).
        let (host, inputs) = unsafe { (Host::new(&*host), &*inputs) };
        let args = unsafe { Args::read(args, n_args) }?;
        let values = unsafe { inputs.values() }.map_err(|e| format!("the host sent {e}"))?;
        let inputs = Tensor::new(&inputs.shape()?, values.to_vec())?;
        let targets = unsafe { crate::slice(targets, n_targets) }
            .iter()
            .map(|t| unsafe { Target::read(t) })
            .collect::<Result<Vec<_>, _>>()?;
        let map = instance::<M>()?.attribute(&host, &args, &inputs, &targets)?;
        let dims = map.dims().to_vec();
        let map = UsTensor::owned(&dims, map.into_data()).ok_or("the map has too many axes")?;
        // SAFETY: the host's output slot.
        unsafe { maps.write(map) };
        Ok(())
    })
}

/// [`crate::abi::UsMethod::passes`] for `M`.
pub(crate) unsafe extern "C" fn passes<M: Method>(
    args: *const UsArg,
    n_args: usize,
    height: u64,
    width: u64,
    out: *mut UsPasses,
    error: *mut UsText,
) -> i32 {
    guarded(error, || {
        let args = unsafe { Args::read(args, n_args) }?;
        let passes = instance::<M>()?.passes(&args, height as usize, width as usize)?;
        // SAFETY: the host's output slot.
        unsafe {
            out.write(UsPasses {
                backward: passes.backward,
                forward: passes.forward,
            })
        };
        Ok(())
    })
}
