//! Weight files: every supported format gives the same model; broken files give an
//! error naming the problem.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{rel_err, root, synthetic_input};
use unitscope::data::InputSpec;
use unitscope::model::{ArchOptions, Architecture, Model, Weights};

fn weights_fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/weights").join(name)
}

fn options() -> ArchOptions {
    ArchOptions {
        channels: Some(vec![4]),
        ..ArchOptions::default()
    }
}

fn build(weights: &Weights) -> anyhow::Result<Model> {
    let labels = unitscope::data::labels::numbered(3);
    Model::new(
        "t".into(),
        Architecture::PlainCnn,
        &options(),
        weights,
        InputSpec::default(),
        labels,
    )
}

fn load(path: &Path) -> anyhow::Result<Model> {
    build(&Weights::load(path, &Device::Cpu)?)
}

fn error_of(result: anyhow::Result<Model>) -> String {
    match result {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => format!("{e:#}"),
    }
}

/// The checkpoints hold the closed-form weights, so they must reproduce the
/// synthetic model's logits exactly.
fn assert_same_model(model: &Model) {
    let expected = build(&Weights::synthetic(&Device::Cpu)).unwrap();
    let x = synthetic_input(&[2, 3, 16, 16]);
    let err = rel_err(&model.logits(&x).unwrap(), &expected.logits(&x).unwrap());
    assert!(err == 0.0, "logits differ: {err:e}");
}

#[test]
fn reads_legacy_pth() {
    assert_same_model(&load(&weights_fixture("plain_cnn_legacy.pth")).unwrap());
}

#[test]
fn reads_legacy_checkpoint_with_optimizer_state() {
    assert_same_model(&load(&weights_fixture("plain_cnn_legacy_checkpoint.pth")).unwrap());
}

#[test]
fn reads_zip_pth_wrapped_with_dataparallel_prefixes() {
    assert_same_model(&load(&weights_fixture("plain_cnn_wrapped.pth")).unwrap());
}

#[test]
fn reads_pth_of_parameters() {
    assert_same_model(&load(&weights_fixture("plain_cnn_params.pth")).unwrap());
}

fn synthetic_safetensors(dir: &Path) -> PathBuf {
    let tensors: Vec<(String, Tensor)> = [
        ("features.0.weight", vec![4, 3, 3, 3]),
        ("features.0.bias", vec![4]),
        ("features.1.weight", vec![4]),
        ("features.1.bias", vec![4]),
        ("features.1.running_mean", vec![4]),
        ("features.1.running_var", vec![4]),
        ("fc.weight", vec![3, 4]),
        ("fc.bias", vec![3]),
    ]
    .into_iter()
    .map(|(n, s)| {
        (
            n.to_owned(),
            unitscope::model::weights::synthetic::tensor(n, &s, &Device::Cpu).unwrap(),
        )
    })
    .collect();
    let path = dir.join("plain.safetensors");
    candle_core::safetensors::save(&tensors.into_iter().collect(), &path).unwrap();
    path
}

#[test]
fn reads_safetensors_and_converts_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_safetensors(dir.path());
    assert_same_model(&load(&path).unwrap());
    // Half precision is widened to f32 on load.
    let half: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(DType::F16).unwrap()))
            .collect();
    let half_path = dir.path().join("half.safetensors");
    candle_core::safetensors::save(&half, &half_path).unwrap();
    assert!(load(&half_path).is_ok());
}

#[test]
fn truncated_safetensors_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_safetensors(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = error_of(load(&path));
    assert!(
        err.contains("plain.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_safetensors(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..24].copy_from_slice(b"{{{{garbage}}}}}");
    std::fs::write(&path, &bytes).unwrap();
    let err = error_of(load(&path));
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn misshaped_tensor_names_tensor_and_shapes() {
    let err = error_of(load(&weights_fixture("plain_cnn_misshaped.pth")));
    assert!(
        err.contains("`fc.weight` has shape [4, 3], the architecture expects [3, 4]"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_safetensors(dir.path());
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("features.1.running_var");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = error_of(load(&path));
    assert!(
        err.contains("no tensor `features.1.running_var` (expected shape [4])"),
        "{err}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_safetensors(dir.path());
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.insert(
        "head.weight".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let err = error_of(load(&path));
    assert!(err.contains("`head.weight` [2, 2]"), "{err}");
}

#[test]
fn foreign_pickle_global_is_refused() {
    let err = error_of(load(&weights_fixture("evil.pth")));
    assert!(
        err.contains("`posix.system`") || err.contains("`os.system`"),
        "{err}"
    );
    assert!(err.contains("refusing"), "{err}");
}

#[test]
fn truncated_pth_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["plain_cnn_legacy.pth", "plain_cnn_wrapped.pth"] {
        let bytes = std::fs::read(weights_fixture(name)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let err = error_of(load(&path));
        assert!(err.contains(name), "{err}");
    }
}
