//! Captures: unit objectives, weighted objectives, and errors for bad addresses.

mod common;

use candle_core::Tensor;
use common::{rel_err, synthetic_input, synthetic_model};
use unitscope::model::{
    ArchOptions, Architecture, BackwardRule, Objective, Probe, Reduce, Stem, UnitAddress,
};

fn unit(s: &str, reduce: Reduce) -> Objective {
    Objective::Unit {
        unit: s.parse::<UnitAddress>().unwrap(),
        reduce,
    }
}

#[test]
fn unit_objectives_have_the_analytic_layer_gradient() {
    let model = synthetic_model(Architecture::Resnet18, &ArchOptions::default(), 10);
    let x = synthetic_input(&[2, 3, 64, 64]);
    let capture = model.forward(&x, &Probe::new().record("layer3")).unwrap();

    // d mean(A[:, 5]) / dA = 1/(h w) on channel 5, zero elsewhere, for every sample.
    let grads = capture
        .backward(&capture.objective(&unit("layer3:5", Reduce::Mean)).unwrap())
        .unwrap();
    let g = grads.layer("layer3").unwrap();
    assert_eq!(g.dims(), [2, 256, 4, 4]);
    let total: f32 = g.sum_all().unwrap().to_scalar().unwrap();
    let on_channel: f32 = g
        .narrow(1, 5, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(
        (total - 2.0).abs() < 1e-6 && (on_channel - 2.0).abs() < 1e-6,
        "{total} {on_channel}"
    );
    let cell: f32 = g
        .narrow(1, 5, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((cell - 1.0 / 16.0).abs() < 1e-7);

    // Max: the whole gradient at one position per sample.
    let capture = model.forward(&x, &Probe::new().record("layer3")).unwrap();
    let grads = capture
        .backward(&capture.objective(&unit("layer3:5", Reduce::Max)).unwrap())
        .unwrap();
    let g = grads
        .layer("layer3")
        .unwrap()
        .narrow(1, 5, 1)
        .unwrap()
        .flatten_from(1)
        .unwrap();
    let nonzero: Vec<usize> = g
        .to_vec2::<f32>()
        .unwrap()
        .iter()
        .map(|row| row.iter().filter(|v| **v != 0.0).count())
        .collect();
    assert_eq!(nonzero, [1, 1]);

    // One position.
    let capture = model.forward(&x, &Probe::new().record("layer3")).unwrap();
    let grads = capture
        .backward(
            &capture
                .objective(&unit("layer3:5:2:1", Reduce::Mean))
                .unwrap(),
        )
        .unwrap();
    let g = grads.layer("layer3").unwrap();
    let at: Vec<f32> = g
        .narrow(1, 5, 1)
        .unwrap()
        .narrow(2, 2, 1)
        .unwrap()
        .narrow(3, 1, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(at, [1.0, 1.0]);
}

/// The true gradient is linear in the objective (the guided and DeconvNet rules,
/// which clip negative gradients, are not).
#[test]
fn weighted_objectives_are_linear() {
    let model = synthetic_model(Architecture::PlainCnn, &ArchOptions::default(), 10);
    let x = synthetic_input(&[1, 3, 32, 32]);
    let input_grad = |o: &Objective| {
        let capture = model
            .forward(&x, &Probe::new().record("features.4"))
            .unwrap();
        capture
            .backward(&capture.objective(o).unwrap())
            .unwrap()
            .input()
            .unwrap()
            .clone()
    };
    let (a, b) = (Objective::Logit(3), unit("features.4:7", Reduce::Mean));
    let mixed = input_grad(&Objective::Weighted(vec![
        (2.0, a.clone()),
        (-0.5, b.clone()),
    ]));
    let expected = ((input_grad(&a) * 2.0).unwrap() - (input_grad(&b) * 0.5).unwrap()).unwrap();
    assert!(common::rel_err(&mixed, &expected) < 1e-5);
}

#[test]
fn bad_addresses_are_errors() {
    let model = synthetic_model(Architecture::PlainCnn, &ArchOptions::default(), 10);
    let x = synthetic_input(&[1, 3, 32, 32]);
    let err = model
        .forward(&x, &Probe::new().record("features.99"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no layer `features.99`") && err.contains("unitscope info"),
        "{err}"
    );

    let capture = model
        .forward(&x, &Probe::new().record("features.4"))
        .unwrap();
    let err = capture
        .objective(&unit("features.4:500", Reduce::Mean))
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = capture
        .objective(&unit("features.4:1:99:0", Reduce::Mean))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
    let err = capture
        .objective(&unit("features.0:1", Reduce::Mean))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not recorded"), "{err}");
    let err = capture
        .objective(&Objective::Logit(10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = capture
        .backward(capture.logits().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("scalar"), "{err}");
    let err = model
        .forward(&synthetic_input(&[1, 4, 8, 8]), &Probe::new())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[N, 3, H, W]"), "{err}");
}

#[test]
fn a_layers_only_probe_gives_the_same_layer_gradients_and_no_input_gradient() {
    let model = common::synthetic_model(Architecture::PlainCnn, &ArchOptions::default(), 10);
    let x = common::synthetic_input(&[2, 3, 32, 32]);
    let grads = |probe: Probe| {
        let capture = model.forward(&x, &probe.record("features.4")).unwrap();
        capture
            .backward(&capture.objective(&Objective::Logit(3)).unwrap())
            .unwrap()
    };
    let (full, layers_only) = (grads(Probe::new()), grads(Probe::new().layers_only()));
    let diff = (full.layer("features.4").unwrap() - layers_only.layer("features.4").unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    assert!(full.input().is_ok());
    let err = layers_only.input().err().unwrap();
    assert!(err.to_string().contains("layers-only"), "{err}");
}

/// A values-only pass records the same activations and logits as one that carries
/// gradients, rotated layers included, and refuses a backward pass.
#[test]
fn a_values_only_probe_records_the_same_values_and_takes_no_gradient() {
    let model = common::synthetic_model(Architecture::PlainCnn, &ArchOptions::default(), 10);
    let x = common::synthetic_input(&[2, 3, 32, 32]);
    let rotation = unitscope::dissect::rotation::random_rotation(32, 7, model.device()).unwrap();
    let probe = |p: Probe| {
        p.record("features.1")
            .record("features.4")
            .rotate("features.1", rotation.clone())
    };
    let carrying = model
        .forward(&x, &probe(Probe::new().layers_only()))
        .unwrap();
    let values = model
        .forward(&x, &probe(Probe::new().values_only()))
        .unwrap();
    let same = |a: &Tensor, b: &Tensor| {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    };
    for layer in ["features.1", "features.4"] {
        same(
            values.activation(layer).unwrap(),
            carrying.activation(layer).unwrap(),
        );
    }
    same(values.logits().unwrap(), carrying.logits().unwrap());
    let err = values
        .backward(&values.objective(&Objective::Logit(3)).unwrap())
        .err()
        .unwrap();
    assert!(err.to_string().contains("values only"), "{err}");
}

/// Held at the stem and carried back, the input gradient is the one a plain pass
/// gives, on every architecture (EfficientNet-Lite's stem pads unevenly) and when
/// the stem's own convolution is recorded (it is then not fused with its batch norm).
#[test]
fn a_gradient_held_at_the_stem_resolves_to_the_input_gradient() {
    let cases = [
        (Architecture::Resnet18, 64, None),
        (Architecture::Resnet18, 64, Some("conv1:3")),
        (Architecture::Vgg11Bn, 32, None),
        (Architecture::Alexnet, 64, None),
        (Architecture::EfficientnetLite0, 64, None),
        (Architecture::PlainCnn, 32, None),
    ];
    for (arch, size, unit_target) in cases {
        let model = synthetic_model(arch, &ArchOptions::default(), 10);
        let x = synthetic_input(&[2, 3, size, size]);
        for rule in [BackwardRule::Gradient, BackwardRule::GuidedBackprop] {
            let (probe, objective) = match unit_target {
                Some(u) => (
                    Probe::new().rule(rule).record(u.split(':').next().unwrap()),
                    unit(u, Reduce::Mean),
                ),
                None => (Probe::new().rule(rule), Objective::Logit(3)),
            };
            let plain = model.forward(&x, &probe).unwrap();
            let expected = plain
                .backward(&plain.objective(&objective).unwrap())
                .unwrap()
                .input()
                .unwrap();
            let reads = std::cell::Cell::new(0);
            let source = |stem: &Stem, input: &Tensor| {
                reads.set(reads.get() + 1);
                stem.apply(input)
            };
            let held = model.forward_held(&x, &probe, &source).unwrap();
            let grads = held.backward(&held.objective(&objective).unwrap()).unwrap();
            let actual = grads.input_gradient().unwrap().resolve().unwrap();
            assert_eq!(reads.get(), 1, "{arch:?}: the stem was not held");
            let err = rel_err(&actual, &expected);
            assert!(
                err < 1e-5,
                "{arch:?} {rule:?} {unit_target:?}: off by {err:e}"
            );
        }
    }
}

/// A source that gives a wrong-shaped stem output, or a layers-only probe, is an
/// error, not a pass on garbage.
#[test]
fn a_held_pass_checks_its_stem_output() {
    let model = synthetic_model(Architecture::PlainCnn, &ArchOptions::default(), 10);
    let x = synthetic_input(&[2, 3, 32, 32]);
    let half = |stem: &Stem, input: &Tensor| stem.apply(&input.narrow(0, 0, 1)?);
    let err = model.forward_held(&x, &Probe::new(), &half).err().unwrap();
    assert!(err.to_string().contains("stem's output"), "{err}");
    let whole = |stem: &Stem, input: &Tensor| stem.apply(input);
    let err = model
        .forward_held(&x, &Probe::new().layers_only(), &whole)
        .err()
        .unwrap();
    assert!(err.to_string().contains("layers-only"), "{err}");
}

/// A held pass on the CPU keeps its trunk on the engine's tape; layers it records
/// leave the tape for the objective while the trunk goes on. Their gradients and
/// the input gradient are the plain pass's, with the objective reading two layers
/// and a logit, and in a pass that stops after its recorded layers (which has no
/// logits) for an objective of the layers alone.
#[test]
fn recorded_layers_of_a_taped_trunk_get_the_plain_passs_gradients() {
    let cases = [
        (Architecture::Resnet18, 64),
        (Architecture::Vgg11Bn, 32),
        (Architecture::EfficientnetLite0, 64),
        (Architecture::PlainCnn, 32),
    ];
    for (arch, size) in cases {
        let model = synthetic_model(arch, &ArchOptions::default(), 10);
        let x = synthetic_input(&[2, 3, size, size]);
        let maps: Vec<String> = (model.layers().unwrap().iter())
            .filter(|l| l.shape.len() == 3)
            .map(|l| l.name.clone())
            .collect();
        let (a, b) = (&maps[maps.len() / 3], &maps[2 * maps.len() / 3]);
        let probe = Probe::new().record(a.as_str()).record(b.as_str());
        let units = vec![
            (1.0, unit(&format!("{a}:1"), Reduce::Mean)),
            (0.5, unit(&format!("{b}:2"), Reduce::Max)),
        ];
        let with_logit = [units.clone(), vec![(0.1, Objective::Logit(3))]].concat();
        let whole = |stem: &Stem, input: &Tensor| stem.apply(input);
        for (objective, stops) in [
            (Objective::Weighted(with_logit), false),
            (Objective::Weighted(units), true),
        ] {
            let plain = model.forward(&x, &probe).unwrap();
            let expected = plain
                .backward(&plain.objective(&objective).unwrap())
                .unwrap();
            let taped_probe = match stops {
                true => probe.clone().stop_after_recorded(),
                false => probe.clone(),
            };
            let taped = model.forward_held(&x, &taped_probe, &whole).unwrap();
            assert_eq!(taped.logits().is_err(), stops, "{arch:?}");
            for layer in [a, b] {
                let err = rel_err(
                    taped.activation(layer).unwrap(),
                    plain.activation(layer).unwrap(),
                );
                assert!(err < 1e-6, "{arch:?} {layer}: activation off by {err:e}");
            }
            let actual = taped
                .backward(&taped.objective(&objective).unwrap())
                .unwrap();
            for layer in [a, b] {
                let err = rel_err(actual.layer(layer).unwrap(), expected.layer(layer).unwrap());
                assert!(err < 1e-5, "{arch:?} {layer} stops={stops}: off by {err:e}");
            }
            let err = rel_err(&actual.input().unwrap(), &expected.input().unwrap());
            assert!(err < 1e-5, "{arch:?} input stops={stops}: off by {err:e}");
        }
    }
}
