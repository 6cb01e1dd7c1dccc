//! Autograd operations Candle lacks or does slowly: rectifiers whose backward pass
//! follows a chosen rule, a max pool whose backward pass works for overlapping
//! windows, convolutions (dense and depthwise) whose backward passes compute only
//! the gradients something needs, and a point where the backward pass stops and
//! leaves its gradient ([`hold`]).
//!
//! All are built the same way. The forward value is computed with ordinary Candle
//! ops (so it runs on every device), detached, and handed to a pass-through custom op
//! that copies it and owns the backward pass; off the graph, the value is used as is.
//! A custom op with only a CPU forward would break on CUDA; copying storage is the
//! same code on every backend.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var, bail,
};

use super::capture::BackwardRule;
use super::cpu;

/// The gradient half of a one-input op whose value is computed elsewhere.
trait Backward: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The gradient with respect to `source`, given the gradient flowing into the op.
    fn grad(&self, source: &Tensor, grad: &Tensor) -> Result<Tensor>;
}

/// The gradient half of an op of two tensors whose value is computed elsewhere.
trait Backward2: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The gradients with respect to `a` and `b` (`None` where not needed).
    fn grads(
        &self,
        a: &Tensor,
        b: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)>;
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

/// Returns `value` (computed from `source`) with gradients to `source` given by `b`.
fn with_backward<B: Backward>(source: &Tensor, value: Tensor, b: B) -> Result<Tensor> {
    with_backward2(source, source, value, OneInput(b))
}

/// A one-input op as a two-input op whose second input is the first.
struct OneInput<B>(B);

impl<B: Backward> Backward2 for OneInput<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn grads(
        &self,
        a: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.0.grad(a, grad)?), None))
    }
}

/// Returns `value` (computed from `a` and `b`) with gradients given by `bw`.
/// Off the graph (inference) the value is returned as it is, with no copy.
fn with_backward2<B: Backward2>(a: &Tensor, b: &Tensor, value: Tensor, bw: B) -> Result<Tensor> {
    if !a.track_op() && !b.track_op() {
        return Ok(value);
    }
    a.apply_op3(b, &detached(value)?, PassThrough(bw))
}

/// Copies its third input, the value; its backward pass is `B`'s. Cloning storage is
/// the same code on every backend, so this runs wherever Candle does.
struct PassThrough<B>(B);

impl<B: Backward2> CustomOp3 for PassThrough<B> {
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

/// Which rectifier: ReLU, or ReLU6 (clamped to [0, 6], as EfficientNet-Lite uses).
#[derive(Clone, Copy)]
pub(crate) enum Rectifier {
    Relu,
    Relu6,
}

/// A rectifier and the rule its backward pass follows; convolutions can apply one to
/// their output as part of the same op.
#[derive(Clone, Copy)]
pub(crate) struct Activation {
    pub(crate) kind: Rectifier,
    pub(crate) rule: BackwardRule,
}

impl Backward for Activation {
    fn name(&self) -> &'static str {
        "rectifier-with-rule"
    }

    fn grad(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
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

/// The rectifier of `x`, backpropagating by its rule: on the CPU, [`cpu::rectify`];
/// elsewhere Candle's value with [`Activation`]'s backward.
pub(crate) fn rectify(x: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::rectify(x, activation);
    }
    rectify_candle(x, activation)
}

fn rectify_candle(x: &Tensor, activation: Activation) -> Result<Tensor> {
    with_backward(x, rectified_candle(x, activation.kind)?, activation)
}

/// Whether `t` is served by the CPU kernels (see [`cpu`]).
pub(crate) fn on_cpu_kernels(t: &Tensor) -> bool {
    cpu::applies(t)
}

/// The gradient `grad` passes back through `activation`, given the rectifier's input
/// or its output (both pass the same tests): on the CPU one pass,
/// [`cpu::rectify_grad`]; elsewhere [`Activation`]'s Candle ops.
pub(crate) fn rectify_grad(x: &Tensor, grad: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(grad) {
        return cpu::rectify_grad(x, grad, activation);
    }
    activation.grad(x, grad)
}

/// The rectifier `kind` of `x` by Candle's ops, off the graph.
fn rectified_candle(x: &Tensor, kind: Rectifier) -> Result<Tensor> {
    match kind {
        Rectifier::Relu => x.relu(),
        Rectifier::Relu6 => x.clamp(0f32, 6f32),
    }
}

/// The rectifier of `a + b` (a residual sum and the ReLU after it): on the CPU one
/// op, [`cpu::rectify_sum`]; elsewhere the sum, then [`rectify`].
pub(crate) fn rectify_sum(a: &Tensor, b: &Tensor, activation: Activation) -> Result<Tensor> {
    if cpu::applies(a) {
        return cpu::rectify_sum(a, b, activation);
    }
    rectify(&(a + b)?, activation)
}

/// `activation` of `y`, if any.
pub(crate) fn activate(y: Tensor, activation: Option<Activation>) -> Result<Tensor> {
    match activation {
        Some(a) => rectify(&y, a),
        None => Ok(y),
    }
}

/// Where the backward pass leaves the gradient it stops at ([`hold`]).
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

    fn take(&self) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// A point where the backward pass stops ([`hold`]).
pub(crate) struct Held {
    /// A variable that nothing else reads: the hold's ops depend on it, since Candle
    /// walks back only from ops that depend on a variable.
    anchor: Var,
    activation: Option<Activation>,
    /// The gradient arriving at `output`, from every reader.
    holder: Holder,
    /// The hold's output, off the graph.
    output: Tensor,
}

impl Held {
    /// The gradient with respect to the held tensor that the last backward pass
    /// left, taken out: zero if that pass did not reach the hold. The rectifier's
    /// rule applies here, once to the sum of what every reader sent back (the
    /// guided and DeconvNet rules clip that sum, not each part).
    pub(crate) fn take(&self) -> Result<Tensor> {
        let Some(grad) = self.holder.take() else {
            return self.output.zeros_like();
        };
        match self.activation {
            Some(a) => rectify_grad(&self.output, &grad, a),
            None => Ok(grad),
        }
    }
}

/// `activation` of `x` (or `x` itself), where the backward pass stops: it leaves the
/// gradient with respect to `x` in the returned [`Held`] and passes nothing on (`x`
/// is taken off the graph). A variable is where Candle's backward pass otherwise
/// ends, but making `x` one copies it, and Candle then adds the gradient into a
/// zero tensor of its size; an op whose backward keeps the gradient skips both.
///
/// On the CPU the op computes the rectifier itself; elsewhere it copies Candle's.
pub(crate) fn hold(x: &Tensor, activation: Option<Activation>) -> Result<(Tensor, Held)> {
    let anchor = Var::zeros(1, x.dtype(), x.device())?;
    let holder = Holder::default();
    let x = x.detach();
    let y = if cpu::applies(&x) {
        cpu::hold(anchor.as_tensor(), &x, activation, holder.clone())?
    } else {
        hold_candle(&anchor, &x, activation, &holder)?
    };
    let held = Held {
        anchor,
        activation,
        holder,
        output: y.detach(),
    };
    Ok((y, held))
}

/// [`hold`] for a pass that carries the gradient back to the hold by its own means
/// ([`super::tape`]): `activation` of `x` (or `x`), off the graph, and the hold that
/// [`Held::relay`] leaves that gradient with.
pub(crate) fn hold_off_graph(x: &Tensor, activation: Option<Activation>) -> Result<(Tensor, Held)> {
    let y = activate(x.detach(), activation)?;
    let held = Held {
        anchor: Var::zeros(1, x.dtype(), x.device())?,
        activation,
        holder: Holder::default(),
        output: y.clone(),
    };
    Ok((y, held))
}

/// [`hold`]'s op off the CPU.
fn hold_candle(
    anchor: &Var,
    x: &Tensor,
    activation: Option<Activation>,
    holder: &Holder,
) -> Result<Tensor> {
    let value = match activation {
        Some(a) => rectified_candle(x, a.kind)?,
        None => x.clone(),
    };
    let keep = Holding(holder.clone());
    with_backward2(anchor.as_tensor(), x, value, keep)
}

/// [`hold_candle`]'s backward: leaves the gradient at the output.
struct Holding(Holder);

impl Backward2 for Holding {
    fn name(&self) -> &'static str {
        "hold"
    }

