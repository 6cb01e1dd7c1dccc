//! The ops on every path against Candle's own ops and against each other.

mod rules_holds_pools {
    use candle_core::{Device, Var};

    use candle_core::{DType, Result, Tensor};

    use super::super::hold::*;
    use super::super::pool::*;
    use super::super::rectify::*;
    use crate::model::cpu;
    use crate::model::holder::Holder;
    use crate::model::rules::{Activation, BackwardRule, Rectifier};

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

mod convolutions {
    use candle_core::{Device, Var};

    use std::sync::Arc;

    use candle_core::{DType, Result, Tensor};

    use super::super::conv::*;
    use super::super::depthwise::*;
    use super::super::pool::*;
    use super::super::rectify::*;
    use super::super::*;
    use crate::model::rules::{Activation, BackwardRule, Rectifier};

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
