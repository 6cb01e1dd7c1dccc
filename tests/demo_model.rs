//! The embedded demo model, the training that makes it, and the demo CLI.

mod common;

use std::process::Command;

use candle_core::Device;
use unitscope::data::world::{HELD_OUT, World};
use unitscope::model::demo;
use unitscope::train::{Corpus, TrainConfig, held_out, train_demo};

#[test]
fn embedded_model_classifies_held_out_scenes() {
    let model = demo::model(&Device::Cpu).unwrap();
    for seed in [0, 12_345] {
        let accuracy = held_out(&model, Corpus::Demo, seed, 1000).unwrap().accuracy;
        println!("seed {seed}: held-out accuracy {:.2}%", accuracy * 100.0);
        assert!(
            accuracy >= 0.95,
            "seed {seed}: held-out accuracy {accuracy}"
        );
    }
}

#[test]
fn training_is_reproducible() {
    let config = TrainConfig {
        seed: 3,
        steps: 3,
        batch: 8,
        learning_rate: 1e-3,
    };
    let a = train_demo(&config, |_| {}).unwrap();
    let b = train_demo(&config, |_| {}).unwrap();
    assert_eq!(a.tensors.len(), 10);
    for ((na, ta), (nb, tb)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(na, nb);
        let (va, vb) = (
            ta.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            tb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(va, vb, "{na} differs between two runs");
    }
    // And training moved the weights off their initialisation.
    let init =
        unitscope::model::weights::synthetic::tensor("fc.weight", &[8, 128], &Device::Cpu).unwrap();
    let trained = &a.tensors.iter().find(|(n, _)| n == "fc.weight").unwrap().1;
    assert!(common::rel_err(trained, &init) > 1e-4);
}

fn unitscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn demo_render_writes_images_masks_and_index() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        let out = unitscope(&[
            "demo",
            "render",
            "--count",
            "5",
            "--seed",
            "9",
            "-o",
            dir.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("index.json")).unwrap()).unwrap();
    let images = index["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    let world = World::new(9);
    for (i, entry) in images.iter().enumerate() {
        let scene = world.scene(i as u64);
        assert_eq!(entry["class_name"], scene.class_name());
        let img = image::open(a.path().join(entry["file"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(
            img.as_raw(),
            scene.image.as_raw(),
            "the PNG is the scene, losslessly"
        );
        for concept in entry["concepts"].as_array().unwrap() {
            let file = concept["mask"].as_str().unwrap();
            let mask = image::open(a.path().join(file)).unwrap().to_luma8();
            let on = mask.pixels().filter(|p| p[0] == 255).count();
            assert_eq!(on as u64, concept["pixels"].as_u64().unwrap(), "{file}");
            assert_eq!(
                mask.pixels().filter(|p| p[0] != 0 && p[0] != 255).count(),
                0
            );
            // Same seed, same bytes.
            assert_eq!(
                std::fs::read(a.path().join(file)).unwrap(),
                std::fs::read(b.path().join(file)).unwrap()
            );
        }
    }
    let out = unitscope(&["demo", "concepts"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for line in ["shape", "color", "texture", "background"] {
        assert!(text.lines().any(|l| l.starts_with(line)), "{text}");
    }
}

#[test]
fn predict_and_info_default_to_the_demo_model() {
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(0);
    let mut right = 0;
    for i in 0..10 {
        let scene = world.scene(HELD_OUT + 500 + i);
        let path = dir.path().join(format!("{i}.png"));
        scene.image.save(&path).unwrap();
        let out = unitscope(&["predict", "--json", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        right += usize::from(json["top"][0]["label"] == scene.class_name());
    }
    assert!(right >= 8, "{right}/10 right");
    let out = unitscope(&["info", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["layers"].as_array().unwrap().last().unwrap()["units"],
        8
    );
}