    fn grads(
        &self,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.put(grad.clone())?;
        Ok((None, None))
    }
}

impl Held {
    /// `x` on Candle's graph: a copy hung on the hold's anchor, whose backward hands
    /// the gradient arriving at it to `backward` and leaves what that returns (the
    /// gradient at the hold's output, if the pass reached it) with the hold.
    pub(crate) fn relay<F>(&self, x: &Tensor, backward: F) -> Result<Tensor>
    where
        F: Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
    {
        let anchor = self.anchor.as_tensor();
        let relay = Relay {
            holder: self.holder.clone(),
            backward,
        };
        with_backward2(anchor, anchor, x.clone(), relay)
    }
}

/// [`Held::relay`]'s backward.
struct Relay<F> {
    holder: Holder,
    backward: F,
}

impl<F> Backward2 for Relay<F>
where
    F: Fn(&Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "relay-to-hold"
    }

    fn grads(
        &self,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if let Some(g) = (self.backward)(grad)? {
            self.holder.put(g)?;
        }
        Ok((None, None))
    }
}

/// [`max_pool2d`] of `y`, the output of the hold `held`, standing in for the hold:
/// on the CPU one op, whose backward leaves the gradient it routes to `y` with
/// `held`, so that no gradient of `y`'s size passes through Candle (a zero tensor
/// and a sum) or through the hold's op; elsewhere the pool of `y` as it is.
pub(crate) fn max_pool2d_held(
    y: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
    held: &Held,
) -> Result<Tensor> {
    if !cpu::applies(y) {
        return max_pool2d(y, kernel, stride, padding);
    }
    let g = pool_geometry(y, kernel, stride, padding)?;
    let holder = held.holder.clone();
    cpu::max_pool2d_held(held.anchor.as_tensor(), &y.detach(), g, holder)
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
    fn grad(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
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
/// backward pass for any kernel and stride: on the CPU, [`cpu::max_pool2d`].
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::max_pool2d(x, pool_geometry(x, kernel, stride, padding)?);
    }
    max_pool2d_candle(x, kernel, stride, padding)
}

/// The CPU kernels' description of a max pool of `x: [N, C, H, W]`.
fn pool_geometry(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<cpu::PoolGeometry> {
    let (_, _, h, w) = x.dims4()?;
    let out = |len: usize| match (len + 2 * padding).checked_sub(kernel) {
        Some(span) if stride > 0 && 2 * padding <= kernel => Ok(span / stride + 1),
        _ => {
            bail!(
                "max pool: kernel {kernel}, stride {stride}, padding {padding} do not fit a map \
                 of {len} px (is the model's input.size too small for its architecture?)"
            )
        }
    };
    Ok(cpu::PoolGeometry {
        h,
        w,
        k: kernel,
        stride,
        pad: padding,
        oh: out(h)?,
        ow: out(w)?,
    })
}

/// [`max_pool2d`] off the CPU: Candle's forward over explicit -inf padding, the
/// backward on the host.
fn max_pool2d_candle(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = pad_with_neg_inf(x, padding)?;
    let value = x.detach().max_pool2d_with_stride(kernel, stride)?;
    with_backward(&x, value, MaxPool { kernel, stride })
}

/// `x` with `padding` rows and columns of -inf on every side.
fn pad_with_neg_inf(x: &Tensor, padding: usize) -> Result<Tensor> {
    if padding == 0 {
        return Ok(x.clone());
    }
    let pad_dim = |t: &Tensor, dim: usize| -> Result<Tensor> {
        let mut shape = t.dims().to_vec();
        shape[dim] = padding;
        let fill = Tensor::full(f32::NEG_INFINITY, shape, t.device())?.to_dtype(t.dtype())?;
        Tensor::cat(&[&fill, t, &fill], dim)
    };
    pad_dim(&pad_dim(x, 2)?, 3)
}

/// The gradient the input `x` of [`max_pool2d`] gets when `grad` arrives at the
/// output: on the CPU, the backward pass's own kernel; elsewhere [`MaxPool`]'s
/// routing on the padded input, cropped.
pub(crate) fn max_pool2d_grad(
    x: &Tensor,
    grad: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
) -> Result<Tensor> {
    let g = pool_geometry(x, kernel, stride, padding)?;
    let (n, c, _, _) = x.dims4()?;
    if grad.dims() != [n, c, g.oh, g.ow] {
        bail!(
            "max pool gradient {:?} for an input {:?} ({kernel}, {stride}, {padding})",
            grad.dims(),
            x.dims()
        )
    }
    if cpu::applies(x) {
        return cpu::max_pool2d_grad(g, x, grad);
    }
    max_pool2d_grad_candle(x, grad, (kernel, stride, padding))
}

/// [`max_pool2d_grad`] off the CPU: [`MaxPool`]'s routing on the padded input,
/// cropped.
fn max_pool2d_grad_candle(
    x: &Tensor,
    grad: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    MaxPool { kernel, stride }
        .grad(&pad_with_neg_inf(x, padding)?, grad)?
        .narrow(2, padding, h)?
        .narrow(3, padding, w)
}

struct Conv {
    padding: usize,
    stride: usize,
}

impl Backward2 for Conv {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    /// Only the gradients that something upstream needs: attribution never reads
    /// the kernel's, training never reads the image's.
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let gx = x
            .track_op()
            .then(|| self.input_grad((h, wd), w, grad))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| self.kernel_grad(x, w, grad))
            .transpose()?;
        Ok((gx, gw))
    }
}

