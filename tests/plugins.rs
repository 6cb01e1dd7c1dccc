//! Plugins: the first-party ones load and compute what the host computes, and a
//! corpus of broken ones (built here, with the system C compiler and Cargo) each
//! gives one line while the host carries on.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device};
use common::root;
use unitscope::attribution::descriptor::{Params, Value};
use unitscope::attribution::{Attribution, Target, registry};
use unitscope::model::UnitAddress;
use unitscope::plugin::rise::Rise;

fn unitscope(args: &[&str], data_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(args)
        // Only the plugins beside the binary and those named: not the user's own.
        .env("XDG_DATA_HOME", data_home)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles `source` (C, against the SDK's header) into a plugin library at `out`.
fn compile_c(source: &Path, out: &Path, defines: &[&str]) {
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I"])
        .arg(root().join("sdk/include"))
        .args(defines)
        .arg("-o")
        .arg(out)
        .arg(source)
        .status()
        .expect("a C compiler (cc) for the C plugins");
    assert!(status.success(), "cc {}", source.display());
}

/// The RISE plugin's maps equal the host's direct implementation's (the same
/// masks by the same protocol; independent masking, scoring and summing) on the
/// demo model, for a class target and a unit target.
#[test]
fn the_rise_plugin_matches_rise_written_on_the_engine() {
    // In this process, the plugins beside the test binary: Cargo's deps/ folder.
    let reports = unitscope::plugin::load(&[], &[]);
    let rise = reports
        .iter()
        .find_map(|r| r.outcome.as_ref().ok().filter(|p| p.name == "rise"))
        .unwrap_or_else(|| {
            let found: Vec<_> = reports
                .iter()
                .map(|r| (&r.path, r.outcome.as_ref().err()))
                .collect();
            panic!("no rise plugin loaded: {found:?}")
        });
    assert_eq!((rise.kind, rise.status().as_str()), ("method", "ready"));
    assert!(
        registry::listing()
            .iter()
            .any(|l| l.starts_with("rise ") && l.ends_with("[plugin]"))
    );

    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let inputs = common::demo_inputs(&model, 2);
    let layer = model.layers().unwrap()[3].name.clone();
    let targets = [
        Target::Class(2),
        Target::Unit(UnitAddress {
            layer,
            channel: 1,
            position: None,
        }),
    ];
    let (masks, batch) = (300, 64);
    let mut params = Params::new();
    params.set("masks", Value::Integer(masks as u64));
    params.set("batch-size", Value::Integer(batch as u64));
    params.set("seed", Value::Integer(11));
    let plugin = registry::build("rise", &params).unwrap();
    assert_eq!(plugin.passes((64, 64)).forward, masks);
    let Attribution::Input(from_plugin) = plugin.attribute(&model, &inputs, &targets).unwrap()
    else {
        panic!("RISE's maps are input maps");
    };
    let direct = Rise {
        masks,
        cells: 8,
        keep: 0.5,
        seed: 11,
        batch,
    }
    .attribute(&model, &inputs, &targets)
    .unwrap();
    assert_eq!(from_plugin.dims(), &[2, 1, 64, 64]);
    for i in 0..2 {
        let (p, d) = (from_plugin.get(i).unwrap(), direct.get(i).unwrap());
        let err = common::rel_err(&p, &d);
        assert!(err < 1e-4, "input {i}: relative error {err}");
        // Not a flat map: RISE tells the parts apart.
        let spread = (d.max_all().unwrap().to_scalar::<f32>().unwrap()
            - d.min_all().unwrap().to_scalar::<f32>().unwrap())
            / d.mean_all().unwrap().to_scalar::<f32>().unwrap().abs();
        assert!(spread > 0.05, "input {i}: spread {spread}");
    }
    // A different seed draws other masks.
    params.set("seed", Value::Integer(12));
    let other = registry::build("rise", &params).unwrap();
    let Attribution::Input(other) = other.attribute(&model, &inputs, &targets).unwrap() else {
        panic!()
    };
    let diff = (other - &from_plugin)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert!(
        diff.to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 1e-4
    );
}

/// The C plugin (the input times its gradient) compiled against the header gives
/// the built-in gradient-x-input's maps, through `explain`.
#[test]
fn a_c_plugin_runs_through_explain() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("libinput_x_gradient.so");
    compile_c(
        &root().join("plugins/c-example/input_x_gradient.c"),
        &library,
        &[],
    );
    let listed = unitscope(
        &["plugins", "--plugin", library.to_str().unwrap()],
        dir.path(),
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with("c-input-x-gradient"))
        .unwrap_or_else(|| panic!("not listed:\n{}", stdout(&listed)))
        .to_owned();
    assert!(
        line.contains("method") && line.contains("1.0") && line.contains("ready"),
        "{line}"
    );

    let out = dir.path().join("out");
    let run = unitscope(
        &[
            "explain",
            "--plugin",
            library.to_str().unwrap(),
            "--demo",
            "1",
            "-m",
            "c-input-x-gradient,gradient-x-input",
            "--save-raw",
            "-o",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let raw = |method: &str| -> Vec<f32> {
        let path = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.contains(&format!(".{method}.")) && name.ends_with(".raw.npy")
            })
            .unwrap_or_else(|| panic!("no raw map of {method} in {}", out.display()));
        npyz::NpyFile::new(std::fs::File::open(path).unwrap())
            .unwrap()
            .into_vec()
            .unwrap()
    };
    let (plugin, builtin) = (raw("c-input-x-gradient"), raw("gradient-x-input"));
    assert_eq!(plugin.len(), builtin.len());
    assert!(builtin.iter().any(|v| *v != 0.0));
    assert_eq!(plugin, builtin);
}

/// Builds the test modality (`tests/plugins/modality.c`, raw `.f32` inputs) into
/// `dir` with `defines`.
fn rawinput(dir: &Path, defines: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let library = dir.join("librawinput.so");
    compile_c(&root().join("tests/plugins/modality.c"), &library, defines);
    library
}

/// Writes each of `inputs` (`[N, C, H, W]`) as `{dir}/scene{i}.f32`: the test
/// modality's files.
fn write_f32(dir: &Path, inputs: &candle_core::Tensor) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..inputs.dim(0).unwrap())
        .map(|i| {
            let values = inputs
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let path = dir.join(format!("scene{i}.f32"));
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// The raw maps (`.npy`) of an explain run in `out`, by file name.
fn raw_maps(out: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .map(|p| {
            let file = std::fs::File::open(&p).unwrap();
            let values = npyz::NpyFile::new(file).unwrap().into_vec().unwrap();
            (p.file_name().unwrap().to_str().unwrap().to_owned(), values)
        })
        .collect()
}

/// Pixels of `png` the test modality's own drawing makes (no green, red and blue
/// summing to full): none where the host drew its heatmap over the grey picture.
fn drawn_by_plugin(png: &Path) -> usize {
    let image = image::open(png).unwrap().to_rgb8();
    image
        .pixels()
        .filter(|p| p[1] == 0 && (p[0] as i32 + p[2] as i32 - 255).abs() <= 2)
        .count()
}

/// A modality plugin (C, against the header) opens its files wherever images
/// open: `explain` gives the same maps for them as for the demo scenes they hold,
/// drawn by the host over the plugin's picture with its axes, or by the plugin
/// itself; `predict` uses the model card it ships; `topk` searches a folder of
/// them and draws the units' activations through it; a file it cannot decode is
/// an error about that file, and `unitscope plugins` lists it.
#[test]
fn a_modality_plugin_opens_its_files_wherever_images_open() {
    let dir = tempfile::tempdir().unwrap();
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let files = write_f32(&dir.path().join("in"), &common::demo_inputs(&model, 2));
    let files: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let plain = rawinput(&dir.path().join("plain"), &[]);
    let drawing = rawinput(&dir.path().join("drawing"), &["-DDRAW", "-DCARD"]);
    // The card it ships: the demo model under other label names.
    let labels: Vec<String> = model.labels().iter().map(|l| l.to_uppercase()).collect();
    std::fs::write(dir.path().join("drawing/labels.txt"), labels.join("\n")).unwrap();
    std::fs::write(
        dir.path().join("drawing/rawinput.toml"),
        format!(
            "architecture = \"plain_cnn\"\nweights = {:?}\nlabels = \"labels.txt\"\n\
             [input]\nsize = [64, 64]\nresize = \"stretch\"\nmean = [0.5, 0.5, 0.5]\n\
             std = [0.25, 0.25, 0.25]\n[options]\nchannels = [16, 32, 64, 128]\n\
             batch_norm = false\n",
            root().join("assets/demo-model.safetensors")
        ),
    )
    .unwrap();

    let listed = unitscope(
        &["plugins", "--plugin", drawing.to_str().unwrap()],
        dir.path(),
    );
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with("rawinput"))
        .unwrap_or_else(|| panic!("not listed:\n{}", stdout(&listed)))
        .to_owned();
    assert!(
        line.contains("modality") && line.contains("ready") && line.contains("(.f32; model "),
        "{line}"
    );

    let explain = |library: Option<&Path>, inputs: &[&str], out: &str| -> Output {
        let mut args = vec!["explain"];
        args.extend(inputs);
        args.extend(["-m", "saliency,grad-cam", "--save-raw", "-o", out]);
        if let Some(library) = library {
            args.extend(["--plugin", library.to_str().unwrap()]);
        }
        unitscope(&args, dir.path())
    };
    let out = |name: &str| dir.path().join(name);
    let scenes = explain(None, &["--demo", "2"], out("scenes").to_str().unwrap());
    assert!(scenes.status.success(), "{}", stderr(&scenes));
    let (reference, host_drawn, self_drawn) = (out("scenes"), out("host"), out("self"));
    for (library, out) in [(&plain, &host_drawn), (&drawing, &self_drawn)] {
        let run = explain(Some(library), &files, out.to_str().unwrap());
        assert!(run.status.success(), "{}", stderr(&run));
        assert_eq!(
            raw_maps(out),
            raw_maps(&reference),
            "the same inputs, the same maps"
        );
    }
    // Saliency's map, and Grad-CAM's at its layer and as displayed, per scene.
    assert_eq!(raw_maps(&reference).len(), 6);
    for method in ["saliency", "grad-cam"] {
        let png = |out: &Path| out.join(format!("scene0.{method}.predicted.png"));
        // The axes widen and heighten the picture.
        let drawn = image::image_dimensions(png(&host_drawn)).unwrap();
        assert!(drawn.0 > 64 && drawn.1 > 64, "{method}: {drawn:?}");
        assert_eq!(drawn, image::image_dimensions(png(&self_drawn)).unwrap());
        assert_eq!(drawn_by_plugin(&png(&host_drawn)), 0, "{method}");
        assert!(drawn_by_plugin(&png(&self_drawn)) >= 64 * 64, "{method}");
    }

    // Tokens: drawn in a line, one cell per input column, the map over them.
    let tokens = rawinput(&dir.path().join("tokens"), &["-DTOKENS"]);
    let run = explain(
        Some(&tokens),
        &files[..1],
        out("token-maps").to_str().unwrap(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (width, height) =
        image::image_dimensions(out("token-maps").join("scene0.grad-cam.predicted.png")).unwrap();
    assert!(width > 64 * 10 && height < 64, "{width}x{height}");

    // predict: the card the plugin ships, not the demo model (no note about it).
    let predicted = unitscope(
        &[
            "predict",
            files[0],
            "--json",
            "--plugin",
            drawing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(predicted.status.success(), "{}", stderr(&predicted));
    let top: serde_json::Value = serde_json::from_str(stdout(&predicted).trim()).unwrap();
    let label = top["top"][0]["label"].as_str().unwrap();
    assert!(labels.iter().any(|l| l == label), "{label}");
    assert!(
        !stderr(&predicted).contains("demo model"),
        "{}",
        stderr(&predicted)
    );

    // topk over the folder: the activations drawn by the plugin.
    let topk_out = out("topk");
    let searched = unitscope(
        &[
            "topk",
            "--images",
            dir.path().join("in").to_str().unwrap(),
            "--layer",
            "features.10",
            "--units",
            "3",
            "--k",
            "2",
            "--no-cache",
            "-o",
            topk_out.to_str().unwrap(),
            "--plugin",
            drawing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(searched.status.success(), "{}", stderr(&searched));
    let unit = topk_out.join("features.10/unit0003");
    let activations: Vec<PathBuf> = std::fs::read_dir(&unit)
        .unwrap_or_else(|e| panic!("{}: {e}", unit.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with("_activation.png"))
        .collect();
    assert_eq!(activations.len(), 2);
    for png in &activations {
        assert!(drawn_by_plugin(png) >= 64 * 64, "{}", png.display());
    }

    // A file it cannot decode: one line naming the plugin and the file.
    let bad = dir.path().join("in/short.f32");
    std::fs::write(&bad, [0u8; 10]).unwrap();
    let failed = explain(
        Some(&plain),
        &[bad.to_str().unwrap()],
        out("bad").to_str().unwrap(),
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = stderr(&failed);
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: rawinput cannot open")
            && lines[0].contains("short.f32")
            && lines[0].contains("wrong number of floats"),
        "{}",
        lines[0]
    );
}

/// One broken plugin: how to make it, and what its one line must say.
struct Broken {
    name: &'static str,
    /// Whether it fails when loaded (else when it runs).
    at_load: bool,
    needle: &'static str,
}

/// The first-party audio plugin is built with the workspace and found beside the
/// binary: a WAV file opens in `explain` with the model the plugin ships, as a
/// spectrogram framed by its axes, and a truncated one is one line about that file.
#[test]
fn the_audio_plugin_opens_wav_files() {
    let dir = tempfile::tempdir().unwrap();
    let listed = unitscope(&["plugins"], dir.path());
    let line = stdout(&listed)
        .lines()
        .find(|l| l.starts_with("audio "))
        .unwrap_or_else(|| panic!("not listed:\n{}", stdout(&listed)))
        .to_owned();
    assert!(
        line.contains("modality")
            && line.contains("ready")
            && line.contains("(.wav; model ")
            && line.contains("audio-cnn.toml"),
        "{line}"
    );

    let wav = root().join("plugins/audio/tests/reference/signal.wav");
    let out = dir.path().join("out");
    let run = unitscope(
        &[
            "explain",
            wav.to_str().unwrap(),
            "-m",
            "grad-cam",
            "--save-raw",
            "-o",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let maps = raw_maps(&out);
    let shown = &maps["signal.grad-cam.predicted.display.npy"];
    assert!(shown.len() == 64 * 101 && shown.iter().all(|v| v.is_finite()));
    assert!(shown.iter().any(|&v| v > 0.0), "an empty map");
    // The audio model's input: 64 mel bands by 101 frames, axes around it.
    let png = out.join("signal.grad-cam.predicted.png");
    let (w, h) = image::image_dimensions(&png).unwrap();
    assert!(w > 101 && h > 64, "{w}x{h}");

    // Dataset search over WAV files: each unit's activation drawn on the
    // spectrogram inside its axes.
    let topk = dir.path().join("topk");
    let folder = wav.parent().unwrap().to_str().unwrap();
    let args = [
        "topk",
        "--layer",
        "features.7",
        "--units",
        "3",
        "--k",
        "1",
        "--images",
        folder,
        "-o",
        topk.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let drawn = topk.join("features.7/unit0003/01_signal_activation.png");
    let (w, h) = image::image_dimensions(&drawn).unwrap();
    assert!(
        w > 101 && h > 64,
        "{w}x{h}: no axes around the 101x64 spectrogram"
    );

    let bytes = std::fs::read(&wav).unwrap();
    let cut = dir.path().join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 8]).unwrap();
    let run = unitscope(
        &[
            "explain",
            cut.to_str().unwrap(),
            "-o",
            dir.path().join("cut").to_str().unwrap(),
        ],
        dir.path(),
    );
    let error = stderr(&run);
    assert!(!run.status.success());
    assert!(
        error.contains("cut.wav") && error.contains("truncated"),
        "{error}"
    );
    assert_eq!(
        error.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{error}"
    );
}

/// The audio plugin's world through the ABI (1.1): what the plugin's own world
/// makes, sample for sample (its classes, spectrograms and masks), the same on
/// every call; and an input shape it cannot make is an error, not a disabled
/// plugin.
#[test]
fn the_audio_plugins_world_comes_through_the_abi() {
    use unitscope_audio::world::{CLASSES, Kind, World};
    unitscope::plugin::load(&[], &[]);
    let audio = unitscope::data::modality::named("audio").expect("the audio plugin loaded");
    let world = audio.world().expect("the audio plugin has a world");
    assert_eq!(world.classes(), CLASSES.map(String::from));
    let concepts: Vec<_> = Kind::ALL
        .iter()
        .map(|k| ("sound".to_owned(), k.name().to_owned()))
        .collect();
    assert_eq!(world.concepts(), concepts);
    assert!(world.held_out() > 1_000_000);

    let (mels, frames) = (32, 48);
    let mut classes = std::collections::BTreeSet::new();
    for index in 0..12 {
        let sample = world.sample(7, index, [2, mels, frames]).unwrap();
        let clip = World::new(7).clip(index);
        assert_eq!(sample.class, clip.class);
        classes.insert(sample.class);
        let spectrogram = unitscope_audio::Audio::spectrogram(&clip.samples, mels, frames);
        assert_eq!(sample.input[..mels * frames], spectrogram[..]);
        assert_eq!(sample.input[mels * frames..], spectrogram[..], "channel 2");
        let masks: Vec<bool> = clip.masks(mels, frames).concat();
        assert_eq!(sample.masks, masks);
        if let Some(subject) = clip.subject() {
            let kind = Kind::ALL.iter().position(|&k| k == subject.kind).unwrap();
            let area = sample.masks[kind * mels * frames..][..mels * frames]
                .iter()
                .filter(|&&m| m)
                .count();
            assert!(area > 0, "sample {index}: its subject has an empty mask");
        }
        assert_eq!(world.sample(7, index, [2, mels, frames]).unwrap(), sample);
    }
    assert!(classes.len() >= 4, "12 samples of only {classes:?}");
    assert_ne!(
        world.sample(8, 0, [1, mels, frames]).unwrap().input,
        world.sample(7, 0, [1, mels, frames]).unwrap().input[..mels * frames]
    );

    let error = world
        .sample(7, 0, [0, mels, frames])
        .unwrap_err()
        .to_string();
    assert!(error.contains("0x32x48 has no values"), "{error}");
    assert!(audio_is_enabled(), "a sample it refused disabled it");
    assert!(world.sample(7, 0, [1, mels, frames]).is_ok());
}

/// Grad-CAM on the audio model (the card the plugin ships, trained on its world)
/// points at the sound that sets the class: on held-out clips with a subject, the
/// share of the map's positive mass inside the subject's time-frequency mask, next
/// to the share of the spectrogram the mask covers (what a map spread at random
/// would put there).
#[test]
fn grad_cam_on_audio_falls_inside_the_sound() {
    use unitscope_audio::world::Kind;
    unitscope::plugin::load(&[], &[]);
    let audio = unitscope::data::modality::named("audio").expect("the audio plugin loaded");
    let world = audio.world().unwrap();
    let card = unitscope::model::ModelCard::load(audio.card().expect("a shipped card")).unwrap();
    let model = unitscope::model::Model::from_card(&card, &Device::Cpu).unwrap();
    let [h, w] = model.input_spec().size;

    let samples: Vec<_> = (0..)
        .map(|i| world.sample(0, world.held_out() + i, [3, h, w]).unwrap())
        .filter(|s| s.class < Kind::ALL.len())
        .take(48)
        .collect();
    let inputs: Vec<f32> = samples.iter().flat_map(|s| s.input.clone()).collect();
    let inputs =
        candle_core::Tensor::from_vec(inputs, (samples.len(), 3, h, w), &Device::Cpu).unwrap();
    let targets: Vec<Target> = samples.iter().map(|s| Target::Class(s.class)).collect();
    let layer = unitscope::attribution::default_cam_layer(&model).unwrap();
    let mut params = Params::new();
    params.set("layer", Value::Layers(vec![layer]));
    let cam = registry::build("grad-cam", &params).unwrap();
    let Attribution::Layers(layers) = cam.attribute(&model, &inputs, &targets).unwrap() else {
        panic!("Grad-CAM's maps are layer maps");
    };
    let maps = layers[0].1.to_dtype(DType::F32).unwrap();
    let (mh, mw) = (maps.dims()[1], maps.dims()[2]);
    let maps: Vec<f32> = maps.flatten_all().unwrap().to_vec1().unwrap();

    let (mut inside, mut chance) = (0.0, 0.0);
    for (n, sample) in samples.iter().enumerate() {
        let mask = &sample.masks[sample.class * h * w..][..h * w];
        let map = &maps[n * mh * mw..][..mh * mw];
        // The map at each input position: its cell's value (nearest upsampling).
        let at = |y: usize, x: usize| map[(y * mh / h) * mw + x * mw / w].max(0.0);
        let (mut mass, mut masked) = (0.0f64, 0.0f64);
        for y in 0..h {
            for x in 0..w {
                mass += f64::from(at(y, x));
                if mask[y * w + x] {
                    masked += f64::from(at(y, x));
                }
            }
        }
        inside += if mass > 0.0 { masked / mass } else { 0.0 };
        chance += mask.iter().filter(|&&m| m).count() as f64 / (h * w) as f64;
    }
    let (inside, chance) = (inside / samples.len() as f64, chance / samples.len() as f64);
    println!(
        "Grad-CAM's positive mass inside the subject's mask: {:.1}%; the mask covers {:.1}%",
        inside * 100.0,
        chance * 100.0
    );
    assert!(inside >= 3.0 * chance, "inside {inside}, chance {chance}");
}

/// `unitscope train audio` trains the card's architecture on the plugin's world
/// and writes the weights with their record; what it cannot train says why in one
/// line: a name that is neither `demo` nor a modality with a world, and a card
/// whose classes are not the world's.
#[test]
fn train_trains_a_modalitys_model_on_its_world() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w/audio.safetensors");
    let train = |args: &[&str]| {
        let sizes = [
            "--steps",
            "2",
            "--batch",
            "4",
            "--eval",
            "8",
            "-o",
            weights.to_str().unwrap(),
        ];
        unitscope(&[args, &sizes].concat(), dir.path())
    };
    let run = train(&["train", "audio"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("held-out samples: accuracy"),
        "{}",
        stdout(&run)
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(weights.with_extension("json")).unwrap()).unwrap();
    assert_eq!(record["config"]["steps"], 2);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    assert_eq!(tensors["fc.weight"].dims(), [6, 64]);
    // Reproducible: the same command makes the same weights.
    let first = std::fs::read(&weights).unwrap();
    assert!(train(&["train", "audio"]).status.success());
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        first,
        "a second run's weights differ"
    );

    let run = train(&["train", "video"]);
    assert!(!run.status.success());
    assert!(
        stderr(&run).contains("nothing called `video` to train"),
        "{}",
        stderr(&run)
    );

    let shipped = root().join("plugins/audio/model/audio-cnn.toml");
    let card = dir.path().join("card.toml");
    let text = std::fs::read_to_string(&shipped)
        .unwrap()
        .replace("classes.txt", "labels.txt");
    std::fs::write(&card, text).unwrap();
    std::fs::write(
        dir.path().join("labels.txt"),
        "tone\nchirp\nnoise\nclicks\nsilence\nhum\n",
    )
    .unwrap();
    let run = train(&["train", "audio", "--card", card.to_str().unwrap()]);
    assert!(!run.status.success());
    let error = stderr(&run);
    assert!(
        error.contains("the card names the classes") && error.lines().count() == 1,
        "{error}"
    );
}

/// Network Dissection on the audio world (`dissect --world audio`, the plugin's
/// model by default): its labels are the plugin's masks, a layer per concept, and
/// the trained model's last stage has units that detect several kinds of sound
/// (13 of 64, covering 4 kinds, on 200 clips).
#[test]
fn dissection_finds_sound_detectors_in_the_audio_model() {
    use unitscope::data::ConceptSet;
    use unitscope::data::concepts::WorldSet;
    use unitscope::data::modality::with_world_for;
    unitscope::plugin::load(&[], &[]);
    let audio = unitscope::data::modality::named("audio").unwrap();
    let world = audio.world().unwrap();
    let set = ConceptSet::World(WorldSet {
        name: "audio".into(),
        world,
        count: 3,
        shape: [3, 64, 101],
    });
    let vocabulary = set.vocabulary();
    assert_eq!(vocabulary.categories, ["sound"]);
    let names: Vec<&str> = vocabulary
        .labels
        .iter()
        .skip(1)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(names, ["tone", "chirp-up", "chirp-down", "noise", "clicks"]);
    for i in 0..3 {
        let labels = set.labels(i).unwrap();
        let sample = world
            .sample(0, world.held_out() + i as u64, [3, 64, 101])
            .unwrap();
        assert_eq!(labels.size(), (64, 101));
        for (c, mask) in sample.masks.chunks_exact(64 * 101).enumerate() {
            let label = c as u32 + 1;
            assert!(
                mask.iter()
                    .enumerate()
                    .all(|(p, &m)| labels.at(p).contains(&label) == m)
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dissect");
    let run = unitscope(
        &[
            "dissect",
            "--world",
            "audio",
            "--layer",
            "features.7",
            "--demo",
            "200",
            "-o",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let text = std::fs::read_to_string(out.join("features.7/dissection.json")).unwrap();
    let dissection: serde_json::Value = serde_json::from_str(&text).unwrap();
    let detected: std::collections::BTreeSet<&str> = dissection["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["detector"] == true)
        .map(|r| r["best"]["label"].as_str().unwrap())
        .collect();
    let detectors = dissection["detectors"].as_u64().unwrap();
    assert!(
        detectors >= 8 && detected.len() >= 3,
        "{detectors} detectors of {detected:?}"
    );
    // Pictures made without a file (feature visualizations) carry the axes the
    // card states: time and frequency around the 101x64 spectrogram.
    let card = root().join("plugins/audio/model/audio-cnn.toml");
    let visuals = dir.path().join("visualize");
    let args = [
        "visualize",
        "--model",
        card.to_str().unwrap(),
        "--layer",
        "features.7",
        "--unit",
        "3",
        "--steps",
        "4",
        "--grayscale",
        "-o",
        visuals.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let (w, h) = image::image_dimensions(visuals.join("features.7_unit0003.png")).unwrap();
    assert!(w > 101 && h > 64, "{w}x{h}: no axes around the spectrogram");
    // The inspector dissects the plugin's card against its world, however the
    // card is named; another card has no world.
    let card = root().join("plugins/audio/model/audio-cnn.toml");
    assert_eq!(with_world_for(&card).as_deref(), Some("audio"));
    let roundabout = root().join("plugins/audio/model/../model/audio-cnn.toml");
    assert_eq!(with_world_for(&roundabout).as_deref(), Some("audio"));
    assert_eq!(
        with_world_for(&root().join("models/efficientnet-lite0.toml")),
        None
    );

    let run = unitscope(
        &["dissect", "--world", "video", "--layer", "x", "-o", "y"],
        dir.path(),
    );
    assert!(
        stderr(&run).contains("no modality `video`"),
        "{}",
        stderr(&run)
    );
}

/// The text plugin's world through the ABI (1.2, with tracks): its windows are
/// one-hot text in its alphabet, the class the character after the window, and
/// the tracks and concept masks what the characters say (recomputed here from the
/// characters read back: windows start at a line's start, so every track is
/// known); a shape it cannot make is an error that leaves it enabled. (The
/// plugin's own tests compare with its generator; this binary links the audio
/// plugin's crate, and two plugins' entry symbols cannot share one binary.)
#[test]
fn the_text_plugins_world_comes_through_the_abi() {
    use unitscope::data::text::character;
    unitscope::plugin::load(&[], &[]);
    let text = unitscope::data::modality::named("text").expect("the text plugin loaded");
    let world = text.world().expect("the text plugin has a world");
    let alphabet: Vec<char> = world
        .classes()
        .iter()
        .map(|c| character(c).unwrap())
        .collect();
    assert_eq!(alphabet.len(), 96);
    assert_eq!((alphabet[0], alphabet[1], alphabet[95]), ('\n', ' ', '~'));
    assert_eq!(world.tracks(), ["depth", "quote", "column", "indent"]);
    let concepts: Vec<&str> = world.concepts().iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(concepts, ["string", "nested", "indentation"]);

    let steps = 120;
    for i in 0..6 {
        let sample = world.sample(5, i, [96, 1, steps]).unwrap();
        let chars: Vec<char> = (0..steps)
            .map(|t| {
                let hot: Vec<usize> = (0..96)
                    .filter(|&v| sample.input[v * steps + t] == 1.0)
                    .collect();
                assert_eq!(hot.len(), 1, "sample {i}, step {t}: {hot:?}");
                alphabet[hot[0]]
            })
            .collect();
        let track = |k: usize| &sample.tracks[k * steps..][..steps];
        let (depth, quote, column, indent) = (track(0), track(1), track(2), track(3));
        let (mut quoted, mut col, mut blocks) = (false, 0, None);
        for (t, &c) in chars.iter().enumerate() {
            if col == 0 {
                let spaces = chars[t..].iter().take_while(|&&c| c == ' ').count();
                // A line whose indentation the window cuts is not known here.
                blocks = match t + spaces < steps {
                    true => Some(spaces / 4),
                    false => None,
                };
            }
            if c == '"' {
                quoted = !quoted;
            }
            assert_eq!(quote[t] == 1.0, quoted, "sample {i}, step {t}");
            assert_eq!(column[t], col as f32, "sample {i}, step {t}");
            if let Some(blocks) = blocks {
                assert_eq!(indent[t], blocks as f32, "sample {i}, step {t}");
            }
            if t > 0 {
                let opened = match c {
                    '(' | '[' | '{' if !quoted => 1.0,
                    ')' | ']' | '}' if !quoted => -1.0,
                    _ => 0.0,
                };
                assert_eq!(depth[t] - depth[t - 1], opened, "sample {i}, step {t}");
            }
            col = if c == '\n' { 0 } else { col + 1 };
        }
        // The concepts are the tracks thresholded.
        let mask = |k: usize| &sample.masks[k * steps..][..steps];
        for t in 0..steps {
            assert_eq!(mask(0)[t], quote[t] == 1.0);
            assert_eq!(mask(1)[t], depth[t] >= 2.0);
            assert_eq!(mask(2)[t], column[t] < 4.0 * indent[t]);
        }
        assert!(sample.class < 96);
        assert_eq!(world.sample(5, i, [96, 1, steps]).unwrap(), sample);
    }
    let error = world.sample(5, 0, [3, 8, 8]).unwrap_err().to_string();
    assert!(
        error.contains("[96, 1, T]") && error.contains("channels = 96"),
        "{error}"
    );
    assert!(
        world.sample(5, 0, [96, 1, 8]).is_ok(),
        "a refused sample disabled it"
    );
}

/// A text file on the shipped char-LSTM: predicted, explained over its characters
/// (gradient x input and integrated gradients on the one-hot input, which are
/// those over the embedding: see `char_rnn.rs`), read only as far as the model's
/// window needs; bad files are one line each.
#[test]
fn the_char_lstm_reads_and_explains_text_files() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code.py");
    std::fs::write(&code, "if (x) {\n    y = print(\"hello (\", [1, 2])\n").unwrap();
    let run = unitscope(&["predict", code.to_str().unwrap()], dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stdout(&run).contains("code.py"), "{}", stdout(&run));

    for method in ["gradient-x-input", "integrated-gradients"] {
        let out = dir.path().join(method);
        let args = [
            "explain",
            code.to_str().unwrap(),
            "-m",
            method,
            "--save-raw",
            "-o",
            out.to_str().unwrap(),
        ];
        let run = unitscope(&args, dir.path());
        assert!(run.status.success(), "{method}: {}", stderr(&run));
        let maps = raw_maps(&out);
        let raw = &maps[&format!("code.{method}.predicted.raw.npy")];
        assert_eq!(raw.len(), 96 * 128);
        // Each character's share: the sum over the one-hot channels.
        let map: Vec<f32> = (0..128)
            .map(|t| (0..96).map(|c| raw[c * 128 + t]).sum())
            .collect();
        // The file is 42 characters at the window's end: the 86 empty positions
        // before it carry no character, so no attribution.
        assert!(
            map[..86].iter().all(|&v| v == 0.0),
            "{method}: {:?}",
            &map[..86]
        );
        assert!(map[86..].iter().all(|v| v.is_finite()));
        assert!(
            map[86..].iter().any(|&v| v != 0.0),
            "{method}: an empty map"
        );
        let page = std::fs::read_to_string(out.join("code.text.html")).unwrap();
        assert_eq!(
            page.matches("<span").count(),
            42,
            "{method}: a span per character"
        );
    }

    // Bad files: one line each, naming the file and what is wrong.
    let bad = [
        ("latin1.txt", b"caf\xe9\n".to_vec(), "not UTF-8"),
        ("empty.txt", Vec::new(), "empty"),
        ("accent.txt", "x = \"café\"\n".as_bytes().to_vec(), "U+00E9"),
    ];
    for (name, bytes, why) in bad {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let run = unitscope(&["predict", path.to_str().unwrap()], dir.path());
        let error = stderr(&run);
        assert!(!run.status.success(), "{name}");
        assert!(
            error.contains(name) && error.contains(why),
            "{name}: {error}"
        );
        assert_eq!(
            error.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{error}"
        );
    }
    // A gigabyte file (sparse: its text, then zeros never read) opens at once.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x = 1\n".repeat(300)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    let run = unitscope(&["predict", big.to_str().unwrap()], dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    println!("a 1 GiB text file predicted in {:?}", started.elapsed());
}

/// `evaluate` on text files: every score of the trust table, fragility included.
/// A sequence is one row, so the shift test moves it along its length (it used
/// to refuse a 1x128 input, which failed the whole table).
#[test]
fn evaluate_scores_the_char_lstm_on_text_files() {
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(
        texts.join("a.py"),
        "if (x) {\n    y = print(\"hello (\", [1, 2])\n",
    )
    .unwrap();
    std::fs::write(
        texts.join("b.txt"),
        "a [nested (list) of \"words\"] and more\n",
    )
    .unwrap();
    let args = [
        "evaluate",
        "--images",
        texts.to_str().unwrap(),
        "-m",
        "saliency",
        "--json",
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let row: serde_json::Value =
        serde_json::from_str(stdout(&run).lines().next().unwrap()).unwrap();
    assert_eq!(row["images"], 2, "{row}");
    let shifts = row["per_image"]["shift_spearman"].as_array().unwrap();
    assert_eq!(shifts.len(), 2, "{row}");
    let sensitivity = row["max_sensitivity"].as_f64().expect("max_sensitivity");
    assert!(sensitivity.is_finite() && sensitivity > 0.0, "{row}");

    // A shift as long as the sequence is refused before any method runs.
    let run = unitscope(&[&args[..], &["--shift", "128"]].concat(), dir.path());
    assert!(!run.status.success());
    assert!(stderr(&run).contains("fewer than 128"), "{}", stderr(&run));
}

/// `units correlate` finds, among the shipped char-LSTM's units, ones that follow
/// the text world's tracks: a unit whose activation tracks inside-a-string or the
/// bracket depth with |r| >= 0.8 (Karpathy et al. 2015 found such cells by eye);
/// `units text` draws it over text, and dataset search over text files gives each
/// unit's top snippets.
#[test]
fn units_correlate_finds_the_text_models_quote_and_depth_units() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let args = [
        "units",
        "correlate",
        "--world",
        "text",
        "--layer",
        "rnn.0,rnn.0.cell",
        "--samples",
        "200",
        "-o",
        json.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let printed = stdout(&run);
    println!("{printed}");
    let found: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let tracks: Vec<&str> = found["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tracks, ["depth", "quote", "column", "indent"]);
    // The best unit of each track, by |r|, from every unit's r.
    let best = |track: usize| -> (String, f64) {
        let mut best = (String::new(), 0f64);
        for layer in found["layers"].as_array().unwrap() {
            for (u, r) in layer["r"].as_array().unwrap().iter().enumerate() {
                let r = r[track].as_f64().unwrap();
                if r.abs() > best.1.abs() {
                    best = (format!("{}:{u}", layer["layer"].as_str().unwrap()), r);
                }
            }
        }
        best
    };
    let (depth, quote) = (best(0), best(1));
    println!("depth: {depth:?}, quote: {quote:?}");
    assert!(
        depth.1.abs() >= 0.8 || quote.1.abs() >= 0.8,
        "no unit follows the depth or the quotes: {depth:?}, {quote:?}"
    );
    // The printed list names the same best unit first.
    let line = printed.lines().find(|l| l.starts_with("quote:")).unwrap();
    assert!(
        line.starts_with(&format!("quote: {} r=", quote.0)),
        "{line}"
    );

    // That unit over two held-out samples, as coloured characters.
    let (layer, unit) = quote.0.split_once(':').unwrap();
    let page = dir.path().join("quote.html");
    let args = [
        "units",
        "text",
        "--world",
        "text",
        "--samples",
        "2",
        "--layer",
        layer,
        "--units",
        unit,
        "-o",
        page.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<h3>").count(), 2);
    assert!(html.matches("<span style=\"background:#").count() >= 2 * 128 - 10);

    // Dataset search over text files: each unit's strongest snippets. A folder's
    // inputs are the files of the kind most of them are: the picture beside two
    // texts is not one.
    let texts = dir.path().join("texts");
    std::fs::create_dir_all(&texts).unwrap();
    std::fs::write(texts.join("a.py"), "x = print(\"hello [ world\", [1, 2])\n").unwrap();
    std::fs::write(texts.join("b.py"), "if (y) {\n    return {\"ok\": 3}\n}\n").unwrap();
    image::RgbImage::new(8, 8)
        .save(texts.join("logo.png"))
        .unwrap();
    let out = dir.path().join("topk");
    let args = [
        "topk",
        "--layer",
        layer,
        "--units",
        unit,
        "--k",
        "2",
        "--images",
        texts.to_str().unwrap(),
        "--no-cache",
        "-o",
        out.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("topk.json")).unwrap()).unwrap();
    assert_eq!(index["inputs"], 2, "{index}");
    let top = &index["layers"][0]["units"][0]["top"];
    for found in top.as_array().unwrap() {
        let snippet = found["snippet"].as_str().unwrap();
        let peak = found["position"][1].as_u64().unwrap() as usize;
        assert!(!snippet.is_empty() && snippet.len() <= 40, "{snippet:?}");
        println!("{unit}: {snippet:?} (peak at {peak})");
    }
    assert!(out.join(layer).join("snippets.html").is_file());
}

/// `train text` fits the char-LSTM at every step (next-character loss), the same
/// weights each time from the same arguments.
#[test]
fn train_text_fits_the_next_character_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("text.safetensors");
    let args = [
        "train",
        "text",
        "--steps",
        "2",
        "--batch",
        "3",
        "--eval",
        "4",
        "-o",
        weights.to_str().unwrap(),
    ];
    let run = unitscope(&args, dir.path());
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stdout(&run).contains("next-character loss"),
        "{}",
        stdout(&run)
    );
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    assert_eq!(tensors["rnn.weight_ih_l0"].dims(), [4 * 128, 32]);
    assert_eq!(tensors["fc.weight"].dims(), [96, 128]);
    let first = std::fs::read(&weights).unwrap();
    assert!(unitscope(&args, dir.path()).status.success());
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        first,
        "a second run's weights differ"
    );
}

fn audio_is_enabled() -> bool {
    let reports = unitscope::plugin::reports();
    let audio = reports
        .iter()
        .find_map(|r| r.outcome.as_ref().ok().filter(|p| p.name == "audio"));
    audio.is_some_and(|p| p.status() == "ready")
}

/// Builds the corpus in `dir`: C plugins each broken one way, a file that is not
/// a library, and a library for another machine.
fn corpus(dir: &Path) -> Vec<(Broken, PathBuf)> {
    let source = root().join("tests/plugins/broken.c");
    let c = [
        ("major", "FAULT_MAJOR", true, "built for plugin ABI 2."),
        (
            "minor",
            "FAULT_MINOR",
            true,
            "newer than this unitscope's 1.",
        ),
        (
            "no-entry",
            "FAULT_NO_ENTRY",
            true,
            "no entry symbol `unitscope_plugin_v1`",
        ),
        (
            "refuse",
            "FAULT_REFUSE",
            true,
            "this machine has no frobnicator",
        ),
        ("nan", "FAULT_NAN", false, "holding NaN"),
        ("shape", "FAULT_SHAPE", false, "maps of shape"),
        ("error", "FAULT_ERROR", false, "the corpus's error string"),
        ("lie", "FAULT_LIE", false, "that says it holds"),
        (
            "no-attribute",
            "FAULT_NO_ATTRIBUTE",
            true,
            "has no `attribute` entry",
        ),
        (
            "reserved",
            "FAULT_RESERVED",
            true,
            "--output would shadow the command's own option",
        ),
    ];
    let mut corpus: Vec<(Broken, PathBuf)> = c
        .into_iter()
        .map(|(name, define, at_load, needle)| {
            let path = dir.join(format!("libbroken_{name}.so"));
            let defines = [format!("-D{define}"), format!("-DNAME=\"broken-{name}\"")];
            let defines: Vec<&str> = defines.iter().map(String::as_str).collect();
            compile_c(&source, &path, &defines);
            let name = Box::leak(format!("broken-{name}").into_boxed_str());
            (
                Broken {
                    name,
                    at_load,
                    needle,
                },
                path,
            )
        })
        .collect();
    let text = dir.join("libnot_a_library.so");
    std::fs::write(&text, "not a library\n").unwrap();
    corpus.push((
        Broken {
            name: "not-a-library",
            at_load: true,
            needle: "not a loadable library",
        },
        text,
    ));
    // A working plugin's ELF header claiming another machine (AArch64, e_machine 183).
    let foreign = dir.join("libforeign.so");
    compile_c(&source, &foreign, &["-DNAME=\"foreign\""]);
    let mut bytes = std::fs::read(&foreign).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(&foreign, bytes).unwrap();
    corpus.push((
        Broken {
            name: "foreign",
            at_load: true,
            needle: "not a loadable library for this machine",
        },
        foreign,
    ));
    corpus
}

/// Every broken plugin is one line in `unitscope plugins` and one warning on a
/// command that does not use it (which then works); one that loads but fails
/// when run is one error line naming it, and the other methods still work.
#[test]
fn broken_plugins_each_give_one_line_and_the_host_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    for (broken, path) in corpus(dir.path()) {
        let plugin = path.to_str().unwrap();
        let listed = unitscope(&["plugins", "--plugin", plugin], dir.path());
        assert!(
            listed.status.success(),
            "{}: {}",
            broken.name,
            stderr(&listed)
        );
        let lines: Vec<String> = stdout(&listed)
            .lines()
            .filter(|l| l.contains(&*path.file_name().unwrap().to_string_lossy()))
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 1, "{}: {}", broken.name, stdout(&listed));
        match broken.at_load {
            true => assert!(
                lines[0].contains("not loaded") && lines[0].contains(broken.needle),
                "{}: {}",
                broken.name,
                lines[0]
            ),
            false => assert!(lines[0].contains("ready"), "{}: {}", broken.name, lines[0]),
        }

        let out = dir.path().join(format!("out-{}", broken.name));
        let out = out.to_str().unwrap();
        let fine = unitscope(
            &[
                "explain", "--plugin", plugin, "--demo", "1", "-m", "saliency", "-o", out,
            ],
            dir.path(),
        );
        assert!(fine.status.success(), "{}: {}", broken.name, stderr(&fine));
        let warnings: Vec<String> = stderr(&fine)
            .lines()
            .filter(|l| l.starts_with("warning: plugin"))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            warnings.len(),
            usize::from(broken.at_load),
            "{}: {}",
            broken.name,
            stderr(&fine)
        );

        if !broken.at_load {
            let failed = unitscope(
                &[
                    "explain",
                    "--plugin",
                    plugin,
                    "--demo",
                    "1",
                    "-m",
                    broken.name,
                    "-o",
                    out,
                    "--force",
                ],
                dir.path(),
            );
            assert_eq!(failed.status.code(), Some(1), "{}", broken.name);
            let lines: Vec<&str> = std::str::from_utf8(&failed.stderr)
                .unwrap()
                .lines()
                .collect();
            assert_eq!(lines.len(), 1, "{}: {lines:?}", broken.name);
            assert!(
                lines[0].starts_with("error: ")
                    && lines[0]
                        .contains(&format!("plugin `{}` failed and is disabled", broken.name))
                    && lines[0].contains(broken.needle),
                "{}: {}",
                broken.name,
                lines[0]
            );
        }
    }
}

/// Builds the Rust plugin crate `tests/plugins/{name}` (with its own target
/// folder, shared by the test plugins) and returns its library.
fn build_rust_plugin(name: &str) -> PathBuf {
    let target = root().join("target/test-plugins");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(root().join(format!("tests/plugins/{name}/Cargo.toml")))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(built.success(), "building tests/plugins/{name}");
    target.join(format!("debug/lib{name}.so"))
}

/// A modality plugin that hands over garbage (an input of the wrong shape or
/// holding NaN, a display of no known kind, a drawing of the wrong size) is one
/// error line naming it and what it did; one that panics (Rust, in its decode or
/// its drawing) likewise, the panic caught by the SDK.
#[test]
fn a_broken_modality_plugin_gives_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = unitscope::model::demo::model(&Device::Cpu).unwrap();
    let file = write_f32(&dir.path().join("in"), &common::demo_inputs(&model, 1)).remove(0);
    let one_error = |out: &Output, needles: &[&str]| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
        let err = stderr(out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        for needle in needles {
            assert!(lines[0].contains(needle), "{needle}: {}", lines[0]);
        }
    };
    let faults = [
        (&["-DFAULT_SHAPE"][..], "an input of shape [3, 32, 128]"),
        (&["-DFAULT_NAN"], "an input holding NaN"),
        (&["-DFAULT_DISPLAY"], "a display of unknown kind 7"),
        (
            &["-DDRAW", "-DFAULT_DRAW_SHAPE"],
            "a picture of shape [64, 192, 1]",
        ),
    ];
    for (i, (defines, needle)) in faults.into_iter().enumerate() {
        let library = rawinput(&dir.path().join(format!("fault{i}")), defines);
        let out = dir.path().join(format!("out{i}"));
        let run = unitscope(
            &[
                "explain",
                file.to_str().unwrap(),
                "-m",
                "saliency",
                "-o",
                out.to_str().unwrap(),
                "--plugin",
                library.to_str().unwrap(),
            ],
            dir.path(),
        );
        one_error(&run, &["plugin `rawinput` failed and is disabled", needle]);
    }

    let library = build_rust_plugin("panicky_modality");
    let file = dir.path().join("in/x.panicky");
    std::fs::write(&file, "anything").unwrap();
    let out = dir.path().join("panicky");
    let run = |at: &str| -> Output {
        Command::new(env!("CARGO_BIN_EXE_unitscope"))
            .args([
                "explain",
                file.to_str().unwrap(),
                "-m",
                "grad-cam",
                "--force",
                "-o",
            ])
            .arg(&out)
            .args(["--plugin", library.to_str().unwrap()])
            .env("XDG_DATA_HOME", dir.path())
            .env("PANICKY_AT", at)
            .output()
            .unwrap()
    };
    one_error(
        &run("decode"),
        &["panicky-modality cannot open", "panicky panics in decode"],
    );
    one_error(
        &run("draw"),
        &["failed and is disabled", "panicky panics in draw"],
    );
    // Without a panic it works: the 8x8 picture, drawn by the plugin in green.
    let fine = run("nowhere");
    assert!(fine.status.success(), "{}", stderr(&fine));
    let drawn = image::open(out.join("x.grad-cam.predicted.png"))
        .unwrap()
        .to_rgb8();
    let green = drawn
        .pixels()
        .filter(|p| p[0] == 0 && p[2] == 0 && p[1] > 0)
        .count();
    assert!(green > 0, "no pixel drawn by the plugin");

    // Its world, trained on through a card of its classes: a panic in a sample is
    // an error, a class past the world's disables the plugin, and without either
    // it trains.
    let card = dir.path().join("panicky.toml");
    std::fs::write(
        &card,
        "architecture = \"plain_cnn\"\nweights = \"panicky.safetensors\"\nlabels = \"panicky.txt\"\n\
         [input]\nsize = [8, 8]\n[options]\nchannels = [4]\nbatch_norm = false\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("panicky.txt"), "even\nodd\n").unwrap();
    let train = |at: &str| -> Output {
        Command::new(env!("CARGO_BIN_EXE_unitscope"))
            .args([
                "train",
                "panicky-modality",
                "--steps",
                "2",
                "--batch",
                "2",
                "--eval",
                "2",
            ])
            .arg("--card")
            .arg(&card)
            .args(["--plugin", library.to_str().unwrap()])
            .env("XDG_DATA_HOME", dir.path())
            .env("PANICKY_AT", at)
            .output()
            .unwrap()
    };
    one_error(
        &train("sample"),
        // Samples are drawn in parallel: whichever fails first is reported.
        &[
            "of the `panicky-modality` world",
            "panicky panics in sample",
        ],
    );
    one_error(
        &train("class"),
        &["failed and is disabled", "its class is 7, not one of the 2"],
    );
    let trained = train("nowhere");
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(dir.path().join("panicky.safetensors").is_file());
}

/// A Rust plugin (built here with Cargo against the SDK) that panics in its
/// entry, its pass count or its method: the SDK catches each panic, the host
/// reports it in one line, and nothing of the panic reaches the terminal.
#[test]
fn a_panicking_rust_plugin_is_caught_at_every_export() {
    let library = build_rust_plugin("panicky");
    let dir = tempfile::tempdir().unwrap();
    let run = |at: &str, args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_unitscope"))
            .args(args)
            .args(["--plugin", library.to_str().unwrap()])
            .env("XDG_DATA_HOME", dir.path())
            .env("PANICKY_AT", at)
            .output()
            .unwrap()
    };
    let out = dir.path().join("out");
    let explain = [
        "explain",
        "--demo",
        "1",
        "-m",
        "panicky",
        "-o",
        out.to_str().unwrap(),
        "--force",
    ];

    let listed = run("entry", &["plugins"]);
    let line = stdout(&listed)
        .lines()
        .find(|l| l.contains("libpanicky"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("not loaded") && line.contains("panicky panics in entry"),
        "{line}"
    );

    for at in ["passes", "attribute"] {
        let failed = run(at, &explain);
        assert_eq!(failed.status.code(), Some(1), "{at}: {}", stderr(&failed));
        let err = stderr(&failed);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{at}: {err}");
        assert!(
            lines[0].contains("plugin `panicky`")
                && lines[0].contains(&format!("panicky panics in {at}")),
            "{at}: {}",
            lines[0]
        );
    }
    // Without a panic it works, through the host's gradient callback.
    let fine = run("nowhere", &explain);
    assert!(fine.status.success(), "{}", stderr(&fine));
}

/// A plugin file or folder that other users could write is refused, saying so.
#[test]
fn a_plugin_others_could_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let library = shared.join("libinput_x_gradient.so");
    compile_c(
        &root().join("plugins/c-example/input_x_gradient.c"),
        &library,
        &[],
    );
    let listing = |path: &Path| {
        let out = unitscope(&["plugins", "--plugin", path.to_str().unwrap()], dir.path());
        stdout(&out)
            .lines()
            .find(|l| l.contains("libinput_x_gradient"))
            .unwrap()
            .to_owned()
    };
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&shared, 0o755);
    set(&library, 0o755);
    assert!(listing(&library).contains("ready"));
    set(&library, 0o777);
    let line = listing(&library);
    assert!(
        line.contains("refused: the file is writable by other users"),
        "{line}"
    );
    set(&library, 0o755);
    set(&shared, 0o777);
    let line = listing(&library);
    assert!(
        line.contains("refused: its folder is writable by other users"),
        "{line}"
    );
    set(&shared, 0o755);
}
