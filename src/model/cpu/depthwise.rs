//! Depthwise 2-D convolution on the CPU (one `k x k` filter per channel, as in
//! EfficientNet and MobileNet), directly: every kernel tap is a scaled add of a
//! shifted input row onto an output row, one channel plane per parallel task.
//! (Candle runs a grouped convolution as one convolution per group.)

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{ConvGeometry, Element, by_dtype, elements, zero};

/// `dst[i] += weight * src[i * stride]` over `dst`.
fn scaled_add<T: Element>(dst: &mut [T], src: &[T], stride: usize, weight: T) {
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += weight * s);
    } else {
        for (i, d) in dst.iter_mut().enumerate() {
            *d += weight * src[i * stride];
        }
    }
}

/// `dst[i * stride] += weight * src[i]` over `src`: the transpose of [`scaled_add`].
fn scaled_scatter<T: Element>(dst: &mut [T], src: &[T], stride: usize, weight: T) {
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += weight * s);
    } else {
        for (i, &s) in src.iter().enumerate() {
            dst[i * stride] += weight * s;
        }
    }
}

/// `sum over i of a[i] * b[i * stride]`.
fn strided_dot<T: Element>(a: &[T], b: &[T], stride: usize) -> T {
    if stride == 1 {
        a.iter().zip(b).fold(zero(), |sum, (&a, &b)| sum + a * b)
    } else {
        let b = b.iter().step_by(stride);
        a.iter().zip(b).fold(zero(), |sum, (&a, &b)| sum + a * b)
    }
}

/// The geometry of one channel plane (`c_in` = `c_out` = 1).
fn plane_geometry(g: &ConvGeometry) -> ConvGeometry {
    ConvGeometry {
        c_in: 1,
        c_out: 1,
        ..*g
    }
}

fn forward<T: Element>(g: &ConvGeometry, x: &[T], kernel: &[T], bias: &[T]) -> Vec<T> {
    let p = plane_geometry(g);
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let mut out = vec![zero(); x.len() / (g.h * g.w) * out_plane];
    out.par_chunks_mut(out_plane)
        .zip(x.par_chunks(g.h * g.w))
        .enumerate()
        .for_each(|(i, (out, x))| {
            let c = i % g.c_in;
            out.fill(bias[c]);
            let w = &kernel[c * taps..(c + 1) * taps];
            p.for_each_segment(0, |tap, row, src, (lo, hi)| {
                scaled_add(&mut out[row + lo..row + hi], &x[src..], g.stride, w[tap]);
            });
        });
    out
}

fn input_grad<T: Element>(g: &ConvGeometry, grad: &[T], kernel: &[T]) -> Vec<T> {
    let p = plane_geometry(g);
    let (taps, out_plane) = (g.k * g.k, g.oh * g.ow);
    let mut dx = vec![zero(); grad.len() / out_plane * g.h * g.w];
    dx.par_chunks_mut(g.h * g.w)
        .zip(grad.par_chunks(out_plane))
        .enumerate()
        .for_each(|(i, (dx, grad))| {
            dx.fill(zero()); // written before read, as in conv's col2im
            let w = &kernel[(i % g.c_in) * taps..][..taps];
            p.for_each_segment(0, |tap, row, src, (lo, hi)| {
                scaled_scatter(&mut dx[src..], &grad[row + lo..row + hi], g.stride, w[tap]);
            });
        });
    dx
}

fn kernel_grad<T: Element>(g: &ConvGeometry, x: &[T], grad: &[T]) -> Vec<T> {
    let p = plane_geometry(g);
    let (taps, in_plane, out_plane) = (g.k * g.k, g.h * g.w, g.oh * g.ow);
    let n = x.len() / (g.c_in * in_plane);
    let mut dw = vec![zero(); g.c_in * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dw)| {
        for sample in 0..n {
            let plane = sample * g.c_in + c;
            let x = &x[plane * in_plane..][..in_plane];
            let grad = &grad[plane * out_plane..][..out_plane];
            p.for_each_segment(0, |tap, row, src, (lo, hi)| {
                dw[tap] += strided_dot(&grad[row + lo..row + hi], &x[src..], g.stride);
            });
        }
    });
    dw
}

/// The depthwise convolution of `x: [N, C, H, W]` with `kernel: [C, 1, k, k]`, plus
/// `bias: [C]` if given; `g.c_in` = `g.c_out` = `C`.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    g: ConvGeometry,
) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(g.c_out, x.dtype(), x.device())?,
    };
    x.contiguous()?
        .apply_op3(&kernel.contiguous()?, &bias, Depthwise(g))
}

struct Depthwise(ConvGeometry);

impl CustomOp3 for Depthwise {
    fn name(&self) -> &'static str {
        "cpu-depthwise-conv2d"
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
            g: &ConvGeometry,
            (x, x_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
            (b, b_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let out = forward(g, elements(x, x_l)?, elements(w, w_l)?, elements(b, b_l)?);
            Ok(T::to_cpu_storage_owned(out))
        }
        let g = &self.0;
        let out = by_dtype!(x, run(g, (x, x_l), (w, w_l), (b, b_l)))?;
        Ok((out, (x_l.dims()[0], g.c_out, g.oh, g.ow).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gx = x
            .track_op()
            .then(|| grad.apply_op2_no_bwd(&w.detach(), &InputGrad(self.0)))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| x.detach().apply_op2_no_bwd(&grad, &KernelGrad(self.0)))
            .transpose()?;
        let gb = b.track_op().then(|| grad.sum((0, 2, 3))).transpose()?;
        Ok((gx, gw, gb))
    }
}

/// `(output gradient, kernel) -> input gradient`.
struct InputGrad(ConvGeometry);

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "cpu-depthwise-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            g: &ConvGeometry,
            (grad, grad_l): (&CpuStorage, &Layout),
            (w, w_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let dx = input_grad(g, elements::<T>(grad, grad_l)?, elements(w, w_l)?);
            Ok(T::to_cpu_storage_owned(dx))
        }
        let g = &self.0;
        let dx = by_dtype!(grad, run(g, (grad, grad_l), (w, w_l)))?;
        Ok((dx, (grad_l.dims()[0], g.c_in, g.h, g.w).into()))
    }
}

/// `(input, output gradient) -> kernel gradient`.
struct KernelGrad(ConvGeometry);

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "cpu-depthwise-conv2d-kernel-grad"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fn run<T: Element>(
            g: &ConvGeometry,
            (x, x_l): (&CpuStorage, &Layout),
            (grad, grad_l): (&CpuStorage, &Layout),
        ) -> Result<CpuStorage> {
            let dw = kernel_grad(g, elements::<T>(x, x_l)?, elements(grad, grad_l)?);
            Ok(T::to_cpu_storage_owned(dw))
        }
        let g = &self.0;
        let dw = by_dtype!(x, run(g, (x, x_l), (grad, grad_l)))?;
        Ok((dw, (g.c_out, 1, g.k, g.k).into()))
    }
}
