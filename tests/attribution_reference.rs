//! Attribution maps against Captum 0.9 and pytorch-grad-cam 1.5.7 (fixtures from
//! tests/reference/make_attribution_fixtures.py): the demo CNN and a ResNet-18 whose
//! batch norms are away from identity, computed in float64 here and there, matched to
//! 1e-4 relative (max-abs error / max-abs of the reference).

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{rel_err, root};
use unitscope::attribution::{
    Attribution, Baseline, Cam, CamWeighting, ChannelReduction, Gradient, GuidedGradCam,
    IntegratedGradients, Method, Occlusion, Quadrature, SmoothGrad, Statistic, Target, Upsampling,
};
use unitscope::model::{ArchOptions, Architecture, Model, Weights, demo};

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = root().join(format!("tests/fixtures/attribution/{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn max_abs(t: &Tensor) -> f64 {
    let t = t.to_dtype(DType::F64).unwrap();
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn demo_model(device: &Device) -> Model {
    let path = root().join("assets/demo-model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let weights = Weights::from_tensors(tensors, device)
        .unwrap()
        .with_dtype(DType::F64);
    demo::build(&weights).unwrap()
}

fn resnet18(device: &Device) -> Model {
    common::synthetic_model_on(
        device,
        Architecture::Resnet18,
        &ArchOptions::default(),
        10,
        DType::F64,
        Default::default(),
    )
}

struct Case {
    name: String,
    model: Model,
    reference: HashMap<String, Tensor>,
    layer: &'static str,
}

impl Case {
    /// Checks every method on `name`'s fixture with the model `build` makes, on
    /// every engine ([`common::engines`]: the CPU's kernels, Candle's portable ops,
    /// CUDA if present).
    fn run_everywhere(name: &str, build: fn(&Device) -> Model, layer: &'static str) {
        let reference = fixture(name);
        for engine in common::engines() {
            engine.run(|device| {
                let reference = reference
                    .iter()
                    .map(|(k, t)| (k.clone(), t.to_device(device).unwrap()))
                    .collect();
                Self {
                    name: format!("{name} [{}]", engine.name),
                    model: build(device),
                    reference,
                    layer,
                }
                .run()
            });
        }
    }

    fn input(&self) -> Tensor {
        self.reference["input"].to_dtype(DType::F64).unwrap()
    }

    fn targets(&self) -> Vec<Target> {
        let t = self.reference["targets"].to_vec1::<f32>().unwrap();
        t.into_iter().map(|c| Target::Class(c as usize)).collect()
    }

    fn check(&self, what: &str, actual: &Tensor, key: &str) {
        let err = rel_err(actual, &self.reference[key]);
        println!("{} {what}: rel err {err:.2e}", self.name);
        assert!(err < TOLERANCE, "{} {what}: rel err {err:.2e}", self.name);
    }

    fn input_map(&self, method: &dyn Method) -> Tensor {
        match method
            .attribute(&self.model, &self.input(), &self.targets())
            .unwrap()
        {
            Attribution::Input(map) => map,
            other => panic!("{}: expected an input map, got {other:?}", method.name()),
        }
    }

    fn run(&self) {
        self.check(
            "saliency",
            &self.input_map(&Gradient::saliency()),
            "saliency",
        );
        self.check(
            "deconvnet",
            &self.input_map(&Gradient::deconvnet()),
            "deconvnet",
        );
        let guided = Gradient::guided_backprop();
        self.check(
            "guided backprop",
            &self.input_map(&guided),
            "guided_backprop",
        );

        let (_, _, h, w) = self.input().dims4().unwrap();
        for (weighting, key) in [
            (CamWeighting::GradCam, "grad_cam"),
            (CamWeighting::GradCamPlusPlus, "grad_cam_plus_plus"),
            (CamWeighting::LayerCam, "layer_cam"),
        ] {
            let cam = Cam {
                layers: vec![self.layer.to_string()],
                weighting,
            };
            let maps = cam
                .attribute(&self.model, &self.input(), &self.targets())
                .unwrap();
            if let (CamWeighting::GradCam, Attribution::Layers(layers)) = (weighting, &maps) {
                self.check("grad-cam raw", &layers[0].1, "grad_cam.raw");
            }
            let display = maps.display((h, w), ChannelReduction::MaxAbs).unwrap();
            self.check(
                &format!("{key} display"),
                &display,
                &format!("{key}.display"),
            );
        }
        for (upsampling, key) in [
            (Upsampling::Nearest, "guided_grad_cam.nearest"),
            (Upsampling::Bilinear, "guided_grad_cam.bilinear"),
        ] {
            let method = GuidedGradCam {
                layer: self.layer.to_string(),
                upsampling,
            };
            self.check(key, &self.input_map(&method), key);
        }

        let noise = &self.reference["smoothgrad.noise"];
        for (statistic, key) in [
            (Statistic::Mean, "smoothgrad.smoothgrad"),
            (Statistic::MeanOfSquares, "smoothgrad.smoothgrad_sq"),
            (Statistic::Variance, "smoothgrad.vargrad"),
        ] {
            let smooth = SmoothGrad {
                samples: noise.dim(0).unwrap(),
                statistic,
                batch: 3, // not a divisor of the copies: batches straddle inputs
                ..SmoothGrad::new(Box::new(Gradient::saliency()))
            };
            let maps = smooth
                .attribute_with_noise(&self.model, &self.input(), &self.targets(), noise)
                .unwrap();
            let Attribution::Input(map) = maps else {
                panic!("SmoothGrad of the saliency is an input map")
            };
            self.check(key, &map, key);
        }

        let baseline = self.reference["ig_baseline"].to_dtype(DType::F64).unwrap();
        for (quadrature, baseline, rule) in [
            (
                Quadrature::RiemannLeft,
                Baseline::Custom(baseline.clone()),
                "riemann_left",
            ),
            (
                Quadrature::RiemannRight,
                Baseline::Custom(baseline.clone()),
                "riemann_right",
            ),
            (
                Quadrature::RiemannMiddle,
                Baseline::Custom(baseline.clone()),
                "riemann_middle",
            ),
            (
                Quadrature::RiemannTrapezoid,
                Baseline::Custom(baseline.clone()),
                "riemann_trapezoid",
            ),
            (
                Quadrature::GaussLegendre,
                Baseline::Custom(baseline.clone()),
                "gausslegendre",
            ),
            (Quadrature::GaussLegendre, Baseline::Zero, "default"),
        ] {
            let steps = 8;
            let ig = IntegratedGradients {
                steps,
                quadrature,
                baseline,
                batch: 5,
            };
            let (maps, delta) = ig
                .attribute_with_delta(&self.model, &self.input(), &self.targets())
                .unwrap();
            let Attribution::Input(map) = maps else {
                panic!("integrated gradients is an input map")
            };
            let mut map = map.to_dtype(DType::F64).unwrap();
            let mut delta = delta.to_dtype(DType::F64).unwrap();
            if quadrature == Quadrature::RiemannTrapezoid {
                // Captum's trapezoid weights are 1/n with halved ends, summing to
                // (n-1)/n; the rule's own are 1/(n-1): Captum's map is (n-1)/n of it.
                let shrink = (steps - 1) as f64 / steps as f64;
                let change = (map.flatten_from(1).unwrap().sum(1).unwrap() - &delta).unwrap();
                map = (map * shrink).unwrap();
                delta = (map.flatten_from(1).unwrap().sum(1).unwrap() - change).unwrap();
            }
            self.check(&format!("ig {rule}"), &map, &format!("ig.{rule}"));
            // The gap is small next to the map: compare it on the map's scale.
            let expected = self.reference[&format!("ig_delta.{rule}")]
                .to_dtype(DType::F64)
                .unwrap();
            let scale = max_abs(&self.reference[&format!("ig.{rule}")]);
            let gap = max_abs(&(delta - expected).unwrap());
            println!(
                "{} ig {rule} delta: off by {gap:.2e}, map scale {scale:.2e}",
                self.name
            );
            assert!(
                gap < TOLERANCE * scale,
                "{} ig {rule} delta off by {gap:.2e}",
                self.name
            );
        }

        let occlusion = Occlusion {
            window: 12,
            stride: 8,
            fill: 0.0,
            batch: 7,
        };
        self.check("occlusion", &self.input_map(&occlusion), "occlusion");
    }
}

#[test]
fn demo_cnn_matches_captum_and_pytorch_grad_cam() {
    Case::run_everywhere("demo", demo_model, "features.10");
}

#[test]
fn resnet18_matches_captum_and_pytorch_grad_cam() {
    Case::run_everywhere("resnet18", resnet18, "layer3");
}

/// LIME against Captum's `Lime` with `SkLearnRidge(alpha=1.0)`, given the same
/// superpixels and coalitions (tests/reference/make_perturbation_fixtures.py), from
/// the zero baseline and from each superpixel's mean.
#[test]
fn lime_matches_captum_given_the_same_superpixels_and_coalitions() {
    use unitscope::attribution::superpixels::Segmentation;
    use unitscope::attribution::{Fill, Lime};
    for (name, build) in [
        ("demo", demo_model as fn(&Device) -> Model),
        ("resnet18", resnet18),
    ] {
        let reference = fixture(&format!("lime_{name}"));
        let mask = reference["mask"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let segmentation = Segmentation {
            size: (64, 64),
            labels: mask.iter().map(|&l| l as u32).collect(),
            count: mask.iter().fold(0f32, |m, &l| m.max(l)) as usize + 1,
        };
        let coalitions: Vec<Vec<bool>> = reference["coalitions"]
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .map(|z| z.into_iter().map(|v| v == 1.0).collect())
            .collect();
        let target = Target::Class(reference["target"].to_vec1::<f32>().unwrap()[0] as usize);
        for engine in common::engines() {
            engine.run(|device| {
                let model = build(device);
                let x = reference["input"]
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_device(device)
                    .unwrap();
                for (fill, key) in [(Fill::Zero, "lime.zero"), (Fill::Mean, "lime.mean")] {
                    let lime = Lime {
                        fill,
                        batch: 7,
                        ..Lime::default()
                    };
                    let fit = lime
                        .fit(&model, &x, &target, segmentation.clone(), &coalitions)
                        .unwrap();
                    let painted: Vec<f32> = fit
                        .segmentation
                        .labels
                        .iter()
                        .map(|&l| fit.coefficients[l as usize] as f32)
                        .collect();
                    let map = Tensor::from_vec(painted, (1, 1, 64, 64), &Device::Cpu)
                        .unwrap()
                        .repeat((1, 3, 1, 1))
                        .unwrap();
                    let err = rel_err(&map, &reference[key]);
                    println!(
                        "{name} [{}] {key}: rel err {err:.2e}, R² {:.3}",
                        engine.name, fit.r2
                    );
                    assert!(
                        err < TOLERANCE,
                        "{name} [{}] {key}: rel err {err:.2e}",
                        engine.name
                    );
                }
            });
        }
    }
}

/// KernelSHAP against Captum's `KernelShap` given the same superpixels and the same
/// coalitions (drawn by the Shapley kernel, so each of weight 1). Captum imposes
/// the efficiency constraint by weights of 10^6 on the full and empty coalitions,
/// unitscope exactly; the maps agree within the tolerance all the same.
#[test]
fn kernel_shap_matches_captum_given_the_same_superpixels_and_coalitions() {
    use unitscope::attribution::KernelShap;
    use unitscope::attribution::superpixels::Segmentation;
    for (name, build) in [
        ("demo", demo_model as fn(&Device) -> Model),
        ("resnet18", resnet18),
    ] {
        let reference = fixture(&format!("lime_{name}"));
        let mask = reference["mask"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let segmentation = Segmentation {
            size: (64, 64),
            labels: mask.iter().map(|&l| l as u32).collect(),
            count: mask.iter().fold(0f32, |m, &l| m.max(l)) as usize + 1,
        };
        // The two ends come first in Captum's draws; unitscope evaluates them itself.
        let coalitions: Vec<Vec<bool>> = reference["shap_coalitions"]
            .to_vec2::<f32>()
            .unwrap()
            .into_iter()
            .skip(2)
            .map(|z| z.into_iter().map(|v| v == 1.0).collect())
            .collect();
        let weights = vec![1.0; coalitions.len()];
        let target = Target::Class(reference["target"].to_vec1::<f32>().unwrap()[0] as usize);
        for engine in common::engines() {
            engine.run(|device| {
                let model = build(device);
                let x = reference["input"]
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_device(device)
                    .unwrap();
                let shap = KernelShap {
                    batch: 5,
                    ..KernelShap::default()
                };
                let phi = shap
                    .shapley_values(&model, &x, &target, &segmentation, (&coalitions, &weights))
                    .unwrap();
                let painted: Vec<f32> = segmentation
                    .labels
                    .iter()
                    .map(|&l| phi[l as usize] as f32)
                    .collect();
                let map = Tensor::from_vec(painted, (1, 1, 64, 64), &Device::Cpu)
                    .unwrap()
                    .repeat((1, 3, 1, 1))
                    .unwrap();
                let err = rel_err(&map, &reference["kernel_shap.zero"]);
                println!("{name} [{}] kernel shap: rel err {err:.2e}", engine.name);
                assert!(
                    err < TOLERANCE,
                    "{name} [{}] kernel shap: rel err {err:.2e}",
                    engine.name
                );
            });
        }
    }
}

/// GradientSHAP against Captum's `GradientShap` given its own draws (noisy inputs,
/// baselines, points), recorded by the fixture script.
#[test]
fn gradient_shap_matches_captum_given_the_same_draws() {
    use unitscope::attribution::{Draws, GradientShap};
    for (name, build) in [
        ("demo", demo_model as fn(&Device) -> Model),
        ("resnet18", resnet18),
    ] {
        let reference = fixture(&format!("lime_{name}"));
        let target = Target::Class(reference["target"].to_vec1::<f32>().unwrap()[0] as usize);
        for engine in common::engines() {
            engine.run(|device| {
                let model = build(device);
                let on = |key: &str| {
                    reference[key]
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_device(device)
                        .unwrap()
                };
                let draws = Draws {
                    noisy: on("gshap.noisy"),
                    baselines: on("gshap.baselines"),
                    alphas: reference["gshap.alpha"]
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap(),
                };
                let shap = GradientShap {
                    samples: draws.alphas.len(),
                    batch: 5,
                    ..GradientShap::default()
                };
                let maps = shap
                    .attribute_with(&model, &on("input"), std::slice::from_ref(&target), &draws)
                    .unwrap();
                let Attribution::Input(map) = maps else {
                    panic!("GradientSHAP is an input map")
                };
                let err = rel_err(&map, &reference["gshap"]);
                println!("{name} [{}] gradient shap: rel err {err:.2e}", engine.name);
                assert!(
                    err < TOLERANCE,
                    "{name} [{}] gradient shap: rel err {err:.2e}",
                    engine.name
                );
            });
        }
    }
}

/// LRP against Zennit 1.0.0 (tests/reference/make_lrp_fixtures.py): every composite,
/// with and without biases, on the demo CNN, VGG-11, AlexNet and ResNet-18 (Zennit's
/// `ResNetCanonizer`: batch norms merged, residual sums under the `Norm` rule),
/// seeded with each target's logit; on every engine. Each map keeps the share of
/// its logit that Zennit's does; without biases that is all of it (within 1e-5),
/// except on AlexNet.
#[test]
fn lrp_matches_zennit_on_every_composite() {
    use unitscope::attribution::{Lrp, conservation};
    use unitscope::model::Composite;
    fn synthetic(device: &Device, arch: Architecture) -> Model {
        common::synthetic_model_on(
            device,
            arch,
            &ArchOptions::default(),
            10,
            DType::F64,
            Default::default(),
        )
    }
    let vgg11 = |device: &Device| synthetic(device, Architecture::Vgg11);
    let alexnet = |device: &Device| synthetic(device, Architecture::Alexnet);
    for (name, build) in [
        ("demo", demo_model as fn(&Device) -> Model),
        ("vgg11", vgg11),
        ("resnet18", resnet18),
        ("alexnet", alexnet),
    ] {
        let reference = fixture(&format!("lrp_{name}"));
        let classes: Vec<usize> = reference["targets"]
            .to_vec1::<f64>()
            .unwrap()
            .into_iter()
            .map(|t| t as usize)
            .collect();
        let targets: Vec<Target> = classes.iter().map(|&c| Target::Class(c)).collect();
        let logits = reference["logits"].to_vec2::<f64>().unwrap();
        let values: Vec<f64> = classes
            .iter()
            .zip(&logits)
            .map(|(&c, row)| row[c])
            .collect();
        for engine in common::engines() {
            engine.run(|device| {
                let model = build(device);
                let input = reference["input"].to_device(device).unwrap();
                for &composite in Composite::ALL {
                    for without_bias in [false, true] {
                        let lrp = Lrp {
                            composite,
                            without_bias,
                            batch: 1,
                            ..Lrp::default()
                        };
                        let rules = lrp.rules(&model).unwrap();
                        let (low, high) = (
                            reference["low"].to_vec1::<f64>().unwrap(),
                            reference["high"].to_vec1::<f64>().unwrap(),
                        );
                        assert_eq!(rules.bounds, (low, high), "{name}: the zB bounds");
                        let Attribution::Input(map) =
                            lrp.attribute(&model, &input, &targets).unwrap()
                        else {
                            panic!("LRP is an input map")
                        };
                        let suffix = if without_bias { ".without-bias" } else { "" };
                        let key = format!("{}{suffix}", composite.name());
                        let err = rel_err(&map, &reference[key.as_str()]);
                        let value = Tensor::new(values.as_slice(), &Device::Cpu).unwrap();
                        let kept =
                            conservation(&map.to_device(&Device::Cpu).unwrap(), &value).unwrap();
                        println!(
                            "{name} [{}] lrp {key}: rel err {err:.2e}, sum/logit {kept:.6?}",
                            engine.name
                        );
                        assert!(
                            err < TOLERANCE,
                            "{name} [{}] lrp {key}: rel err {err:.2e}",
                            engine.name
                        );
                        let zennit = conservation(&reference[key.as_str()], &value).unwrap();
                        for (k, z) in kept.iter().zip(zennit) {
                            assert!(
                                (k - z).abs() < 1e-4,
                                "{name} lrp {key}: sum/logit {k} vs {z}"
                            );
                            // AlexNet has units whose z⁺ denominator is zero (Zennit's
                            // keep 0.990 of the logit too); the others conserve it.
                            if without_bias && name != "alexnet" {
                                assert!((k - 1.0).abs() < 1e-3, "{name} lrp {key}: sum/logit {k}");
                            }
                        }
                    }
                }
            });
        }
    }
}

/// LRP of a unit (a channel's mean in a hidden layer) starts from each position's
/// share of the mean: without biases, the map sums to the unit's value.
#[test]
fn lrp_of_a_unit_sums_to_its_value() {
    use unitscope::attribution::{Lrp, conservation};
    use unitscope::model::{Objective, Probe};
    let model = demo_model(&Device::Cpu);
    let input = (common::synthetic_input(&[2, 3, 64, 64]) * 0.1).unwrap();
    let input = input.to_dtype(DType::F64).unwrap();
    let unit: unitscope::model::UnitAddress = "features.4:5".parse().unwrap();
    let capture = model
        .forward(&input, &Probe::new().record("features.4"))
        .unwrap();
    let objective = Objective::Unit {
        unit: unit.clone(),
        reduce: Default::default(),
    };
    let values = capture.per_sample(&objective).unwrap();
    let lrp = Lrp {
        without_bias: true,
        ..Lrp::default()
    };
    let Attribution::Input(map) = lrp
        .attribute(
            &model,
            &input,
            &[Target::Unit(unit.clone()), Target::Unit(unit)],
        )
        .unwrap()
    else {
        panic!("LRP is an input map")
    };
    let kept = conservation(&map, &values).unwrap();
    println!("unit features.4:5: values {values}, sum/value {kept:?}");
    for k in kept {
        assert!((k - 1.0).abs() < 1e-3, "sum/value {k}");
    }
}

/// Max-sensitivity against Quantus 0.6's `MaxSensitivity` (fixture from
/// tests/reference/make_fragility_fixtures.py): the saliency maps of the demo CNN
/// under the same six perturbations, none changing the prediction.
#[test]
fn max_sensitivity_matches_quantus_given_the_same_perturbations() {
    use unitscope::metrics::max_sensitivity;
    let reference = fixture("fragility_demo");
    let model = demo_model(&Device::Cpu);
    let f64_of = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
    let x = f64_of(&reference["input"]);
    let classes: Vec<usize> = reference["classes"]
        .to_vec1::<f64>()
        .unwrap()
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let targets: Vec<Target> = classes.iter().map(|&c| Target::Class(c)).collect();
    let perturbed = &reference["perturbed"];
    let draws: Vec<Tensor> = (0..perturbed.dim(0).unwrap())
        .map(|s| f64_of(&perturbed.get(s).unwrap()))
        .collect();
    let saliency = Gradient::saliency();
    let maps = saliency.attribute(&model, &x, &targets).unwrap();
    let got =
        max_sensitivity(&model, &saliency, (&x, &targets), (&maps, &classes), &draws).unwrap();
    let want = reference["max_sensitivity"].to_vec1::<f64>().unwrap();
    println!("max-sensitivity: unitscope {got:?}, Quantus {want:?}");
    for (g, w) in got.iter().zip(&want) {
        let g = g.expect("no draw changed the prediction");
        assert!(
            (g - w).abs() / w < TOLERANCE,
            "max-sensitivity {g} vs Quantus {w}"
        );
    }
}
