//! Where a backward pass leaves the gradient at a point it stops at: shared by the
//! ops that stop there ([`super::ops::hold`]) and the CPU kernels that run them.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{Result, Tensor};

/// A gradient left by a backward pass, summed over every reader of the point.
#[derive(Clone, Default)]
pub(crate) struct Holder(Arc<Mutex<Option<Tensor>>>);

impl Holder {
    /// Adds `grad` to what this backward pass left so far: the hold's output read
    /// twice gets a gradient from each reader.
    pub(crate) fn put(&self, grad: Tensor) -> Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some(match slot.take() {
            Some(sum) => (sum + grad)?,
            None => grad,
        });
        Ok(())
    }

    /// What was left, taken out.
    pub(crate) fn take(&self) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
