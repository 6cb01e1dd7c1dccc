//! Fully connected layers, `x · wᵀ`, with a backward pass that forms only the
//! gradients needed.

use candle_core::{Result, Tensor};

use super::{Backward, with_backward};
use crate::model::cpu;

/// `x · wᵀ` for `x: [N, in]` and `w: [out, in]`, with a backward pass that forms only
/// the gradients needed (on the CPU, [`cpu::linear`]): Candle's matmul backward
/// always forms both, and for attribution through VGG's classifier the weight
/// gradient alone is a 25088 x 4096 outer product per pass that nothing reads.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::linear(x, w);
    }
    let value = x.detach().matmul(&w.detach().t()?)?;
    with_backward(x, w, value, Linear)
}

struct Linear;

impl Backward for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gx = x.track_op().then(|| grad.matmul(&w.detach())).transpose()?;
        let gw = w
            .track_op()
            .then(|| grad.t()?.matmul(&x.detach()))
            .transpose()?;
        Ok((gx, gw))
    }
}