impl Conv {
    /// A forward convolution of the output gradient, dilated by the stride and padded
    /// by `k - 1 - p`, with the kernel flipped and its channel axes swapped. (Candle's
    /// transposed convolution would skip the dilation's zeros, but gets non-square
    /// inputs wrong on the CPU in 0.11.)
    fn input_grad(&self, (h, wd): (usize, usize), w: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let k = w.dim(2)?;
        let g = dilate(grad, self.stride)?;
        let padding = gradient_padding(k, self.padding, (h, wd), &g)?;
        let kernel = w.detach().transpose(0, 1)?.contiguous()?.flip(&[2, 3])?;
        let (g, padding) = as_symmetric(&g, padding)?;
        g.conv2d(&kernel, padding, 1, 1, 1)
    }

    /// `dW = grad · im2col(x)ᵀ`: one matrix product over every sample and position.
    fn kernel_grad(&self, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let (c_out, c_in, k, _) = w.dims4()?;
        let (n, _, h_out, w_out) = grad.dims4()?;
        let p = (self.padding, self.padding);
        let taps = windows(&x.detach(), k, [p, p], self.stride, (h_out, w_out))?;
        // [N, C_in, k*k, H', W'] -> [C_in * k * k, N * H' * W']
        let cols = Tensor::stack(&taps, 2)?
            .permute((1, 2, 0, 3, 4))?
            .reshape((c_in * k * k, n * h_out * w_out))?;
        let g = grad
            .permute((1, 0, 2, 3))?
            .reshape((c_out, n * h_out * w_out))?;
        g.matmul(&cols.t()?)?.reshape((c_out, c_in, k, k))
    }
}

/// The `k²` windows of a `k x k` kernel over `x` padded by `padding` ((before,
/// after) for rows, then columns): tap `(ky, kx)`, at index `ky * k + kx`, is the
/// `out`-sized grid `x_pad[.., ky + stride*i, kx + stride*j]`.
fn windows(
    x: &Tensor,
    k: usize,
    padding: [(usize, usize); 2],
    stride: usize,
    out: (usize, usize),
) -> Result<Vec<Tensor>> {
    let [(top, bottom), (left, right)] = padding;
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let mut taps = Vec::with_capacity(k * k);
    for ky in 0..k {
        let rows = every(&x, 2, ky, out.0, stride)?;
        for kx in 0..k {
            taps.push(every(&rows, 3, kx, out.1, stride)?);
        }
    }
    Ok(taps)
}

/// Padding of an output gradient `g` for the stride-1 correlation with the flipped
/// kernel that gives the input gradient: `k - 1 - padding` before, and after whatever
/// makes the result as large as the input (`input` = (rows, columns)).
fn gradient_padding(
    k: usize,
    padding: usize,
    input: (usize, usize),
    g: &Tensor,
) -> Result<[(usize, usize); 2]> {
    let Some(before) = (k - 1).checked_sub(padding) else {
        bail!("convolution backward: padding {padding} exceeds kernel size {k} - 1")
    };
    // Result length = len + before + after - k + 1 must equal the input's.
    let after = |input: usize, len: usize| input + k - 1 - len - before;
    Ok([
        (before, after(input.0, g.dim(2)?)),
        (before, after(input.1, g.dim(3)?)),
    ])
}

/// Elements `start, start + stride, ...` (`count` of them) along `dim`.
fn every(t: &Tensor, dim: usize, start: usize, count: usize, stride: usize) -> Result<Tensor> {
    let span = t.narrow(dim, start, (count - 1) * stride + 1)?;
    if stride == 1 {
        return Ok(span);
    }
    // Pad to count * stride, fold the stride into its own axis, keep its first slot.
    let mut folded = span.dims().to_vec();
    folded[dim] = count;
    folded.insert(dim + 1, stride);
    span.pad_with_zeros(dim, 0, stride - 1)?
        .reshape(folded)?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)
}

/// `sum over taps (ky, kx) of x_pad[.., ky + s*i, kx + s*j] * w[c, ky, kx]`: a
/// depthwise convolution as `k²` whole-tensor multiply-adds. (Candle runs a grouped
/// convolution as one convolution per group: over a thousand tiny ones for
/// EfficientNet's widest layers.) `padding` as for [`windows`].
fn shifted_sum(
    x: &Tensor,
    w: &Tensor,
    padding: [(usize, usize); 2],
    stride: usize,
    out: (usize, usize),
) -> Result<Tensor> {
    let (c, _, k, _) = w.dims4()?;
    let taps = windows(x, k, padding, stride, out)?;
    let mut sum: Option<Tensor> = None;
    for (i, window) in taps.into_iter().enumerate() {
        let weight = w
            .narrow(2, i / k, 1)?
            .narrow(3, i % k, 1)?
            .reshape((1, c, 1, 1))?;
        let term = window.broadcast_mul(&weight)?;
        sum = Some(match sum {
            Some(s) => (s + term)?,
            None => term,
        });
    }
    sum.ok_or_else(|| candle_core::Error::Msg("depthwise convolution with an empty kernel".into()))
}

struct Depthwise {
    padding: usize,
    stride: usize,
}

