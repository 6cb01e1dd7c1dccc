//! Logits, input gradients (under each backward rule) and recorded layers agree with
//! PyTorch on the same closed-form weights (tests/reference/make_fixtures.py, float64).
//!
//! Values (logits, activations) are checked as users compute them, in float32.
//! Gradients are checked in float64: they jump where a rectifier's input crosses 0,
//! and float32 rounding decides the side of inputs within ~1e-7 of the layer's range
//! of it (ResNet-50's `layer3.4.bn2` holds one, 3e-7 of its range from 0: whether its
//! mask flips depends on summation order, and the flip moves the whole input
//! gradient by 3e-3). In float64 the same kernels resolve every such input.

mod common;

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

use common::{fixture, rel_err, synthetic_input, synthetic_model, synthetic_model_on};
use unitscope::data::InputSpec;
use unitscope::model::{ArchOptions, Architecture, BackwardRule, Objective, Probe};

const TARGETS: [usize; 2] = [3, 7];

fn check(name: &str, arch: Architecture, options: ArchOptions, shape: [usize; 4]) {
    check_on(name, arch, options, synthetic_input(&shape), 10);
}

/// [`check`] on the input `x`, with `classes` classes, on every engine
/// ([`common::engines`]: the CPU's kernels, Candle's portable ops, CUDA if present).
fn check_on(name: &str, arch: Architecture, options: ArchOptions, x: Tensor, classes: usize) {
    let reference = fixture(name);
    for engine in common::engines() {
        engine.run(|device| {
            let x = x.to_device(device).unwrap();
            check_engine(
                &format!("{name} [{}]", engine.name),
                &reference,
                (arch, &options),
                &x,
                classes,
                device,
            )
        });
    }
}

fn check_engine(
    name: &str,
    reference: &HashMap<String, Tensor>,
    (arch, options): (Architecture, &ArchOptions),
    x: &Tensor,
    classes: usize,
    device: &Device,
) {
    let shape = x.dims().to_vec();
    let input = InputSpec {
        channels: shape[1],
        size: [shape[2], shape[3]],
        ..InputSpec::default()
    };
    let layers: Vec<String> = reference
        .keys()
        .filter_map(|k| k.strip_prefix("act.").map(str::to_owned))
        .collect();
    let recording = |rule| {
        layers
            .iter()
            .fold(Probe::new().rule(rule), |p, l| p.record(l.clone()))
    };

    let model = synthetic_model_on(device, arch, options, classes, DType::F32, input.clone());
    let capture = model
        .forward(x, &recording(BackwardRule::Gradient))
        .unwrap();
    let err = rel_err(capture.logits().unwrap(), &reference["logits"]);
    println!("{name}: float32 logits rel err {err:.2e}");
    assert!(err < 1e-4, "{name}: float32 logits rel err {err:.2e}");
    for layer in &layers {
        let act = capture.activation(layer).unwrap();
        let err = rel_err(act, &reference[&format!("act.{layer}")]);
        println!("{name} {layer}: float32 activation rel err {err:.2e}");
        assert!(err < 1e-4, "{name} {layer}: float32 activation {err:.2e}");
    }

    // References are stored as float32: 1e-6 leaves room for that rounding only.
    let model = synthetic_model_on(device, arch, options, classes, DType::F64, input);
    let x = x.to_dtype(DType::F64).unwrap();
    let objective = Objective::Logits(TARGETS[..shape[0]].to_vec());
    for (rule, key) in [
        (BackwardRule::Gradient, "gradient"),
        (BackwardRule::GuidedBackprop, "guided-backprop"),
        (BackwardRule::DeconvNet, "deconvnet"),
    ] {
        let Some(expected) = reference.get(&format!("grad.{key}")) else {
            continue;
        };
        let capture = model.forward(&x, &recording(rule)).unwrap();
        let grads = capture
            .backward(&capture.objective(&objective).unwrap())
            .unwrap();
        let err = rel_err(&grads.input().unwrap(), expected);
        println!("{name} {key}: float64 input gradient rel err {err:.2e}");
        assert!(err < 1e-6, "{name} {key}: input gradient rel err {err:.2e}");
        if rule != BackwardRule::Gradient {
            continue;
        }
        let err = rel_err(capture.logits().unwrap(), &reference["logits"]);
        assert!(err < 1e-6, "{name}: float64 logits rel err {err:.2e}");
        for layer in &layers {
            let grad = grads.layer(layer).unwrap();
            let err = rel_err(grad, &reference[&format!("act_grad.{layer}")]);
            println!("{name} {layer}: float64 gradient rel err {err:.2e}");
            assert!(err < 1e-6, "{name} {layer}: gradient rel err {err:.2e}");
        }
    }
}

#[test]
fn plain_cnn() {
    let options = ArchOptions {
        channels: Some(vec![8, 16]),
        ..ArchOptions::default()
    };
    check("plain_cnn", Architecture::PlainCnn, options, [2, 3, 32, 32]);
}

