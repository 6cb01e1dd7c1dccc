//! The Candle custom ops around a convolution's three CPU computations (value,
//! input gradient, kernel gradient), written once for dense and depthwise kernels.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::rectify::{rectify_grad, rectify_in_place};
use super::{ConvGeometry, Element, by_dtype, elements};
use crate::model::rules::Activation;

/// A convolution's computations on contiguous slices of one element type.
pub(super) trait Convolution: Clone + Send + Sync + 'static {
    /// Op names: forward, input gradient, kernel gradient.
    const NAMES: [&'static str; 3];
    fn geometry(&self) -> &ConvGeometry;
    /// The kernel's shape, `[C_out, C_in / groups, k, k]`.
    fn kernel_shape(&self) -> Shape;
    /// `n` samples of `x` convolved with `kernel`, plus `bias`.
    fn forward<T: Element>(&self, n: usize, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T>;
    /// The input gradient of `n` samples, given the output gradient.
    fn input_grad<T: Element>(&self, n: usize, grad: &[T], kernel: &[T]) -> Vec<T>;
    /// The kernel gradient summed over the samples of `x`.
    fn kernel_grad<T: Element>(&self, x: &[T], grad: &[T]) -> Vec<T>;
}

/// `conv` of `x: [N, C_in, H, W]` with `kernel`, plus `bias: [C_out]` if given, then
/// `activation` if given. A rectifier applied here, in place, costs one pass over
/// the output; as its own op it costs a new tensor each way, and Candle's backward
/// adds a zero tensor and a sum for every op's input gradient.
pub(super) fn apply<C: Convolution>(
    conv: C,
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    activation: Option<Activation>,
) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(conv.geometry().c_out, x.dtype(), x.device())?,
    };
    x.contiguous()?
        .apply_op3(&kernel.contiguous()?, &bias, Forward { conv, activation })
}

/// The input gradient of `conv` when `grad` arrives at its output: the op its
/// backward pass applies, on its own.
pub(super) fn transpose<C: Convolution>(conv: C, grad: &Tensor, kernel: &Tensor) -> Result<Tensor> {
    grad.contiguous()?
        .apply_op2_no_bwd(&kernel.contiguous()?, &InputGrad(conv))
}

struct Forward<C> {
    conv: C,
    activation: Option<Activation>,
}

impl<C: Convolution> CustomOp3 for Forward<C> {
    fn name(&self) -> &'static str {
        C::NAMES[0]
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
        b: &CpuStorage,
        b_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            op: &Forward<impl Convolution>,
            (x, x_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
            (b, b_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let (n, x, w, b) = (
                x_l.dims()[0],
                elements(x, x_l)?,
                elements(w, w_l)?,
                elements(b, b_l)?,
            );
            let mut y = op.conv.forward::<T>(n, x, w, b);
            if let Some(a) = op.activation {
                rectify_in_place(a.kind, &mut y);
            }
            Ok(T::to_cpu_storage_owned(y))
        }
        let g = self.conv.geometry();
        let out = by_dtype!(x, run(self, (x, x_l), (w, w_l), (b, b_l)))?;
        Ok((out, (x_l.dims()[0], g.c_out, g.oh, g.ow).into()))
    }

    /// Only the gradients that something upstream needs: attribution never reads the
    /// kernel's, training never reads the image's.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = match self.activation {
            Some(a) => rectify_grad(y, grad, a)?,
            None => grad.contiguous()?,
        };
        let gx = x
            .track_op()
            .then(|| grad.apply_op2_no_bwd(&w.detach(), &InputGrad(self.conv.clone())))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| {
                x.detach()
                    .apply_op2_no_bwd(&grad, &KernelGrad(self.conv.clone()))
            })
            .transpose()?;
        let gb = b.track_op().then(|| grad.sum((0, 2, 3))).transpose()?;
        Ok((gx, gw, gb))
    }
}

/// `(output gradient, kernel) -> input gradient`.
struct InputGrad<C>(C);

impl<C: Convolution> CustomOp2 for InputGrad<C> {
    fn name(&self) -> &'static str {
        C::NAMES[1]
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            conv: &impl Convolution,
            (grad, grad_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let (n, grad, w) = (grad_l.dims()[0], elements(grad, grad_l)?, elements(w, w_l)?);
            Ok(T::to_cpu_storage_owned(conv.input_grad::<T>(n, grad, w)))
        }
        let g = self.0.geometry();
        let dx = by_dtype!(grad, run(&self.0, (grad, grad_l), (w, w_l)))?;
        Ok((dx, (grad_l.dims()[0], g.c_in, g.h, g.w).into()))
    }
}

/// `(input, output gradient) -> kernel gradient`.
struct KernelGrad<C>(C);

impl<C: Convolution> CustomOp2 for KernelGrad<C> {
    fn name(&self) -> &'static str {
        C::NAMES[2]
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            conv: &impl Convolution,
            (x, x_l): (&CpuStorage, &Layout),
            (grad, grad_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let (x, grad) = (elements(x, x_l)?, elements(grad, grad_l)?);
            Ok(T::to_cpu_storage_owned(conv.kernel_grad::<T>(x, grad)))
        }
        let dw = by_dtype!(x, run(&self.0, (x, x_l), (grad, grad_l)))?;
        Ok((dw, self.0.kernel_shape()))
    }
}