impl Backward2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let gx = x
            .track_op()
            .then(|| depthwise_input_grad(grad, w, (self.padding, self.stride), (h, wd)))
            .transpose()?;
        let gw = if w.track_op() {
            let p = (self.padding, self.padding);
            let out = (grad.dim(2)?, grad.dim(3)?);
            let taps = windows(&x.detach(), k, [p, p], self.stride, out)?
                .into_iter()
                .map(|window| window.mul(grad)?.sum((0, 2, 3)))
                .collect::<Result<Vec<_>>>()?;
            let c = w.dim(0)?;
            Some(Tensor::stack(&taps, 1)?.reshape((c, 1, k, k))?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// The gradient an input of `size` gets when `grad` arrives at the output of a
/// depthwise convolution with kernel `w` and symmetric `padding`: the same shifted
/// sum over the stride-dilated gradient, kernel flipped.
fn depthwise_input_grad(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (usize, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let g = dilate(grad, stride)?;
    let padding = gradient_padding(w.dim(2)?, padding, size, &g)?;
    shifted_sum(&g, &w.detach().flip(&[2, 3])?, padding, 1, size)
}

/// Inserts `stride - 1` zeros between the elements of the two spatial axes.
fn dilate(g: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(g.clone());
    }
    let (n, c, h, w) = g.dims4()?;
    g.unsqueeze(3)?
        .unsqueeze(5)?
        .pad_with_zeros(3, 0, stride - 1)?
        .pad_with_zeros(5, 0, stride - 1)?
        .reshape((n, c, h * stride, w * stride))?
        .narrow(2, 0, (h - 1) * stride + 1)?
        .narrow(3, 0, (w - 1) * stride + 1)
}

/// A depthwise convolution (one `k x k` filter per channel, `w: [C, 1, k, k]`), plus
/// `bias` if given, then `activation` if given: on the CPU, one
/// [`cpu::depthwise_conv2d`] op; elsewhere as shifted sums.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    (padding, stride): (Padding, usize),
    activation: Option<Activation>,
) -> Result<Tensor> {
    if cpu::applies(x) {
        let groups = x.dim(1)?;
        let geometry = geometry(sample_dims(x)?, (w, bias), padding, stride, groups)?;
        return cpu::depthwise_conv2d(x, w, bias, geometry, activation);
    }
    activate(
        depthwise_conv2d_candle(x, w, bias, padding, stride)?,
        activation,
    )
}

/// The transpose of [`depthwise_conv2d`]'s linear part: the gradient an input of
/// `size` gets when `grad` arrives at the output. On the CPU, the backward pass's own
/// kernel; elsewhere the shifted sums on the padded input, cropped.
pub(crate) fn depthwise_conv2d_transpose(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let c = w.dim(0)?;
    let g = geometry((c, size.0, size.1), (w, None), padding, stride, c)?;
    check_output_grad("depthwise convolution transpose", grad, &g)?;
    if cpu::applies(grad) {
        return cpu::depthwise_conv2d_transpose(grad, w, g);
    }
    depthwise_conv2d_transpose_candle(grad, w, (padding, stride), size)
}

/// [`depthwise_conv2d_transpose`] off the CPU: the input gradient of the padded
/// input, cropped.
fn depthwise_conv2d_transpose_candle(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    cropped(size, padding, |padded| {
        depthwise_input_grad(grad, w, (0, stride), padded)
    })
}

/// [`depthwise_conv2d`] off the CPU: `k²` whole-tensor multiply-adds each way.
fn depthwise_conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: Padding,
    stride: usize,
) -> Result<Tensor> {
    let (x, padding) = as_symmetric(x, padding)?;
    let (_, _, h, wd) = x.dims4()?;
    let k = w.dim(2)?;
    let out = (
        (h + 2 * padding - k) / stride + 1,
        (wd + 2 * padding - k) / stride + 1,
    );
    let p = (padding, padding);
    let value = shifted_sum(&x.detach(), &w.detach(), [p, p], stride, out)?;
    let y = with_backward2(&x, w, value, Depthwise { padding, stride })?;
    add_bias(y, bias)
}

/// `y + bias` broadcast over channels.
pub(crate) fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// `[C, H, W]` of a `[N, C, H, W]` batch.
fn sample_dims(x: &Tensor) -> Result<(usize, usize, usize)> {
    let (_, c, h, w) = x.dims4()?;
    Ok((c, h, w))
}

/// The CPU kernels' description of convolving `x` with `w` (`[C_out, C_in / groups,
/// k, k]`; depthwise: `groups = C_in = C_out`) plus `bias`; an error if the shapes do
/// not fit each other or the kernel does not fit the padded input (the kernels index
/// by these sizes and must never see inconsistent ones).
fn geometry(
    (c_in, h, wd): (usize, usize, usize),
    (w, bias): (&Tensor, Option<&Tensor>),
    padding: Padding,
    stride: usize,
    groups: usize,
) -> Result<cpu::ConvGeometry> {
    let (c_out, per_group, k, k2) = w.dims4()?;
    let fits = per_group * groups == c_in
        && k == k2
        && (groups == 1 || c_out == c_in)
        && bias.is_none_or(|b| b.dims() == [c_out]);
    if !fits {
        bail!(
            "convolution: input [_, {c_in}, {h}, {wd}], kernel {:?} and bias {:?} do not fit ({groups} groups)",
            w.dims(),
            bias.map(Tensor::dims)
        )
    }
    let [(top, bottom), (left, right)] = padding;
    let out = |len: usize, before: usize, after: usize| match (len + before + after).checked_sub(k)
    {
        Some(span) if stride > 0 => Ok(span / stride + 1),
        _ => bail!(
            "convolution: kernel {k} larger than the padded input ({len} + {before} + {after}) or stride 0"
        ),
    };
    Ok(cpu::ConvGeometry {
        c_in,
        h,
        w: wd,
        c_out,
        k,
        stride,
        top,
        left,
        oh: out(h, top, bottom)?,
        ow: out(wd, left, right)?,
    })
}

/// `x · wᵀ` for `x: [N, in]` and `w: [out, in]`, with a backward pass that forms only
/// the gradients needed (on the CPU, [`cpu::linear`]): Candle's matmul backward
/// always forms both, and for attribution through VGG's classifier the weight
/// gradient alone is a 25088 x 4096 outer product per pass that nothing reads.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if cpu::applies(x) {
        return cpu::linear(x, w);
    }
    let value = x.detach().matmul(&w.detach().t()?)?;
    with_backward2(x, w, value, Linear)
}

struct Linear;

