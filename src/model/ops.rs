//! Autograd operations Candle lacks: rectifiers whose backward pass follows a chosen
//! rule, and a max pool whose backward pass works for overlapping windows.
//!
//! Both are built the same way. The forward value is computed with ordinary Candle
//! ops (so it runs on every device), detached, and handed to a pass-through custom op
//! that copies it and owns the backward pass. A custom op with only a CPU forward
//! would break on CUDA; copying storage is the same code on every backend.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::capture::BackwardRule;

/// The gradient half of an op whose value is computed elsewhere.
trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The gradient with respect to `source`, given the op's `value` and the
    /// gradient flowing into it.
    fn grad(&self, source: &Tensor, value: &Tensor, grad: &Tensor) -> Result<Tensor>;
}

/// Returns `value` (computed from `source`) with gradients to `source` given by `b`.
fn with_backward<B: Backward>(source: &Tensor, value: Tensor, b: B) -> Result<Tensor> {
    let value = value.detach();
    // The copy below clones the whole storage, which must therefore be exactly the
    // tensor: contiguous and starting at offset 0.
    let value = if value.is_contiguous() && value.layout().start_offset() == 0 {
        value
    } else {
        value.copy()?
    };
    source.apply_op2(&value, PassThrough(b))
}

struct PassThrough<B>(B);

impl<B: Backward> CustomOp2 for PassThrough<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn cpu_fwd(
        &self,
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
        v: &CudaStorage,
        l: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Ok((v.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        source: &Tensor,
        value: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.0.grad(source, value, grad)?), None))
    }
}

/// Which rectifier: ReLU, or ReLU6 (clamped to [0, 6], as EfficientNet-Lite uses).
#[derive(Clone, Copy)]
enum Rectifier {
    Relu,
    Relu6,
}

struct Rectify {
    kind: Rectifier,
    rule: BackwardRule,
}

impl Backward for Rectify {
    fn name(&self) -> &'static str {
        "rectifier-with-rule"
    }

    fn grad(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Tensor> {
        // PyTorch passes gradient where the forward was strictly inside the linear
        // range: x > 0 for ReLU, 0 < x < 6 for ReLU6 (hardtanh_backward).
        let open = || -> Result<Tensor> {
            let mask = x.gt(0.0)?;
            let mask = match self.kind {
                Rectifier::Relu => mask,
                Rectifier::Relu6 => mask.mul(&x.lt(6.0)?)?,
            };
            mask.to_dtype(grad.dtype())
        };
        match self.rule {
            BackwardRule::Gradient => grad.mul(&open()?),
            BackwardRule::GuidedBackprop => grad.relu()?.mul(&open()?),
            BackwardRule::DeconvNet => grad.relu(),
        }
    }
}

/// ReLU whose backward pass follows `rule`.
pub(crate) fn relu(x: &Tensor, rule: BackwardRule) -> Result<Tensor> {
    with_backward(
        x,
        x.relu()?,
        Rectify {
            kind: Rectifier::Relu,
            rule,
        },
    )
}

/// ReLU6 (`min(max(x, 0), 6)`) whose backward pass follows `rule`.
pub(crate) fn relu6(x: &Tensor, rule: BackwardRule) -> Result<Tensor> {
    with_backward(
        x,
        x.clamp(0f32, 6f32)?,
        Rectify {
            kind: Rectifier::Relu6,
            rule,
        },
    )
}

struct MaxPool {
    kernel: usize,
    stride: usize,
}

impl Backward for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool"
    }

    /// Routes each window's whole gradient to the first maximum in the window (row
    /// by row), as PyTorch does; overlapping windows add up. Computed on the host:
    /// a scatter with data-dependent indices, small next to the convolutions.
    fn grad(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (_, _, oh, ow) = grad.dims4()?;
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let gs = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; xs.len()];
        for plane in 0..n * c {
            let xp = &xs[plane * h * w..(plane + 1) * h * w];
            let op = &mut out[plane * h * w..(plane + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (y0, x0) = (oy * self.stride, ox * self.stride);
                    let mut best = (y0 * w + x0, f32::NEG_INFINITY);
                    for y in y0..(y0 + self.kernel).min(h) {
                        for xx in x0..(x0 + self.kernel).min(w) {
                            let v = xp[y * w + xx];
                            if v > best.1 || v.is_nan() {
                                best = (y * w + xx, v);
                            }
                        }
                    }
                    op[best.0] += gs[(plane * oh + oy) * ow + ox];
                }
            }
        }
        Tensor::from_vec(out, (n, c, h, w), x.device())?.to_dtype(x.dtype())
    }
}

