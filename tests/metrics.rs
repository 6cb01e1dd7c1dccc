//! The trust metrics on the demo model show what correct implementations show:
//! Grad-CAM points at the object far more often than a random point would, and the
//! vanilla gradient depends on the model's weights while guided backprop barely does
//! (Adebayo et al. 2018).

use candle_core::{Device, Tensor};
use unitscope::attribution::{self, Cam, ChannelReduction, Gradient, Method, Target};
use unitscope::data::world::{HELD_OUT, World};
use unitscope::metrics::{self, DeletionInsertion};
use unitscope::model::{Model, demo};

struct Scenes {
    inputs: Tensor,
    masks: Vec<Vec<bool>>,
    targets: Vec<Target>,
}

fn scenes(model: &Model, n: u64) -> Scenes {
    let world = World::new(0);
    let scenes: Vec<_> = (0..n).map(|i| world.scene(HELD_OUT + i)).collect();
    let tensors: Vec<Tensor> = scenes
        .iter()
        .map(|s| {
            model
                .input_spec()
                .to_tensor(&s.image, &Device::Cpu)
                .unwrap()
        })
        .collect();
    let inputs = Tensor::stack(&tensors, 0).unwrap();
    let targets = attribution::predicted(model, &inputs)
        .unwrap()
        .into_iter()
        .map(Target::Class)
        .collect();
    Scenes {
        inputs,
        masks: scenes.iter().map(|s| s.subject_mask()).collect(),
        targets,
    }
}

fn display(model: &Model, method: &dyn Method, s: &Scenes) -> Vec<Vec<f32>> {
    let (_, _, h, w) = s.inputs.dims4().unwrap();
    let maps = method.attribute(model, &s.inputs, &s.targets).unwrap();
    let display = maps.display((h, w), ChannelReduction::MaxAbs).unwrap();
    display.flatten_from(1).unwrap().to_vec2::<f32>().unwrap()
}

#[test]
fn grad_cam_points_at_the_object() {
    let model = demo::model(&Device::Cpu).unwrap();
    let s = scenes(&model, 48);
    let maps = display(&model, &Cam::grad_cam("features.10"), &s);
    let hits = maps
        .iter()
        .zip(&s.masks)
        .filter(|(m, k)| metrics::pointing_hit(m, k))
        .count() as f64
        / maps.len() as f64;
    let area = s
        .masks
        .iter()
        .map(|m| m.iter().filter(|&&b| b).count() as f64 / m.len() as f64)
        .sum::<f64>()
        / s.masks.len() as f64;
    let mass = maps
        .iter()
        .zip(&s.masks)
        .map(|(m, k)| metrics::mass_inside(m, k))
        .sum::<f64>()
        / maps.len() as f64;
    println!(
        "Grad-CAM on 48 scenes: pointing game {hits:.3}, mass inside {mass:.3}; random point {area:.3}"
    );
    assert!(
        hits > 2.0 * area && hits > 0.5,
        "pointing {hits} vs random {area}"
    );
    assert!(mass > area, "mass inside {mass} vs area {area}");
}

#[test]
fn randomization_separates_the_gradient_from_guided_backprop() {
    let model = demo::model(&Device::Cpu).unwrap();
    let s = scenes(&model, 16);
    let cascade = |method: &dyn Method| -> Vec<(String, f64)> {
        let trained = method.attribute(&model, &s.inputs, &s.targets).unwrap();
        let steps =
            metrics::cascading_randomization(&model, method, &s.inputs, &s.targets, &trained, 0)
                .unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        steps
            .iter()
            .map(|st| (st.layer.clone(), mean(&st.spearman)))
            .collect()
    };
    let gradient = cascade(&Gradient::saliency());
    let guided = cascade(&Gradient::guided_backprop());
    println!("cascading randomization on 16 scenes, mean Spearman (top layer first):");
    for ((layer, a), (_, b)) in gradient.iter().zip(&guided) {
        println!("  down to {layer:<12} gradient {a:.3}  guided backprop {b:.3}");
        assert!(a < b, "{layer}: gradient {a:.3} vs guided backprop {b:.3}");
    }
    let mean = |c: &[(String, f64)]| c.iter().map(|(_, r)| r).sum::<f64>() / c.len() as f64;
    let (a, b) = (mean(&gradient), mean(&guided));
    println!("  mean over the cascade: gradient {a:.3}  guided backprop {b:.3}");
    // Guided backprop hardly notices the classifier being replaced; the gradient does.
    assert!(guided[0].1 > 0.7 && gradient[0].1 < guided[0].1 - 0.2);
    assert!(a < b - 0.15, "gradient {a:.3} vs guided backprop {b:.3}");
}

#[test]
fn a_faithful_map_deletes_faster_than_its_reverse() {
    let model = demo::model(&Device::Cpu).unwrap();
    let s = scenes(&model, 8);
    let maps = display(&model, &Gradient::saliency(), &s);
    let games = DeletionInsertion {
        steps: 32,
        ..DeletionInsertion::default()
    };
    let (mut forward, mut reverse) = (0.0, 0.0);
    for (i, map) in maps.iter().enumerate() {
        let Target::Class(c) = s.targets[i] else {
            unreachable!()
        };
        let x = s.inputs.get(i).unwrap();
        let curves = games.curves(&model, &x, map, c).unwrap();
        assert_eq!(curves.deletion.len(), 33);
        // Both games end where the other starts: the input itself, the all-zero image.
        assert!((curves.deletion[0] - curves.insertion[32]).abs() < 1e-5);
        forward += metrics::auc(&curves.deletion);
        let negated: Vec<f32> = map.iter().map(|v| -v).collect();
        reverse += metrics::auc(&games.curves(&model, &x, &negated, c).unwrap().deletion);
    }
    println!(
        "deletion AUC over 8 scenes: saliency order {:.3}, reversed {:.3}",
        forward / 8.0,
        reverse / 8.0
    );
    assert!(
        forward < reverse,
        "saliency order {forward} vs reversed {reverse}"
    );
}