impl Backward2 for Linear {
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

/// Zero padding of the two spatial axes: `[(top, bottom), (left, right)]`.
pub(crate) type Padding = [(usize, usize); 2];

/// `x` with `padding` made symmetric: as it is when all four sides are equal (the
/// padding returned is then theirs), else padded explicitly (and 0 returned).
pub(crate) fn as_symmetric(x: &Tensor, padding: Padding) -> Result<(Tensor, usize)> {
    let [(top, bottom), (left, right)] = padding;
    if (bottom, left, right) == (top, top, top) {
        return Ok((x.clone(), top));
    }
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    Ok((x, 0))
}

/// A 2-D convolution of one group (square kernel), plus `bias` if given, then
/// `activation` if given, with a backward pass that computes only the gradients
/// needed: on the CPU, one [`cpu::conv2d`] op, which keeps what it makes from a
/// kernel that never changes in `cache`; elsewhere Candle's forward.
pub(crate) fn conv2d(
    x: &Tensor,
    (w, cache): (&Tensor, Option<&Arc<cpu::KernelCache>>),
    bias: Option<&Tensor>,
    (padding, stride): (Padding, usize),
    activation: Option<Activation>,
) -> Result<Tensor> {
    if cpu::applies(x) {
        let geometry = geometry(sample_dims(x)?, (w, bias), padding, stride, 1)?;
        return cpu::conv2d(x, (w, cache), bias, geometry, activation);
    }
    activate(conv2d_candle(x, w, bias, padding, stride)?, activation)
}

/// The transpose of [`conv2d`]'s linear part: the gradient an input of `size` (rows,
/// columns) gets when `grad` arrives at the output. On the CPU, the backward pass's
/// own kernel (with what it made from the kernel kept in `cache`, as [`conv2d`]);
/// elsewhere, on the padded input, cropped.
pub(crate) fn conv2d_transpose(
    grad: &Tensor,
    (w, cache): (&Tensor, Option<&Arc<cpu::KernelCache>>),
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    let g = geometry((w.dim(1)?, size.0, size.1), (w, None), padding, stride, 1)?;
    check_output_grad("convolution transpose", grad, &g)?;
    if cpu::applies(grad) {
        return cpu::conv2d_transpose(grad, (w, cache), g);
    }
    conv2d_transpose_candle(grad, w, (padding, stride), size)
}

/// An error unless `grad` is a batch of `g`'s outputs.
fn check_output_grad(op: &str, grad: &Tensor, g: &cpu::ConvGeometry) -> Result<()> {
    match grad.dims() {
        [_, c, h, w] if [*c, *h, *w] == [g.c_out, g.oh, g.ow] => Ok(()),
        dims => bail!(
            "{op}: gradient {dims:?} for an output of [_, {}, {}, {}]",
            g.c_out,
            g.oh,
            g.ow
        ),
    }
}

/// The gradient an input of `size` gets, computed by `input_grad` for the input
/// padded by `padding` (given the padded size), then cropped: the transposes off
/// the CPU.
fn cropped(
    size: (usize, usize),
    padding: Padding,
    input_grad: impl FnOnce((usize, usize)) -> Result<Tensor>,
) -> Result<Tensor> {
    let [(top, bottom), (left, right)] = padding;
    input_grad((size.0 + top + bottom, size.1 + left + right))?
        .narrow(2, top, size.0)?
        .narrow(3, left, size.1)
}

/// The output shape of [`conv2d`] for an input of shape `[N, C, H, W]`; an error if
/// the kernel does not fit them.
pub(crate) fn conv2d_output_dims(
    input: &[usize],
    w: &Tensor,
    (padding, stride): (Padding, usize),
) -> Result<[usize; 4]> {
    let &[n, c, h, wd] = input else {
        bail!("a convolution's input has shape {input:?}, not [N, C, H, W]")
    };
    let g = geometry((c, h, wd), (w, None), padding, stride, 1)?;
    Ok([n, g.c_out, g.oh, g.ow])
}

/// [`conv2d_transpose`] off the CPU: the input gradient of the padded input, cropped.
fn conv2d_transpose_candle(
    grad: &Tensor,
    w: &Tensor,
    (padding, stride): (Padding, usize),
    size: (usize, usize),
) -> Result<Tensor> {
    cropped(size, padding, |padded| {
        Conv { padding: 0, stride }.input_grad(padded, w, grad)
    })
}

/// [`conv2d`] off the CPU: Candle's forward, our backward.
fn conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: Padding,
    stride: usize,
) -> Result<Tensor> {
    let (x, padding) = as_symmetric(x, padding)?;
    let value = x.detach().conv2d(&w.detach(), padding, stride, 1, 1)?;
    let y = with_backward2(&x, w, value, Conv { padding, stride })?;
    add_bias(y, bias)
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

    /// Rectifier inputs, the gradient arriving at the outputs, and per rule the
    /// gradient passed back through ReLU and through ReLU6.
    const X: [f32; 4] = [-1.0, 0.0, 3.0, 7.0];
    const G: [f32; 4] = [1.0, 1.0, -1.0, 1.0];
    const RULES: [(BackwardRule, [f32; 4], [f32; 4]); 3] = [
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

    #[test]
    fn rectifier_rules() {
        let (x, g, cases) = (X, G, RULES);
        type Rectify = fn(&Tensor, Activation) -> Result<Tensor>;
        // The sum's two parts each receive the masked gradient: a quarter and three
        // quarters of it add up to it exactly.
        let implementations: [(&str, Rectify); 3] = [
            ("cpu", rectify),
            ("candle-value", rectify_candle),
            ("cpu sum", |t, a| rectify_sum(&(t * 0.25)?, &(t * 0.75)?, a)),
        ];
        for (name, rectify) in implementations {
            for (rule, relu_grad, relu6_grad) in cases {
                for (kind, expected) in
                    [(Rectifier::Relu, relu_grad), (Rectifier::Relu6, relu6_grad)]
                {
                    assert_eq!(
                        backward_of(&x, &g, |t| rectify(t, Activation { kind, rule })),
                        expected,
                        "{name} {rule:?}"
                    );
                }
            }
            let x = Tensor::new(&x, &Device::Cpu).unwrap();
            for (kind, expected) in [
                (Rectifier::Relu, [0.0, 0.0, 3.0, 7.0]),
                (Rectifier::Relu6, [0.0, 0.0, 3.0, 6.0]),
            ] {
                let rule = BackwardRule::Gradient;
                let y = rectify(&x, Activation { kind, rule }).unwrap();
                assert_eq!(y.to_vec1::<f32>().unwrap(), expected, "{name}");
            }
        }
    }

    /// A hold passes the rectifier's value on and leaves the gradient the rectifier
    /// passes back under each rule, or the arriving gradient itself without one;
    /// nothing reaches the held tensor's own graph.
    #[test]
    fn holds_leave_the_gradient_at_their_input() {
        type Hold = fn(&Var, &Tensor, Option<Activation>, &Holder) -> Result<Tensor>;
        let implementations: [(&str, Hold); 2] = [
            ("cpu", |anchor, x, a, holder| {
                cpu::hold(anchor.as_tensor(), x, a, holder.clone())
            }),
            ("candle", hold_candle),
        ];
        let d = Device::Cpu;
        let (x, g) = (Var::new(&X, &d).unwrap(), Tensor::new(&G, &d).unwrap());
        for (name, hold) in implementations {
            let run = |activation: Option<Activation>| {
                let (anchor, holder) = (Var::zeros(1, DType::F32, &d).unwrap(), Holder::default());
                let y = hold(&anchor, &x.as_tensor().detach(), activation, &holder).unwrap();
                let output = y.detach();
                let held = Held {
                    anchor,
                    activation,
                    holder,
                    output,
                };
                let grads = y.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(
                    grads.get(x.as_tensor()).is_none(),
                    "{name}: x got a gradient"
                );
                let left = held.take().unwrap();
                (y.to_vec1::<f32>().unwrap(), left.to_vec1::<f32>().unwrap())
            };
            assert_eq!(
                run(None),
                (X.to_vec(), G.to_vec()),
                "{name} without a rectifier"
            );
            for (rule, relu_grad, relu6_grad) in RULES {
                let cases = [
                    (Rectifier::Relu, [0.0, 0.0, 3.0, 7.0], relu_grad),
                    (Rectifier::Relu6, [0.0, 0.0, 3.0, 6.0], relu6_grad),
                ];
                for (kind, value, grad) in cases {
                    let (y, held) = run(Some(Activation { kind, rule }));
                    assert_eq!(
                        (y, held),
                        (value.to_vec(), grad.to_vec()),
                        "{name} {rule:?}"
                    );
                }
            }
        }
    }

    /// A max pool that takes over a hold's backward leaves what the hold's input
    /// gets through the rectifier and the pool as separate ops, plus what a second
    /// reader of the hold's output sends back. The input has ties (whole windows of
    /// zeros after the rectifier) and values past 6.
    #[test]
    fn a_pool_on_a_hold_leaves_the_gradient_through_both() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 4f32, (2, 3, 9, 7), &d)
            .unwrap()
            .round()
            .unwrap();
        let g = Tensor::randn(0f32, 1f32, (2, 3, 5, 4), &d).unwrap();
        let h = Tensor::randn(0f32, 1f32, (2, 3, 9, 7), &d).unwrap();
        let objective = |y: &Tensor, z: &Tensor| {
            (z.mul(&g).unwrap().sum_all().unwrap() + y.mul(&h).unwrap().sum_all().unwrap()).unwrap()
        };
        for (rule, kind) in [
            (BackwardRule::Gradient, Rectifier::Relu),
            (BackwardRule::GuidedBackprop, Rectifier::Relu6),
            (BackwardRule::DeconvNet, Rectifier::Relu),
        ] {
            let activation = Activation { kind, rule };
            let xv = Var::from_tensor(&x).unwrap();
            let y = rectify(xv.as_tensor(), activation).unwrap();
            let z = max_pool2d(&y, 3, 2, 1).unwrap();
            let grads = objective(&y, &z).backward().unwrap();
            let expected = grads.get(xv.as_tensor()).unwrap();

            let (y, held) = hold(&x, Some(activation)).unwrap();
            let z_held = max_pool2d_held(&y, (3, 2, 1), &held).unwrap();
            objective(&y, &z_held).backward().unwrap();
            let left = held.take().unwrap();
            let err = |a: &Tensor, b: &Tensor| {
                let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
                d.to_scalar::<f32>().unwrap()
            };
            assert_eq!(err(&z, &z_held), 0.0, "{rule:?}: the pooled values");
            assert!(err(expected, &left) < 1e-6, "{rule:?}: the gradient");
        }
    }

    /// Ties and overlapping windows, against PyTorch's `max_pool2d(x, 3, 2, 1)`.
    #[test]
    fn max_pool_values_match_candle() {
        let x = Tensor::randn(0f32, 1f32, (2, 3, 9, 7), &Device::Cpu).unwrap();
        for (k, stride, pad) in [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 0), (1, 1, 0)] {
            let ours = max_pool2d(&x, k, stride, pad).unwrap();
            let candle = max_pool2d_candle(&x, k, stride, pad).unwrap();
            let diff = (ours - candle).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(
                diff.to_scalar::<f32>().unwrap(),
                0.0,
                "k {k} s {stride} p {pad}"
            );
        }
        let mut values = vec![0f32; 16];
        values[5] = f32::NAN;
        let x = Tensor::from_vec(values, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let y = max_pool2d(&x, 2, 2, 0).unwrap().flatten_all().unwrap();
        let y = y.to_vec1::<f32>().unwrap();
        assert!(y[0].is_nan() && y[1..] == [0.0; 3], "{y:?}");
    }

    #[test]
    fn max_pool_routes_to_the_first_maximum() {
        type Pool = fn(&Tensor, usize, usize, usize) -> Result<Tensor>;
        let implementations: [(&str, Pool); 2] =
            [("cpu", max_pool2d), ("candle-value", max_pool2d_candle)];
        for (name, pool) in implementations {
            let pool_grad = |x: &[f32]| {
                let x = Tensor::new(x, &Device::Cpu).unwrap();
                let x = Var::from_tensor(&x.reshape((1, 1, 4, 4)).unwrap()).unwrap();
                let y = pool(x.as_tensor(), 3, 2, 1).unwrap();
                assert_eq!(y.dims(), [1, 1, 2, 2], "{name}");
                let grads = y.sum_all().unwrap().backward().unwrap();
                let grad = grads.get(x.as_tensor()).unwrap();
                (
                    y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    grad.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                )
            };
            let ones = pool_grad(&[1.0; 16]);
            let expected = [
                1., 1., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0., 0., 0.,
            ];
            assert_eq!(ones, (vec![1.0; 4], expected.to_vec()), "{name}");
            let mixed = pool_grad(&[
                1., 5., 5., 2., 5., 0., 1., 5., 3., 3., 3., 3., 0., 5., 1., 1.,
            ]);
            let expected = [
                0., 2., 0., 0., 1., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0., 0.,
            ];
            assert_eq!(mixed, (vec![5.0; 4], expected.to_vec()), "{name}");
        }
    }
}

