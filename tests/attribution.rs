//! Attribution methods' own guarantees: batching, targets, seeds, completeness.

mod common;

use candle_core::{DType, Device, Tensor};
use unitscope::attribution::descriptor::{Build, Params, Value};
use unitscope::attribution::registry;
use unitscope::attribution::{
    self, Attribution, Baseline, Gradient, IntegratedGradients, Method, Quadrature, SmoothGrad,
    Statistic, Target, TargetSpec,
};
use unitscope::model::{ArchOptions, Architecture, Probe, demo};

fn input_map(a: Attribution) -> Tensor {
    match a {
        Attribution::Input(t) => t,
        other => panic!("expected an input map, got {other:?}"),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn several_targets_in_one_call_equal_separate_calls() {
    let model = demo::model(&Device::Cpu).unwrap();
    let x = common::demo_inputs(&model, 3);
    let specs = [
        TargetSpec::Class(0),
        TargetSpec::Predicted,
        TargetSpec::Class(2),
    ];
    let method = Gradient::saliency();
    let predicted = attribution::predicted(&model, &x).unwrap();
    let targets: Vec<_> = specs.iter().map(|s| s.resolve(&predicted)).collect();
    let together = attribution::attribute(&method, &model, &x, &targets).unwrap();
    assert_eq!(together.len(), 3);
    for ((spec, alone), maps) in specs.iter().zip(targets).zip(together) {
        let expected = input_map(method.attribute(&model, &x, &alone).unwrap());
        let err = max_abs_diff(&input_map(maps), &expected);
        assert!(err < 1e-6, "{spec:?}: batched maps differ by {err:e}");
    }
}

#[test]
fn a_unit_target_is_the_gradient_of_that_unit() {
    let model = demo::model(&Device::Cpu).unwrap();
    let x = common::demo_inputs(&model, 2);
    let unit: unitscope::model::UnitAddress = "features.7:5".parse().unwrap();
    let target = Target::Unit(unit.clone());
    let maps = input_map(
        Gradient::saliency()
            .attribute(&model, &x, &[target.clone(), target.clone()])
            .unwrap(),
    );
    let capture = model
        .forward(&x, &Probe::new().record("features.7"))
        .unwrap();
    let grads = capture
        .backward(&capture.objective(&target.objective()).unwrap())
        .unwrap();
    assert!(max_abs_diff(&maps, &grads.input().unwrap()) < 1e-7);
    // And it differs from a class target's map: the target reaches the gradient.
    let class = input_map(
        Gradient::saliency()
            .attribute(&model, &x, &[Target::Class(0), Target::Class(0)])
            .unwrap(),
    );
    assert!(max_abs_diff(&maps, &class) > 1e-4);
}

#[test]
fn smoothgrad_is_seeded_and_independent_of_the_batch_size() {
    let model = demo::model(&Device::Cpu).unwrap();
    let x = common::demo_inputs(&model, 2);
    let targets = [Target::Class(1), Target::Class(3)];
    let run = |seed: u64, batch: usize| {
        let smooth = SmoothGrad {
            samples: 6,
            seed,
            batch,
            ..SmoothGrad::new(Box::new(Gradient::saliency()))
        };
        input_map(smooth.attribute(&model, &x, &targets).unwrap())
    };
    let a = run(7, 4);
    assert_eq!(max_abs_diff(&a, &run(7, 4)), 0.0, "same seed, same maps");
    assert!(
        max_abs_diff(&a, &run(7, 12)) < 1e-6,
        "batching changed the maps"
    );
    assert!(
        max_abs_diff(&a, &run(8, 4)) > 1e-4,
        "another seed, same maps"
    );
    // Each copy draws its own noise: two copies of an input differ (VarGrad > 0).
    let vargrad = SmoothGrad {
        samples: 2,
        statistic: Statistic::Variance,
        ..SmoothGrad::new(Box::new(Gradient::saliency()))
    };
    let spread = input_map(vargrad.attribute(&model, &x, &targets).unwrap());
    assert!(
        max_abs_diff(&spread, &spread.zeros_like().unwrap()) > 1e-6,
        "two copies drew the same noise"
    );
}

#[test]
fn integrated_gradients_are_complete() {
    let model = demo::model(&Device::Cpu).unwrap();
    let x = common::demo_inputs(&model, 2);
    let targets = [Target::Class(1), Target::Class(3)];
    let ig = IntegratedGradients::default();
    let (maps, delta) = ig.attribute_with_delta(&model, &x, &targets).unwrap();
    let total = input_map(maps).flatten_from(1).unwrap().sum(1).unwrap();
    let total = total.to_vec1::<f32>().unwrap();
    let delta = delta.to_vec1::<f32>().unwrap();
    for (t, d) in total.iter().zip(&delta) {
        println!("IG (Gauss-Legendre, 50 steps): sum {t:.4}, completeness gap {d:.2e}");
        assert!(
            d.abs() < 0.02 * t.abs().max(1.0),
            "gap {d} for a sum of {t}"
        );
    }
}

/// The method sums gradients held at the stem and takes the stem's outputs along
/// the path from its two ends; a plain sum over the path's points, each an ordinary
/// backward pass, must agree (with a blurred baseline, whose stem output is not the
/// bias alone, and batches that split an input's points). In float64: in float32 the
/// two roundings of a point's stem output flip a few rectifiers, and the maps differ
/// by 3.6e-4 on the demo model, as much as two plain sums by different convolution
/// code do (6.3e-4, the fast path against Candle's).
#[test]
fn integrated_gradients_equal_the_plain_sum_over_the_path() {
    let model = common::synthetic_model_as(
        Architecture::PlainCnn,
        &ArchOptions::default(),
        10,
        DType::F64,
    );
    let x = common::synthetic_input(&[2, 3, 32, 32]);
    let targets = [Target::Class(1), Target::Class(3)];
    let ig = IntegratedGradients {
        steps: 4,
        quadrature: Quadrature::RiemannMiddle,
        baseline: Baseline::Blurred(3.0),
        batch: 3,
    };
    let maps = input_map(ig.attribute(&model, &x, &targets).unwrap());
    let baseline = unitscope::data::gaussian_blur(&x, 3.0).unwrap();
    let path = (&x - &baseline).unwrap();
    let (alphas, weights) = ig.quadrature.nodes(ig.steps).unwrap();
    let mut total = path.zeros_like().unwrap();
    for (alpha, weight) in alphas.iter().zip(&weights) {
        let point = (&baseline + (&path * *alpha).unwrap()).unwrap();
        let capture = model.forward(&point, &Probe::new()).unwrap();
        let objective = Target::batch_objective(&targets);
        let grads = capture
            .backward(&capture.objective(&objective).unwrap())
            .unwrap();
        let grad = grads.input().unwrap().to_dtype(DType::F32).unwrap();
        total = (total + (grad * *weight).unwrap()).unwrap();
    }
    let expected = (total * path).unwrap();
    let scale = max_abs_diff(&expected, &expected.zeros_like().unwrap());
    let err = max_abs_diff(&maps, &expected) / scale;
    println!("IG against the plain sum over the path: relative error {err:.2e}");
    assert!(err < 1e-5, "relative error {err:e}");
}

#[test]
fn the_registry_builds_every_method_and_explains_mistakes() {
    let mut options = Params::new();
    options.set("layer", Value::Layers(vec!["features.10".into()]));
    for descriptor in registry::descriptors() {
        let name = match descriptor.build {
            Build::Method(_) => descriptor.name.to_owned(),
            Build::Wrapper(_) => format!("{}:guided-backprop", descriptor.name),
        };
        let method = registry::build(&name, &options).unwrap();
        assert!(!method.name().is_empty());
    }
    let err = registry::build("gradcam", &options).err().unwrap();
    assert!(err.to_string().contains("known methods"), "{err}");
    let no_layer = registry::build("grad-cam", &Params::new()).err().unwrap();
    assert!(no_layer.to_string().contains("--layer"), "{no_layer}");
}

#[test]
fn the_default_cam_layer_is_the_last_feature_map() {
    let model = demo::model(&Device::Cpu).unwrap();
    assert_eq!(
        attribution::default_cam_layer(&model).unwrap(),
        "features.10"
    );
    let resnet = common::synthetic_model(Architecture::Resnet18, &ArchOptions::default(), 10);
    assert_eq!(attribution::default_cam_layer(&resnet).unwrap(), "layer4");
}

/// The random baseline is reproducible, the same for an input alone or in a batch,
/// in [0, 1), and knows nothing of the target.
#[test]
fn the_random_baseline_is_seeded_per_input() {
    let model = demo::model(&Device::Cpu).unwrap();
    let random = registry::build("random", &Params::new()).unwrap();
    let x = Tensor::randn(0f32, 1., (3, 3, 64, 64), &Device::Cpu).unwrap();
    let map = |x: &Tensor, class: usize| -> Vec<f32> {
        let targets = vec![Target::Class(class); x.dim(0).unwrap()];
        let Attribution::Input(m) = random.attribute(&model, x, &targets).unwrap() else {
            panic!("random gives an input map");
        };
        assert_eq!(m.dims(), x.dims());
        m.flatten_all().unwrap().to_vec1().unwrap()
    };
    let batch = map(&x, 0);
    assert!(batch.iter().all(|v| (0.0..1.0).contains(v)));
    assert_eq!(batch, map(&x, 1), "the map depends on the target");
    let first = map(&x.narrow(0, 0, 1).unwrap(), 0);
    assert_eq!(first[..], batch[..first.len()], "input 0 alone differs");
    assert_ne!(
        first[..],
        batch[first.len()..2 * first.len()],
        "inputs share noise"
    );
}
