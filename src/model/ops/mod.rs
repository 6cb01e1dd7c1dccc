//! Autograd operations Candle lacks or does slowly, one file per op family, each
//! with its Candle path and its CPU path side by side:
//!
//! - [`rectify`]: rectifiers whose backward pass follows a [`BackwardRule`];
//! - [`pool`]: a max pool whose backward pass works for overlapping windows;
//! - [`conv`], [`depthwise`]: convolutions whose backward passes compute only the
//!   gradients something needs;
//! - [`linear`]: the same for fully connected layers;
//! - [`hold`]: a point where the backward pass stops and leaves its gradient.
//!
//! All are built the same way. The forward value is computed with ordinary Candle
//! ops (so it runs on every device), detached, and handed to a pass-through custom op
//! that copies it and owns the backward pass ([`Backward`]); off the graph, the value
//! is used as is. A custom op with only a CPU forward would break on CUDA; copying
//! storage is the same code on every backend. On the CPU, f32 and f64 tensors go to
//! the hand-written kernels of [`super::cpu`] instead.
//!
//! On a GPU the copy is one device-to-device copy of each op's output per pass
//! that records a backward. It stays because both ways around it cost more: the op
//! cannot compute a convolution itself (Candle's `ParamsConv2D` cannot be built
//! outside Candle), and Candle's own convolution backward forms the kernel gradient
//! too, a second convolution-sized product that nothing reads. Every backward here
//! is whole-tensor Candle ops, so a pass never leaves the device; these are the ops
//! the tests also run on the CPU ([`crate::model::device::portable_ops`]).
//!
//! [`BackwardRule`]: super::rules::BackwardRule

mod conv;
mod depthwise;
mod hold;
mod linear;
mod pool;
mod rectify;
#[cfg(test)]
mod tests;

pub(crate) use conv::{
    Padding, add_bias, as_symmetric, conv2d, conv2d_output_dims, conv2d_transpose,
};
pub(crate) use depthwise::{depthwise_conv2d, depthwise_conv2d_transpose};
pub(crate) use hold::{Held, hold, hold_off_graph, max_pool2d_held};
pub(crate) use linear::linear;
pub(crate) use pool::{max_pool2d, max_pool2d_grad};
pub(crate) use rectify::{activate, rectify, rectify_grad, rectify_sum};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::cpu;

/// The backward half of an op whose value is computed elsewhere: the gradients of
/// its inputs `a` and `b` (`None` where not needed) given the gradient at its
/// output. A one-input op reads `a` and is handed its input twice.
trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn grads(
        &self,
        a: &Tensor,
        b: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)>;
}

/// Whether `t` is served by the CPU kernels (see [`cpu`]).
pub(crate) fn on_cpu_kernels(t: &Tensor) -> bool {
    cpu::applies(t)
}

/// `value` detached, and stored exactly: the pass-through ops clone its whole storage,
/// which must therefore be contiguous from offset 0.
fn detached(value: Tensor) -> Result<Tensor> {
    let value = value.detach();
    if value.is_contiguous() && value.layout().start_offset() == 0 {
        Ok(value)
    } else {
        value.copy()
    }
}

/// Returns `value` (computed from `a` and `b`) with gradients given by `bw`.
/// Off the graph (inference) the value is returned as it is, with no copy.
fn with_backward<B: Backward>(a: &Tensor, b: &Tensor, value: Tensor, bw: B) -> Result<Tensor> {
    if !a.track_op() && !b.track_op() {
        return Ok(value);
    }
    a.apply_op3(b, &detached(value)?, PassThrough(bw))
}

/// `value` (computed from `a` and `b`) whose backward pass is not a gradient but
/// `step`: what `a` and `b` get from what arrives at the output (a relevance rule,
/// [`super::relevance`]). Off the graph the value is returned as it is.
pub(crate) fn with_step<F>(a: &Tensor, b: &Tensor, value: Tensor, step: F) -> Result<Tensor>
where
    F: Fn(&Tensor) -> anyhow::Result<(Option<Tensor>, Option<Tensor>)> + Send + Sync + 'static,
{
    with_backward(a, b, value, Step(step))
}

/// A backward pass given as a closure ([`with_step`]).
struct Step<F>(F);

impl<F> Backward for Step<F>
where
    F: Fn(&Tensor) -> anyhow::Result<(Option<Tensor>, Option<Tensor>)> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "relevance"
    }

    fn grads(
        &self,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        (self.0)(grad).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }
}

/// Copies its third input, the value; its backward pass is `B`'s. Cloning storage is
/// the same code on every backend, so this runs wherever Candle does.
struct PassThrough<B>(B);

impl<B: Backward> CustomOp3 for PassThrough<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        v: &CpuStorage,
        l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((v.try_clone(l)?, l.shape().clone()))
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        v: &CudaStorage,
        l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Ok((v.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (ga, gb) = self.0.grads(a, b, grad)?;
        Ok((ga, gb, None))
    }
}