#[cfg(test)]
mod conv_tests {
    use candle_core::{Device, Var};

    use super::*;

    type Convolution = fn(
        &Tensor,
        &Tensor,
        Option<&Tensor>,
        (Padding, usize),
        Option<Activation>,
    ) -> Result<Tensor>;

    /// The Winograd paths put the tiles of several samples into one matrix product;
    /// a sample's result must not depend on which others share its batch (the
    /// algorithm, and so its rounding, is chosen by geometry alone). Value and input
    /// gradient, in float32, alone and in batches whose groups run one after the
    /// other (7 px: one group) and side by side (28 px, 9 samples: 3 groups of 3).
    #[test]
    fn a_sample_convolves_the_same_in_any_batch() {
        let d = Device::Cpu;
        for (side, n) in [(7, 5), (28, 9)] {
            let x = Var::randn(0f32, 1., (n, 16, side, side), &d).unwrap();
            let w = Tensor::randn(0f32, 1., (32, 16, 3, 3), &d).unwrap();
            let cache = Arc::default();
            let run = |x: &Var| {
                let y = conv2d(x, (&w, Some(&cache)), None, ([(1, 1); 2], 1), None).unwrap();
                let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                (y, grads.get(x).unwrap().clone())
            };
            let (y, dx) = run(&x);
            for i in 0..n {
                let (y_i, dx_i) = run(&Var::from_tensor(&x.narrow(0, i, 1).unwrap()).unwrap());
                for (what, batched, alone) in [("value", &y, y_i), ("input grad", &dx, dx_i)] {
                    let batched = batched.narrow(0, i, 1).unwrap();
                    let diff = (batched - alone).unwrap().abs().unwrap();
                    let diff = diff.max_all().unwrap().to_scalar::<f32>().unwrap();
                    assert_eq!(diff, 0.0, "{what} of sample {i} of {n} at {side} px");
                }
            }
        }
    }