#[test]
fn resnet18() {
    check(
        "resnet18",
        Architecture::Resnet18,
        ArchOptions::default(),
        [2, 3, 64, 64],
    );
}

#[test]
fn resnet34() {
    check(
        "resnet34",
        Architecture::Resnet34,
        ArchOptions::default(),
        [1, 3, 64, 64],
    );
}

#[test]
fn resnet50() {
    check(
        "resnet50",
        Architecture::Resnet50,
        ArchOptions::default(),
        [1, 3, 64, 64],
    );
}

#[test]
fn vgg11() {
    check(
        "vgg11",
        Architecture::Vgg11,
        ArchOptions::default(),
        [2, 3, 32, 32],
    );
}

#[test]
fn vgg11_bn() {
    check(
        "vgg11_bn",
        Architecture::Vgg11Bn,
        ArchOptions::default(),
        [1, 3, 32, 32],
    );
}

#[test]
fn vgg16() {
    check(
        "vgg16",
        Architecture::Vgg16,
        ArchOptions::default(),
        [1, 3, 32, 32],
    );
}

#[test]
fn vgg16_bn() {
    check(
        "vgg16_bn",
        Architecture::Vgg16Bn,
        ArchOptions::default(),
        [1, 3, 32, 32],
    );
}

#[test]
fn alexnet() {
    check(
        "alexnet",
        Architecture::Alexnet,
        ArchOptions::default(),
        [1, 3, 64, 64],
    );
}

#[test]
fn efficientnet_lite0() {
    check(
        "efficientnet_lite0",
        Architecture::EfficientnetLite0,
        ArchOptions::default(),
        [1, 3, 64, 64],
    );
}

/// Text one-hot, `[n, characters, 1, steps]`: character `(7 t + 3 i + i t) mod V`
/// at step `t` of text `i` (mirrored in Python).
fn one_hot_text(n: usize, characters: usize, steps: usize) -> Tensor {
    let mut x = vec![0f32; n * characters * steps];
    for i in 0..n {
        for t in 0..steps {
            let c = (7 * t + 3 * i + i * t) % characters;
            x[(i * characters + c) * steps + t] = 1.0;
        }
    }
    Tensor::from_vec(x, (n, characters, 1, steps), &Device::Cpu).unwrap()
}

/// Options of the character models of the fixtures: 6-dimensional embeddings, two
/// layers of 8 units, over 12 characters.
fn char_options() -> ArchOptions {
    ArchOptions {
        embedding: Some(6),
        hidden: Some(8),
        layers: Some(2),
        ..ArchOptions::default()
    }
}

/// Hidden and cell states at every step, and gradients through time, as PyTorch's
/// `nn.LSTM` computes them.
#[test]
fn char_lstm() {
    let x = one_hot_text(2, 12, 9);
    check_on("char_lstm", Architecture::CharLstm, char_options(), x, 12);
}

/// The same for `nn.GRU`.
#[test]
fn char_gru() {
    let x = one_hot_text(2, 12, 9);
    check_on("char_gru", Architecture::CharGru, char_options(), x, 12);
}

/// The reference path (Candle's own convolution backward, unfused batch norm) gives
/// the same logits and input gradients as the fast path, both matching PyTorch.
#[test]
fn reference_path_agrees() {
    use unitscope::model::EnginePath;
    for (name, arch, shape) in [
        ("resnet18", Architecture::Resnet18, [2, 3, 64, 64]),
        (
            "efficientnet_lite0",
            Architecture::EfficientnetLite0,
            [1, 3, 64, 64],
        ),
        ("vgg11_bn", Architecture::Vgg11Bn, [1, 3, 32, 32]),
    ] {
        let reference = fixture(name);
        let model = synthetic_model(arch, &ArchOptions::default(), 10);
        let x = synthetic_input(&shape);
        let probe = Probe::new().path(EnginePath::Reference);
        let capture = model.forward(&x, &probe).unwrap();
        let objective = capture
            .objective(&Objective::Logits(TARGETS[..shape[0]].to_vec()))
            .unwrap();
        let grads = capture.backward(&objective).unwrap();
        let (logits, grad) = (
            rel_err(capture.logits().unwrap(), &reference["logits"]),
            rel_err(&grads.input().unwrap(), &reference["grad.gradient"]),
        );
        println!("{name} reference path: logits {logits:.2e}, input gradient {grad:.2e}");
        assert!(
            logits < 1e-4 && grad < 5e-4,
            "{name}: {logits:.2e} {grad:.2e}"
        );
        let inference = rel_err(
            &model.logits_with(&x, &probe).unwrap(),
            &reference["logits"],
        );
        assert!(inference < 1e-4, "{name}: inference logits {inference:.2e}");
    }
}