/// 2-D max pooling with PyTorch's semantics (implicit -inf padding, floor mode) and a
/// backward pass for any kernel and stride.
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let x = if padding > 0 {
        let pad_dim = |t: &Tensor, dim: usize| -> Result<Tensor> {
            let mut shape = t.dims().to_vec();
            shape[dim] = padding;
            let fill = Tensor::full(f32::NEG_INFINITY, shape, t.device())?.to_dtype(t.dtype())?;
            Tensor::cat(&[&fill, t, &fill], dim)
        };
        pad_dim(&pad_dim(x, 2)?, 3)?
    } else {
        x.clone()
    };
    let value = x.detach().max_pool2d_with_stride(kernel, stride)?;
    with_backward(&x, value, MaxPool { kernel, stride })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The gradient `f` passes back to `x` when `g` arrives at its output.
    fn backward_of(x: &[f32], g: &[f32], f: impl Fn(&Tensor) -> Result<Tensor>) -> Vec<f32> {
        let x = Var::new(x, &Device::Cpu).unwrap();
        let g = Tensor::new(g, &Device::Cpu).unwrap();
        let y = f(x.as_tensor()).unwrap();
        let grads = y.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
        grads.get(x.as_tensor()).unwrap().to_vec1().unwrap()
    }

    #[test]
    fn rectifier_rules() {
        let x = [-1.0, 0.0, 3.0, 7.0];
        let g = [1.0, 1.0, -1.0, 1.0];
        let cases = [
            (
                BackwardRule::Gradient,
                [0.0, 0.0, -1.0, 1.0],
                [0.0, 0.0, -1.0, 0.0],
            ),
            (
                BackwardRule::GuidedBackprop,
                [0.0, 0.0, 0.0, 1.0],
                [0.0, 0.0, 0.0, 0.0],
            ),
            (
                BackwardRule::DeconvNet,
                [1.0, 1.0, 0.0, 1.0],
                [1.0, 1.0, 0.0, 1.0],
            ),
        ];
        for (rule, relu_grad, relu6_grad) in cases {
            assert_eq!(
                backward_of(&x, &g, |t| relu(t, rule)),
                relu_grad,
                "ReLU {rule:?}"
            );
            assert_eq!(
                backward_of(&x, &g, |t| relu6(t, rule)),
                relu6_grad,
                "ReLU6 {rule:?}"
            );
        }
        let y = relu6(
            &Tensor::new(&x, &Device::Cpu).unwrap(),
            BackwardRule::Gradient,
        )
        .unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), [0.0, 0.0, 3.0, 6.0]);
    }

    /// Ties and overlapping windows, against PyTorch's `max_pool2d(x, 3, 2, 1)`.
    #[test]
    fn max_pool_routes_to_the_first_maximum() {
        let pool_grad = |x: &[f32]| {
            let x = Var::from_tensor(
                &Tensor::new(x, &Device::Cpu)
                    .unwrap()
                    .reshape((1, 1, 4, 4))
                    .unwrap(),
            )
            .unwrap();
            let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
            assert_eq!(y.dims(), [1, 1, 2, 2]);
            let grads = y.sum_all().unwrap().backward().unwrap();
            grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let ones = pool_grad(&[1.0; 16]);
        assert_eq!(
            ones,
            [
                1., 1., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.
            ]
        );
        let mixed = pool_grad(&[
            1., 5., 5., 2., 5., 0., 1., 5., 3., 3., 3., 3., 0., 5., 1., 1.,
        ]);
        assert_eq!(
            mixed,
            [
                0., 2., 0., 0., 1., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0.
            ]
        );
    }
}