    /// Shapes the CPU kernels would index out of bounds with are errors, not panics.
    #[test]
    fn mismatched_shapes_are_errors() {
        let d = Device::Cpu;
        let x = Tensor::zeros((1, 4, 8, 8), DType::F32, &d).unwrap();
        let p = [(1, 1), (1, 1)];
        let kernel = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &d).unwrap();
        let bias = kernel(&[5]);
        let cases: [(&str, Convolution, Tensor, Option<&Tensor>); 4] = [
            (
                "dense, wrong input channels",
                uncached_conv2d,
                kernel(&[4, 3, 3, 3]),
                None,
            ),
            (
                "dense, wrong bias",
                uncached_conv2d,
                kernel(&[4, 4, 3, 3]),
                Some(&bias),
            ),
            (
                "depthwise, two per channel",
                depthwise_conv2d,
                kernel(&[4, 2, 3, 3]),
                None,
            ),
            (
                "depthwise, more outputs",
                depthwise_conv2d,
                kernel(&[8, 1, 3, 3]),
                None,
            ),
        ];
        for (what, conv, w, b) in cases {
            assert!(conv(&x, &w, b, (p, 1), None).is_err(), "{what}");
        }
        let tiny = Tensor::zeros((1, 4, 2, 2), DType::F32, &d).unwrap();
        assert!(
            conv2d(
                &tiny,
                (&kernel(&[4, 4, 7, 7]), None),
                None,
                ([(0, 0), (0, 0)], 1),
                None
            )
            .is_err()
        );
    }

    /// Every convolution of ours (the CPU kernels, and the Candle-op versions CUDA
    /// runs), values and gradients of input, kernel and bias, against Candle's own
    /// convolution, for the kernel sizes, strides and paddings of the zoo; batch 1 and a
    /// batch larger than the thread count (the dense kernel's two schedules),
    /// non-square inputs, TF-style uneven padding, with and without bias; in float64,
    /// with each rectifier and rule applied by the convolution, against Candle's
    /// convolution followed by the rectifier's own op.
    #[test]
    fn transposes_are_the_input_gradient() {
        let d = Device::Cpu;
        // (input channels, kernel, stride), padding, input size: ResNet's stem, a
        // TF-"SAME" stride-2 layer, a Winograd-sized one, uneven padding.
        let cases = [
            ((3, 7, 2), [(3, 3), (3, 3)], (16, 13)),
            ((16, 3, 2), [(0, 1), (0, 1)], (10, 9)),
            ((16, 3, 1), [(1, 1), (1, 1)], (14, 14)),
            ((4, 5, 2), [(1, 2), (2, 1)], (9, 8)),
        ];
        for ((c_in, k, stride), padding, (h, w)) in cases {
            let x = Var::zeros((2, c_in, h, w), DType::F64, &d).unwrap();
            let kernel = Tensor::randn(0f64, 1., (8, c_in, k, k), &d).unwrap();
            let y = conv2d(
                x.as_tensor(),
                (&kernel, None),
                None,
                (padding, stride),
                None,
            )
            .unwrap();
            let g = Tensor::randn(0f64, 1., y.shape(), &d).unwrap();
            let grads = y.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
            let expected = grads.get(x.as_tensor()).unwrap();
            let geometry = (padding, stride);
            let ours = conv2d_transpose(&g, (&kernel, None), geometry, (h, w)).unwrap();
            let candle = conv2d_transpose_candle(&g, &kernel, geometry, (h, w)).unwrap();
            for (name, t) in [("cpu", ours), ("candle", candle)] {
                let err = (t - expected)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(
                    err < 1e-9,
                    "{name} transpose, case {c_in} {k} {stride}: {err}"
                );
            }
        }
        let g = Tensor::zeros((1, 8, 5, 5), DType::F32, &d).unwrap();
        let kernel = Tensor::zeros((8, 3, 3, 3), DType::F32, &d).unwrap();
        let err = conv2d_transpose(&g, (&kernel, None), ([(1, 1), (1, 1)], 1), (6, 6)).err();
        assert!(err.is_some(), "a gradient of the wrong size is an error");
    }

    /// The depthwise transposes (CPU kernel and Candle ops) are the adjoint of the
    /// depthwise convolution, `<conv(x), g> = <x, transpose(g)>`, for symmetric
    /// and TF-style uneven padding, strides 1 and 2; the max pool's gradients (both)
    /// are those its op's backward pass gives.
    #[test]
    fn depthwise_and_pool_gradients_stand_alone() {
        let d = Device::Cpu;
        let dot = |a: &Tensor, b: &Tensor| -> f64 {
            a.mul(b).unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        let cases = [
            (3, [(1, 1), (1, 1)], 1, (9, 8)),
            (5, [(1, 2), (2, 1)], 2, (11, 10)),
            (3, [(0, 1), (0, 1)], 2, (8, 9)),
        ];
        for (k, padding, stride, (h, w)) in cases {
            let x = Tensor::randn(0f64, 1., (2, 4, h, w), &d).unwrap();
            let kernel = Tensor::randn(0f64, 1., (4, 1, k, k), &d).unwrap();
            let y = depthwise_conv2d(&x, &kernel, None, (padding, stride), None).unwrap();
            let g = Tensor::randn(0f64, 1., y.shape(), &d).unwrap();
            let geometry = (padding, stride);
            let cpu = depthwise_conv2d_transpose(&g, &kernel, geometry, (h, w)).unwrap();
            let candle = depthwise_conv2d_transpose_candle(&g, &kernel, geometry, (h, w)).unwrap();
            for (name, t) in [("cpu", cpu), ("candle", candle)] {
                let (lhs, rhs) = (dot(&y, &g), dot(&x, &t));
                assert!(
                    (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
                    "{name} depthwise transpose, k {k} stride {stride}: {lhs} vs {rhs}"
                );
            }
        }
        // Gradients of the wrong size or rank are errors, not panics.
        let kernel = Tensor::zeros((4, 1, 3, 3), DType::F64, &d).unwrap();
        for bad in [(1, 4, 3, 3).into(), Shape::from(4), Shape::from(())] {
            let bad = Tensor::zeros(bad, DType::F64, &d).unwrap();
            let geometry = ([(1, 1), (1, 1)], 1);
            let err = depthwise_conv2d_transpose(&bad, &kernel, geometry, (6, 6)).err();
            assert!(err.is_some(), "a gradient {:?} is an error", bad.dims());
            let x = Tensor::zeros((1, 4, 6, 6), DType::F64, &d).unwrap();
            let err = max_pool2d_grad(&x, &bad, (3, 3, 0)).err();
            assert!(
                err.is_some(),
                "a pool gradient {:?} is an error",
                bad.dims()
            );
        }

        for (kernel, stride, padding) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] {
            let window = (kernel, stride, padding);
            // Rounded to quarters: ties inside windows.
            let x = (Tensor::randn(0f64, 1., (2, 3, 9, 8), &d).unwrap() * 4.)
                .unwrap()
                .round()
                .unwrap();
            let v = Var::from_tensor(&x).unwrap();
            let y = max_pool2d(v.as_tensor(), kernel, stride, padding).unwrap();
            let g = Tensor::randn(0f64, 1., y.shape(), &d).unwrap();
            let grads = y.mul(&g).unwrap().sum_all().unwrap().backward().unwrap();
            let expected = grads.get(v.as_tensor()).unwrap();
            let cpu = max_pool2d_grad(&x, &g, window).unwrap();
            let candle = max_pool2d_grad_candle(&x, &g, window).unwrap();
            for (name, t) in [("cpu", cpu), ("candle", candle)] {
                let err = (t - expected).unwrap().abs().unwrap().max_all().unwrap();
                let err = err.to_scalar::<f64>().unwrap();
                // The Candle version routes on the host in float32.
                assert!(err < 1e-6, "{name} pool gradient {window:?}: {err}");
            }
        }
    }

    #[test]
    fn convolutions_match_candle() {
        let implementations: [(&str, Convolution, bool); 5] = [
            ("cpu conv", uncached_conv2d, false),
            ("cpu conv, cached kernels", cached_conv2d, false),
            (
                "candle-forward conv",
                |x, w, b, (p, s), a| activate(conv2d_candle(x, w, b, p, s)?, a),
                false,
            ),
            ("cpu depthwise", depthwise_conv2d, true),
            (
                "shifted-sum depthwise",
                |x, w, b, (p, s), a| activate(depthwise_conv2d_candle(x, w, b, p, s)?, a),
                true,
            ),
        ];
        let activations = [
            None,
            Some((Rectifier::Relu, BackwardRule::Gradient)),
            Some((Rectifier::Relu6, BackwardRule::GuidedBackprop)),
            Some((Rectifier::Relu, BackwardRule::DeconvNet)),
        ]
        .map(|a| a.map(|(kind, rule)| Activation { kind, rule }));
        let cases: [(usize, usize, Padding, (usize, usize)); 16] = [
            (3, 1, [(1, 1), (1, 1)], (9, 7)),
            (3, 2, [(1, 1), (1, 1)], (9, 9)),
            (7, 2, [(3, 3), (3, 3)], (16, 13)),
            (1, 2, [(0, 0), (0, 0)], (8, 8)),
            (1, 1, [(0, 0), (0, 0)], (5, 6)),
            (11, 4, [(2, 2), (2, 2)], (31, 31)),
            (5, 1, [(2, 2), (2, 2)], (7, 7)),
            (3, 2, [(0, 1), (0, 1)], (8, 10)),
            (5, 2, [(1, 2), (2, 1)], (9, 8)),
            (3, 2, [(0, 0), (0, 0)], (10, 10)),
            // With 16 channels (from here on), the Winograd paths, odd edges:
            // F(2x2) on a map two rows tall (where F(4x4)'s padding would cost more
            // products), then F(4x4). Their transforms go 8 tiles at a time: 35
            // tiles of F(2x2); 16, 12 and 16 of F(4x4), 196, and 4 per 7x7 sample
            // (at batch 3 one product of 12 columns).
            (3, 1, [(1, 1), (1, 1)], (2, 70)),
            (3, 1, [(1, 1), (1, 1)], (16, 13)),
            (3, 1, [(0, 2), (1, 1)], (12, 15)),
            (3, 1, [(1, 1), (1, 1)], (14, 14)),
            (3, 1, [(1, 1), (1, 1)], (55, 53)),
            (3, 1, [(1, 1), (1, 1)], (7, 7)),
        ];
        for (name, ours, depthwise) in implementations {
            for (i, (k, stride, padding, size)) in cases.into_iter().enumerate() {
                let channels = if i >= 10 { 16 } else { 4 };
                let groups = if depthwise { channels } else { 1 };
                for (batch, dtype) in [(1, DType::F32), (3, DType::F32), (3, DType::F64)] {
                    // Only in float64 is a rectifier's mask safe from rounding.
                    let activation = activations[i % 4].filter(|_| dtype == DType::F64);
                    let case = (k, stride, padding, size);
                    let conv = (ours, activation, groups, channels);
                    check(name, conv, case, batch, dtype);
                }
            }
        }
    }

    /// [`conv2d`] without a kernel cache (a trainable kernel's path).
    fn uncached_conv2d(
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        geometry: (Padding, usize),
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        conv2d(x, (w, None), bias, geometry, activation)
    }

    /// [`conv2d`] with a kernel cache, in its second call: the first call, and a
    /// backward pass from it, have made the kernel's transforms for both directions.
    fn cached_conv2d(
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        geometry: (Padding, usize),
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        let cache = Arc::default();
        let kernel = (w, Some(&cache));
        conv2d(x, kernel, bias, geometry, activation)?
            .sum_all()?
            .backward()?;
        conv2d(x, kernel, bias, geometry, activation)
    }

    fn check(
        name: &str,
        (ours, activation, groups, channels): (Convolution, Option<Activation>, usize, usize),
        (k, stride, padding, (h, w)): (usize, usize, Padding, (usize, usize)),
        batch: usize,
        dtype: DType,
    ) {
        let d = Device::Cpu;
        let var = |shape: &[usize]| {
            Var::from_tensor(&Tensor::randn(0f32, 1., shape, &d)?.to_dtype(dtype)?)
        };
        let (x, kernel) = (
            var(&[batch, channels, h, w]).unwrap(),
            var(&[channels, channels / groups, k, k]).unwrap(),
        );
        let (x, kernel) = (x.as_tensor(), kernel.as_tensor());
        // With a bias at batch 3, without at batch 1.
        let bias = (batch > 1).then(|| var(&[channels]).unwrap());
        let bias = bias.as_ref().map(Var::as_tensor);
        // Candle's conv backward breaks on non-square inputs: pad to a square (more
        // zeros after the image add outputs, which are cut off again).
        let [(top, bottom), (left, right)] = padding;
        let side = (h + top + bottom).max(w + left + right);
        let out = |len: usize| (len - k) / stride + 1;
        let expected = x
            .pad_with_zeros(2, top, side - h - top)
            .and_then(|x| x.pad_with_zeros(3, left, side - w - left))
            .and_then(|x| x.conv2d(kernel, 0, stride, 1, groups))
            .and_then(|y| y.narrow(2, 0, out(h + top + bottom)))
            .and_then(|y| y.narrow(3, 0, out(w + left + right)))
            .and_then(|y| add_bias(y, bias))
            .and_then(|y| activate(y, activation))
            .unwrap();
        let probe = Tensor::randn(0f32, 1., expected.shape(), &d)
            .and_then(|p| p.to_dtype(dtype))
            .unwrap();
        let backward = |y: &Tensor| {
            y.mul(&probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let theirs = backward(&expected);
        let y = ours(x, kernel, bias, (padding, stride), activation).unwrap();
        let grads = backward(&y);
        let mut pairs = vec![("value", y, expected.clone())];
        for (what, v) in [("input grad", x), ("kernel grad", kernel)]
            .into_iter()
            .chain(bias.map(|b| ("bias grad", b)))
        {
            pairs.push((
                what,
                grads.get(v).unwrap().clone(),
                theirs.get(v).unwrap().clone(),
            ));
        }
        let max_abs = |t: &Tensor| -> f64 {
            let m = t.abs().and_then(|t| t.max_all()).unwrap();
            m.to_dtype(DType::F64).unwrap().to_scalar().unwrap()
        };
        for (what, a, b) in pairs {
            let err = max_abs(&(&a - &b).unwrap());
            // Absolute at small magnitudes, relative at large ones: a kernel gradient
            // summed over a 55x53 map at batch 3 reaches ~100 in float32.
            let scale = max_abs(&b).max(1.0);
            let tolerance = scale * if dtype == DType::F64 { 1e-10 } else { 1e-3 };
            assert!(
                err < tolerance,
                "{name} {what}: k{k} s{stride} {padding:?} {h}x{w} batch {batch} {dtype:?}: {err}"
            );
        }
    }
}
