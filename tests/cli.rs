//! The command line: layer tables, JSON, the Hugging Face cache, and one-line errors
//! with a non-zero exit for every kind of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use common::root;

fn unitscope(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitscope"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Asserts that a run succeeded, showing its stderr if not.
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command that must fail, returning its single line of stderr.
fn fails(args: &[&str]) -> String {
    let out = unitscope(args, &[]);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected a one-line error, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

/// A plain-CNN card (channels [4], 3 classes) pointing at `weights`.
fn plain_card(dir: &Path, weights: &Path) -> PathBuf {
    let path = dir.join("plain.toml");
    let text = format!(
        "architecture = \"plain_cnn\"\nweights = {:?}\nnum_classes = 3\n[input]\nsize = [16, 16]\n[options]\nchannels = [4]\n",
        weights.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn weights_fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/weights").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_json_lists_layers() {
    let dir = tempfile::tempdir().unwrap();
    let card = plain_card(dir.path(), &weights_fixture("plain_cnn_legacy.pth"));
    let out = unitscope(&["info", "--json", "--model", s(&card)], &[]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = json["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "features.0",
            "features.1",
            "features.2",
            "features.3",
            "avgpool",
            "fc"
        ]
    );
    assert_eq!(layers[0]["kind"], "conv");
    assert_eq!(layers[0]["shape"], serde_json::json!([4, 16, 16]));
    assert_eq!(layers[3]["shape"], serde_json::json!([4, 8, 8]));
    assert_eq!(layers[5]["units"], 3);
}

#[test]
fn info_prints_a_table() {
    let out = unitscope(&["info"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("demo — 14 layers at 3x64x64, 8 classes"),
        "{text}"
    );
    assert!(
        text.contains("features.11  max_pool        128x4x4"),
        "{text}"
    );
}

/// `--device` on any command: the CPU always works, a bad name is a one-line error
/// listing the good ones, and a build without CUDA asked for a GPU says how to get
/// one (in a CUDA build, with no GPU, `auto` falls back to the CPU and says so).
#[test]
fn devices_are_chosen_on_every_command() {
    let out = unitscope(&["info", "--device", "cpu"], &[]);
    assert_success(&out);
    let out = unitscope(&["info", "--device", "npu"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("give cpu, cuda, cuda:N"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    if !cfg!(feature = "cuda") {
        let out = unitscope(&["info", "--device", "cuda:1"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("built without CUDA, so it cannot use cuda:1"),
            "{err}"
        );
        assert!(err.contains("scripts/build-cuda.sh"), "{err}");
        let out = unitscope(&["info", "--device", "auto"], &[]);
        assert_success(&out);
        assert!(out.stderr.is_empty(), "auto on a CPU build is quiet");
    }
}

#[test]
fn huggingface_cache_is_read_offline() {
    let home = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = home.path().join("hub/models--someone--plain-cnn");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::copy(
        weights_fixture("plain_cnn_legacy.pth"),
        snapshot.join("model.pth"),
    )
    .unwrap();
    let card = home.path().join("hf.toml");
    let text = "architecture = \"plain_cnn\"\nnum_classes = 3\n[huggingface]\nrepo = \"someone/plain-cnn\"\nfile = \"model.pth\"\n[options]\nchannels = [4]\n";
    std::fs::write(&card, text).unwrap();
    let out = unitscope(
        &["info", "--json", "--model", s(&card)],
        &[("HF_HOME", home.path())],
    );
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["layers"].as_array().unwrap().len(), 6);

    // Not in the cache: a one-line error saying how to get it.
    std::fs::write(&card, text.replace("someone/plain-cnn", "someone/absent")).unwrap();
    let out = unitscope(&["info", "--model", s(&card)], &[("HF_HOME", home.path())]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("not in the local Hugging Face cache")
            && err.contains("huggingface-cli download"),
        "{err}"
    );
}

#[test]
fn bad_weights_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let card = plain_card(dir.path(), &weights_fixture("plain_cnn_misshaped.pth"));
    let err = fails(&["info", "--model", s(&card)]);
    assert!(
        err.contains("`fc.weight` has shape [4, 3], the architecture expects [3, 4]"),
        "{err}"
    );

    let card = plain_card(dir.path(), &weights_fixture("evil.pth"));
    let err = fails(&["info", "--model", s(&card)]);
    assert!(err.contains("system`") && err.contains("refusing"), "{err}");

    let tensors =
        unitscope::model::weights::synthetic::tensor("fc.weight", &[3, 4], &Device::Cpu).unwrap();
    let st = dir.path().join("w.safetensors");
    candle_core::safetensors::save(
        &[("fc.weight".to_owned(), tensors)].into_iter().collect(),
        &st,
    )
    .unwrap();
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 7]).unwrap();
    let card = plain_card(dir.path(), &st);
    let err = fails(&["info", "--model", s(&card)]);
    assert!(err.contains("truncated"), "{err}");
    std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!").unwrap();
    let err = fails(&["info", "--model", s(&card)]);
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn bad_cards_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let card = plain_card(dir.path(), &dir.path().join("missing.pth"));
    let err = fails(&["info", "--model", s(&card)]);
    assert!(
        err.contains("missing.pth") && err.contains("not found"),
        "{err}"
    );

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "architecture = \"resnet99\"\nweights = \"w.pth\"\n",
    )
    .unwrap();
    let err = fails(&["info", "--model", s(&unknown)]);
    assert!(
        err.contains("unknown variant `resnet99`") && err.contains("resnet18"),
        "{err}"
    );

    let err = fails(&["info", "--model", s(&dir.path().join("nope.toml"))]);
    assert!(err.contains("cannot read model card"), "{err}");

    // Options are checked per architecture: each says which ones it reads.
    for (arch, option, reads) in [
        ("resnet18", "channels = [4]", "none"),
        (
            "efficientnet_lite0",
            "batch_norm = false",
            "padding, bn_eps",
        ),
        ("plain_cnn", "bn_eps = 0.001", "channels, batch_norm"),
    ] {
        let card = dir.path().join(format!("{arch}.toml"));
        let text = format!("architecture = \"{arch}\"\nweights = \"w.pth\"\n[options]\n{option}\n");
        std::fs::write(&card, text).unwrap();
        let err = fails(&["info", "--model", s(&card)]);
        let key = option.split(' ').next().unwrap();
        assert!(
            err.contains(&format!("takes no option `{key}`")) && err.contains(reads),
            "{err}"
        );
    }
}

#[test]
fn bad_images_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let card = plain_card(dir.path(), &weights_fixture("plain_cnn_legacy.pth"));
    let text = dir.path().join("readme.jpg");
    std::fs::write(&text, "plain text").unwrap();
    let err = fails(&["predict", s(&text), "--model", s(&card)]);
    assert!(
        err.contains("readme.jpg") && err.contains("not a readable PNG or JPEG"),
        "{err}"
    );

    let err = fails(&[
        "predict",
        s(&dir.path().join("absent.png")),
        "--model",
        s(&card),
    ]);
    assert!(err.contains("absent.png"), "{err}");
}

#[test]
fn predict_prints_top_classes() {
    let dir = tempfile::tempdir().unwrap();
    let card = plain_card(dir.path(), &weights_fixture("plain_cnn_legacy.pth"));
    let img = dir.path().join("grey.png");
    image::RgbImage::from_pixel(20, 30, image::Rgb([120, 130, 140]))
        .save(&img)
        .unwrap();
    let out = unitscope(
        &["predict", "--json", "-k", "2", s(&img), "--model", s(&card)],
        &[],
    );
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = json["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    let (p0, p1) = (top[0]["p"].as_f64().unwrap(), top[1]["p"].as_f64().unwrap());
    assert!(p0 >= p1 && p0 + p1 <= 1.0 + 1e-6 && p1 > 0.0);
    assert_eq!(top[0]["label"], format!("class {}", top[0]["index"]));
}

/// The shape in a float32 `.npy` header.
fn npy_shape(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[test]
fn explain_writes_maps_grid_summary_and_raw_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let out = unitscope(
        &[
            "explain",
            "--demo",
            "2",
            "-m",
            "saliency,grad-cam,smoothgrad:guided-backprop",
            "--samples",
            "4",
            "-t",
            "predicted,features.7:3",
            "--save-raw",
            "--metrics",
            "-o",
            s(dir.path()),
        ],
        &[],
    );
    assert_success(&out);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    let images = summary.as_array().unwrap();
    assert_eq!(images.len(), 2);
    for image in images {
        let maps = image["maps"].as_array().unwrap();
        assert_eq!(maps.len(), 3 * 2, "three methods x two targets");
        for map in maps {
            let png = image::open(map["png"].as_str().unwrap()).unwrap();
            assert_eq!((png.width(), png.height()), (64, 64));
            for raw in map["raw"].as_array().unwrap() {
                let path = PathBuf::from(raw.as_str().unwrap());
                let shape = npy_shape(&path);
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let expected: &[usize] = if name.contains("raw.features.10") {
                    &[8, 8] // the CAM at features.10's resolution
                } else if name.contains("display") {
                    &[64, 64]
                } else {
                    &[3, 64, 64]
                };
                assert_eq!(shape, expected, "{name}");
            }
        }
        assert_eq!(maps[1]["target"], "unit features.7:3");
        // Grad-CAM on features.10 cannot explain a unit of features.7: said, not drawn blank.
        assert!(maps[2]["warning"].is_null(), "{}", maps[2]);
        let warning = maps[3]["warning"].as_str().unwrap();
        assert!(warning.contains("all zero"), "{warning}");
        for key in ["deletion_auc", "insertion_auc", "mass_inside"] {
            let v = maps[0]["metrics"][key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert!(maps[0]["metrics"]["pointing_hit"].is_boolean());
        let grid = image::open(image["grid"].as_str().unwrap()).unwrap();
        // The input and six maps, each enlarged 3x to 192 px so that its caption
        // fits, 4 px apart and around; under each, 4 caption lines of 10 px; under
        // the grid, a colour bar of 12 px with two lines of labels.
        assert_eq!(
            (grid.width(), grid.height()),
            (
                7 * (192 + 4) + 4,
                4 + 192 + 4 + 4 * 10 + 4 + (12 + 2 * 10 + 4)
            )
        );
    }
}

#[test]
fn explain_mistakes_are_one_line_errors() {
    let unknown = fails(&["explain", "--demo", "1", "-m", "gradcam"]);
    assert!(unknown.contains("known methods"), "{unknown}");
    let target = fails(&["explain", "--demo", "1", "-t", "cat"]);
    assert!(target.contains("LAYER:CHANNEL"), "{target}");
    let layer = fails(&["explain", "--demo", "1", "-m", "grad-cam", "--layer", "fc"]);
    assert!(layer.contains("feature maps"), "{layer}");
}

#[test]
fn evaluate_prints_one_json_object_per_method() {
    let out = unitscope(
        &[
            "evaluate",
            "--demo",
            "3",
            "-m",
            "saliency,grad-cam",
            "--game-steps",
            "8",
            "--json",
        ],
        &[],
    );
    assert_success(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        for key in [
            "deletion_auc",
            "insertion_auc",
            "pointing_game",
            "mass_inside",
        ] {
            let v = row[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} in {row}"));
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        // The demo CNN has four convolutions and a classifier to randomize.
        assert_eq!(row["randomization"].as_array().unwrap().len(), 5, "{row}");
        // Fragility: one value per image, and their means.
        let sensitivity = row["max_sensitivity"].as_f64().expect("max_sensitivity");
        let shift = row["shift_spearman"].as_f64().expect("shift_spearman");
        assert!(sensitivity >= 0.0 && (-1.0..=1.0).contains(&shift), "{row}");
        let per_image = row["per_image"]["max_sensitivity"].as_array().unwrap();
        assert_eq!(per_image.len(), 3, "{row}");
    }
    // The gradient is far more fragile than Grad-CAM's coarse map.
    let sensitivity = |r: &serde_json::Value| r["max_sensitivity"].as_f64().unwrap();
    assert!(
        sensitivity(&rows[0]) > 3.0 * sensitivity(&rows[1]),
        "{rows:?}"
    );
    assert_eq!(rows[1]["method"], "grad-cam(features.10)");
}

/// A terminal emulator's side of `explain --show`: runs it on a pseudo-terminal whose
/// master end answers each graphics query in `answers` (query bytes -> reply) the way
/// a terminal does, and returns everything the command wrote to the terminal.
#[cfg(target_os = "linux")]
fn show_on_terminal(answers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().to_str().unwrap();
    let args = [
        "explain", "--demo", "1", "-m", "grad-cam", "--show", "-o", output,
    ];
    on_terminal(&args, answers, None)
}

/// What `unitscope ARGS` writes on a pseudo-terminal that answers its queries
/// with `answers`, and, once the output holds `then.0`, is sent `then.1`.
fn on_terminal(args: &[&str], answers: &[(&[u8], &[u8])], then: Option<(&[u8], &[u8])>) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let (mut master, mut slave) = (0, 0);
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    let mut master = unsafe { std::fs::File::from_raw_fd(master) };
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // Raw, as a terminal application would see it: the answers are not echoed back.
    unsafe {
        let mut attrs = std::mem::zeroed();
        libc::tcgetattr(slave.as_raw_fd(), &mut attrs);
        libc::cfmakeraw(&mut attrs);
        libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &attrs);
    }
    if then.is_some() {
        // A screen to draw on, as the end-to-end test's: 120x40.
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(args)
        .env("XDG_CONFIG_HOME", config.path())
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut written, mut answered, mut chunk) = (Vec::new(), 0, [0u8; 65536]);
    let mut then = then;
    loop {
        let mut ready = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if unsafe { libc::poll(&mut ready, 1, 1000) } == 0 {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("`unitscope {args:?}` hung; it wrote {written:?}");
            }
            continue;
        }
        // EIO once the command has exited and closed the terminal.
        let Ok(n @ 1..) = master.read(&mut chunk) else {
            break;
        };
        written.extend_from_slice(&chunk[..n]);
        // Reply to the queries in the order they were written.
        while let Some((at, query, reply)) = answers
            .iter()
            .filter_map(|(q, r)| find(&written[answered..], q).map(|at| (at, q, r)))
            .min_by_key(|(at, _, _)| *at)
        {
            master.write_all(reply).unwrap();
            answered += at + query.len();
        }
        if let Some((marker, keys)) = then
            && find(&written, marker).is_some()
        {
            master.write_all(keys).unwrap();
            then = None;
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_success(&out);
    written
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(target_os = "linux")]
#[test]
fn show_uses_the_richest_graphics_the_terminal_answers_for() {
    const DEVICE_ATTRIBUTES: &[u8] = b"\x1b[c";
    const KITTY_QUERY: &[u8] = b"\x1b_Gi=31,s=1,v=1,a=q,t=d";
    const KITTY_FILE_QUERY: &[u8] = b"\x1b_Gi=31,s=1,v=1,a=q,t=t";
    const SIXEL_START: &[u8] = b"\x1bPq";
    let half_block = "▄".as_bytes();

    // A VT220 without graphics (Ps 4 absent): half blocks.
    let plain = show_on_terminal(&[(DEVICE_ATTRIBUTES, b"\x1b[?62;1c")]);
    assert!(find(&plain, half_block).is_some());
    assert!(find(&plain, SIXEL_START).is_none());

    // A sixel terminal (xterm -ti vt340, foot, mlterm): one sixel image.
    let sixel = show_on_terminal(&[(DEVICE_ATTRIBUTES, b"\x1b[?62;4c")]);
    let start = find(&sixel, SIXEL_START).expect("a sixel image");
    assert!(
        find(&sixel[start..], b"\x1b\\").is_some(),
        "unterminated sixel"
    );
    assert!(find(&sixel, half_block).is_none());

    // Kitty's protocol over SSH (no shared files) beside sixel, as WezTerm: kitty wins.
    let kitty = show_on_terminal(&[
        (KITTY_QUERY, b"\x1b_Gi=31;OK\x1b\\"),
        (KITTY_FILE_QUERY, b"\x1b_Gi=31;ENOENT\x1b\\"),
        (DEVICE_ATTRIBUTES, b"\x1b[?62;4c"),
    ]);
    assert!(find(&kitty, b"\x1b_Gf=").is_some(), "a kitty image");
    assert!(find(&kitty, SIXEL_START).is_none());
}

/// The inspector asks the terminal once at start and draws with what it answers
/// for: kitty over sixel, sixel on a VT340-like terminal, half blocks on a VT220;
/// the status bar names the protocol, and `q` ends it with success.
#[cfg(target_os = "linux")]
#[test]
fn the_inspector_uses_the_graphics_the_terminal_answers_for() {
    const KITTY_QUERY: &[u8] = b"\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA";
    const DEVICE_ATTRIBUTES: &[u8] = b"\x1b[c";
    const CELL_SIZE: &[u8] = b"\x1b[16t";
    const STATUS: &[u8] = b"\x1b[5n";
    let terminal = |answers: &[(&[u8], &[u8])]| -> String {
        let mut all = answers.to_vec();
        all.extend([
            (CELL_SIZE, &b"\x1b[6;20;10t"[..]),
            (STATUS, &b"\x1b[0n"[..]),
        ]);
        // The first frame's status bar names the protocol; then q.
        let written = on_terminal(&[], &all, Some(("· cpu ·".as_bytes(), b"q")));
        String::from_utf8_lossy(&written).into_owned()
    };
    let vt220 = terminal(&[(DEVICE_ATTRIBUTES, b"\x1b[?62;1c")]);
    assert!(vt220.contains("cpu · halfblocks"), "{vt220}");
    let sixel = terminal(&[(DEVICE_ATTRIBUTES, b"\x1b[?62;4c")]);
    assert!(sixel.contains("cpu · sixel"), "{sixel}");
    let kitty = terminal(&[
        (KITTY_QUERY, b"\x1b_Gi=31;OK\x1b\\"),
        (DEVICE_ATTRIBUTES, b"\x1b[?62;4c"),
    ]);
    assert!(kitty.contains("cpu · kitty"), "{kitty}");
}

/// `--list-methods` and `--help` are built from the methods' descriptors: every
/// method with its paper, every parameter with its default.
#[test]
fn method_listing_and_options_come_from_the_descriptors() {
    let out = unitscope(&["explain", "--list-methods"], &[]);
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    for descriptor in unitscope::attribution::registry::descriptors() {
        assert!(
            listing.contains(descriptor.name),
            "{} missing:\n{listing}",
            descriptor.name
        );
        assert!(
            listing.contains(descriptor.citation),
            "{}",
            descriptor.citation
        );
    }
    assert!(
        listing.contains("--samples") && listing.contains("[default: 50]"),
        "{listing}"
    );
    let help = unitscope(&["explain", "--help"], &[]);
    let help = String::from_utf8(help.stdout).unwrap();
    for param in unitscope::attribution::registry::parameters() {
        assert!(
            help.contains(&format!("--{}", param.name)),
            "--{} missing",
            param.name
        );
    }
}

/// Modes that used to run silently wrong: a photo classified by the demo model says
/// so; demo scenes refused to a model made for other inputs; a checkpoint passed
/// where a card goes is named for what it is.
#[test]
fn wrong_modes_are_said_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.png");
    unitscope::data::world::World::new(0)
        .scene(3)
        .image
        .save(&photo)
        .unwrap();
    let out = unitscope(&["predict", s(&photo)], &[]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("note: no --model given: using the embedded demo model"),
        "{stderr}"
    );
    let with_card = plain_card(dir.path(), &weights_fixture("plain_cnn_legacy.pth"));
    let out = unitscope(&["predict", s(&photo), "--model", s(&with_card)], &[]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let err = fails(&["explain", "--demo", "1", "--model", s(&with_card)]);
    assert!(
        err.contains("demo scenes are 64x64 px") && err.contains("16x16"),
        "{err}"
    );
    let err = fails(&["evaluate", "--demo", "2", "--model", s(&with_card)]);
    assert!(err.contains("demo scenes are 64x64 px"), "{err}");

    let checkpoint = weights_fixture("plain_cnn_legacy.pth");
    let err = fails(&["info", "--model", s(&checkpoint)]);
    assert!(err.contains("is a weights file, not a model card"), "{err}");
    // Recognised by its first bytes too, whatever it is called.
    let renamed = dir.path().join("card.toml");
    std::fs::copy(root().join("assets/demo-model.safetensors"), &renamed).unwrap();
    let err = fails(&["info", "--model", s(&renamed)]);
    assert!(err.contains("is a weights file, not a model card"), "{err}");
}

/// An output folder holds one run: a second run into it is refused, `--force`
/// replaces the earlier run's files (and only those), and a folder of other files
/// is never written into. `train demo` makes the folder it saves into first.
#[test]
fn an_output_folder_holds_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let explain = |extra: &[&str]| {
        let args = [
            &[
                "explain",
                "--demo",
                "2",
                "-m",
                "saliency,grad-cam",
                "-o",
                s(&out),
            ],
            extra,
        ]
        .concat();
        unitscope(&args, &[])
    };
    assert!(explain(&[]).status.success());
    let first: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let again = explain(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let replaced = unitscope(
        &[
            "explain",
            "--demo",
            "1",
            "-m",
            "saliency",
            "-o",
            s(&out),
            "--force",
        ],
        &[],
    );
    assert_success(&replaced);
    let mut now: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    now.sort();
    assert_eq!(
        now,
        [
            "notes.txt",
            "scene0.grid.png",
            "scene0.saliency.predicted.png",
            "summary.json"
        ],
        "the earlier run had {first:?}"
    );
    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.png"), "not ours").unwrap();
    let err = fails(&[
        "explain",
        "--demo",
        "1",
        "-m",
        "saliency",
        "-o",
        s(&foreign),
        "--force",
    ]);
    assert!(err.contains("not a finished explain run"), "{err}");

    let weights = dir.path().join("new/folder/w.safetensors");
    let trained = unitscope(
        &[
            "train",
            "demo",
            "--steps",
            "1",
            "--batch",
            "2",
            "--eval",
            "2",
            "-o",
            s(&weights),
        ],
        &[],
    );
    assert_success(&trained);
    assert!(weights.is_file() && weights.with_extension("json").is_file());
}

/// Class names as targets: `classes` lists them (from the card alone), any synonym
/// in any case names a class, and a misspelling suggests the closest.
#[test]
fn classes_are_listed_and_named_forgivingly() {
    let lite0 = root().join("models/efficientnet-lite0.toml");
    let out = unitscope(&["classes", "TABBY", "--model", s(&lite0)], &[]);
    assert_success(&out);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "  281  tabby, tabby cat\n"
    );
    let demo = String::from_utf8(unitscope(&["classes"], &[]).stdout).unwrap();
    assert!(demo.lines().any(|l| l.ends_with("  square")), "{demo}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let named = unitscope(
        &[
            "explain",
            "--demo",
            "1",
            "-m",
            "saliency",
            "-t",
            "SQUARE",
            "-t",
            "predicted,2",
            "-o",
            s(&out),
        ],
        &[],
    );
    assert_success(&named);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary[0]["maps"].as_array().unwrap().len(), 3);
    let err = fails(&["explain", "--demo", "1", "-t", "squre"]);
    assert!(err.contains("closest") && err.contains("square"), "{err}");
}

/// summary.json's figures are each map's own: occlusion's passes at the input's
/// size (7 x 7 windows + 1 on 64 px demo scenes, not the 224 px count), each map's
/// share of its batch's time, and parameters complete enough to rerun it.
#[test]
fn summary_figures_are_each_maps_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "explain",
        "--demo",
        "1",
        "-m",
        "occlusion,smoothgrad",
        "-t",
        "predicted,2",
    ];
    let run = unitscope(
        &[&args[..], &["--samples", "4", "-o", s(&out)]].concat(),
        &[],
    );
    assert_success(&run);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let maps = summary[0]["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 4);
    assert_eq!(
        maps[0]["passes"],
        serde_json::json!({"backward": 0, "forward": 50})
    );
    for map in maps {
        let (ms, batch) = (
            map["ms"].as_f64().unwrap(),
            map["batch_ms"].as_f64().unwrap(),
        );
        assert!((ms * 2.0 - batch).abs() < 1e-9 * batch.max(1.0), "{map}");
    }
    let smooth = &maps[2]["parameters"];
    for key in ["samples", "noise-level", "seed", "batch-size"] {
        assert!(!smooth[key].is_null(), "{key} missing: {smooth}");
    }
    assert_eq!(smooth["samples"], 4);
    assert_eq!(
        maps[2]["passes"],
        serde_json::json!({"backward": 4, "forward": 0})
    );
}

/// Maps are drawn on the user's image at its own resolution: the heatmap over the
/// part the model saw (the center crop, scaled back), the rest dimmed.
#[test]
fn maps_are_drawn_on_the_original_image() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("wide.png");
    image::RgbImage::from_pixel(60, 40, image::Rgb([200, 100, 50]))
        .save(&photo)
        .unwrap();
    let card = plain_card(dir.path(), &weights_fixture("plain_cnn_legacy.pth"));
    let out = dir.path().join("out");
    let run = unitscope(
        &[
            "explain",
            s(&photo),
            "--model",
            s(&card),
            "-m",
            "saliency",
            "-o",
            s(&out),
        ],
        &[],
    );
    assert_success(&run);
    let map = image::open(out.join("wide.saliency.predicted.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(map.dimensions(), (60, 40));
    // 16 px center crop of the 19 px shorter side: the left edge lies outside it.
    assert_eq!(
        map[(0, 20)],
        image::Rgb([80, 40, 20]),
        "outside the crop is dimmed"
    );
    assert_ne!(
        map[(30, 20)],
        image::Rgb([80, 40, 20]),
        "inside it is the map"
    );
}

/// Review fixes: names that would overwrite each other's files are refused; a
/// `--force` whose images cannot be read keeps the earlier run; `classes` matches
/// names as `--target` does; occlusion leaves uncovered pixels at zero, not NaN.
#[test]
fn overwrites_and_lost_runs_are_refused() {
    let err = fails(&["explain", "--demo", "1", "-m", "saliency,saliency"]);
    assert!(err.contains("would write the same files"), "{err}");
    let err = fails(&["explain", "--demo", "1", "-t", "2,2"]);
    assert!(err.contains("would write the same files"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let first = unitscope(
        &["explain", "--demo", "1", "-m", "saliency", "-o", s(&out)],
        &[],
    );
    assert!(first.status.success());
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, "not a png").unwrap();
    fails(&["explain", s(&bad), "-o", s(&out), "--force"]);
    assert!(out.join("summary.json").is_file() && out.join("scene0.grid.png").is_file());

    let lite0 = root().join("models/efficientnet-lite0.toml");
    let listed = unitscope(&["classes", "tabby_cat", "--model", s(&lite0)], &[]);
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        "  281  tabby, tabby cat\n"
    );

    let sparse = dir.path().join("sparse");
    let run = unitscope(
        &[
            "explain",
            "--demo",
            "1",
            "-m",
            "occlusion",
            "--window",
            "4",
            "--stride",
            "16",
            "--save-raw",
            "-o",
            s(&sparse),
        ],
        &[],
    );
    assert_success(&run);
    let raw = std::fs::read(sparse.join("scene0.occlusion.predicted.raw.npy")).unwrap();
    // float32 little-endian values after the .npy header: none may be NaN.
    let header = 10 + u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let nans = raw[header..]
        .chunks_exact(4)
        .filter(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_nan())
        .count();
    assert_eq!(nans, 0);
}

/// `bench attribution --occlusion WINDOW,STRIDE` takes its pair as
/// bench/captum_attribution.py passes it; one number alone is refused.
#[test]
fn bench_attribution_takes_the_occlusion_pair() {
    let args = [
        "bench",
        "attribution",
        "--methods",
        "saliency",
        "--batch",
        "1",
        "--reps",
        "1",
    ];
    let out = unitscope(
        &[&args[..], &["--json", "--occlusion", "32,16"]].concat(),
        &[],
    );
    assert_success(&out);
    let err = fails(&[&args[..], &["--occlusion", "32"]].concat());
    assert!(err.contains("WINDOW,STRIDE"), "{err}");
}

/// `topk` writes each unit's strongest inputs as receptive-field crops and whole
/// images, indexed in JSON, ranked by peak; the second run reads the cache; bad
/// units and layers are one-line errors.
#[test]
fn topk_writes_crops_images_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache) = (dir.path().join("out"), dir.path().join("cache"));
    let env: &[(&str, &Path)] = &[("XDG_CACHE_HOME", &cache)];
    let args = [
        "topk",
        "--layer",
        "features.6",
        "--units",
        "0-1,5",
        "--k",
        "3",
        "--demo",
        "12",
        "-o",
        s(&out),
    ];
    let run = unitscope(&args, env);
    assert_success(&run);
    assert!(String::from_utf8_lossy(&run.stdout).contains("(searched)"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("topk.json")).unwrap()).unwrap();
    let layer = &index["layers"][0];
    assert_eq!(layer["layer"], "features.6");
    assert_eq!(
        layer["receptive_field"]["size"],
        serde_json::json!([18, 18])
    );
    let units: Vec<u64> = layer["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_u64().unwrap())
        .collect();
    assert_eq!(units, [0, 1, 5]);
    for unit in layer["units"].as_array().unwrap() {
        let top = unit["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let peaks: Vec<f64> = top.iter().map(|t| t["peak"].as_f64().unwrap()).collect();
        assert!(peaks.windows(2).all(|p| p[0] >= p[1]), "{peaks:?}");
        assert_eq!(unit["max"].as_f64().unwrap(), peaks[0]);
        for t in top {
            let w: Vec<u32> = serde_json::from_value(t["window"].clone()).unwrap();
            let crop = image::open(out.join(t["crop"].as_str().unwrap())).unwrap();
            // Demo scenes are the model's 64 px input: a crop is its window exactly.
            assert_eq!((crop.height(), crop.width()), (w[2] - w[0], w[3] - w[1]));
            assert!(w[2] - w[0] <= 18 && w[3] <= 64);
            let whole = image::open(out.join(t["activation"].as_str().unwrap())).unwrap();
            assert_eq!((whole.width(), whole.height()), (64, 64));
        }
    }
    let again = unitscope(&args, env);
    assert_success(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(from the cache)"));
    let e = fails(&[
        "topk",
        "--layer",
        "features.6",
        "--units",
        "70",
        "--demo",
        "2",
        "-o",
        s(&out),
    ]);
    assert!(
        e.contains("unit 70 is out of range: `features.6` has 64 units"),
        "{e}"
    );
    let e = fails(&["topk", "--layer", "nope", "--demo", "2", "-o", s(&out)]);
    assert!(e.contains("no layer `nope`"), "{e}");
}

/// `visualize` writes one PNG per unit and the curves; the same seed makes the
/// same pictures; wrong units and objectives are one-line errors.
#[test]
fn visualize_writes_pictures_and_curves_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path| {
        let args = [
            "visualize",
            "--layer",
            "features.6",
            "--unit",
            "2,5",
            "--steps",
            "12",
            "--seed",
            "7",
            "-o",
            s(out),
        ];
        let run = unitscope(&args, &[]);
        assert_success(&run);
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(&a);
    run(&b);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("visualize.json")).unwrap()).unwrap();
    let images = index["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for image in images {
        assert_eq!(image["curve"].as_array().unwrap().len(), 12);
        let file = image["file"].as_str().unwrap();
        let picture = image::open(a.join(file)).unwrap();
        assert_eq!(
            (picture.width(), picture.height()),
            (64, 64),
            "the model's input size"
        );
        assert_eq!(
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
            "{file}: the same seed made another picture"
        );
    }
    assert_eq!(images[0]["target"], "features.6:2");
    let e = fails(&[
        "visualize",
        "--layer",
        "features.6",
        "--unit",
        "64",
        "-o",
        s(&a),
    ]);
    assert!(
        e.contains("unit 64 is out of range: `features.6` has 64 units"),
        "{e}"
    );
    let e = fails(&[
        "visualize",
        "--layer",
        "features.6",
        "--objective",
        "logit",
        "-o",
        s(&a),
    ]);
    assert!(e.contains("a bare `logit` term needs --class"), "{e}");
}

/// `dissect` on the demo world writes NetDissect-Lite's tally.csv (every unit, by
/// score), a JSON per layer and an index; a rerun keeps the finished layer; bad
/// datasets and settings are one-line errors.
#[test]
fn dissect_writes_a_tally_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    let args = [
        "dissect",
        "--layer",
        "features.4",
        "--demo",
        "40",
        "-o",
        s(&out),
    ];
    let run = unitscope(&args, &[]);
    assert_success(&run);
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.contains("features.4: ") && stdout.contains("units covering"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("features.4/tally.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("unit,category,label,score,shape-label,shape-truth,shape-activation,shape-intersect,shape-iou,color-label"),
        "{header}"
    );
    let scores: Vec<f64> = lines
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 32);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let layer: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("features.4/dissection.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(layer["results"].as_array().unwrap().len(), 32);
    assert!(out.join("dissect.json").exists());
    let page = std::fs::read_to_string(out.join("features.4/report.html")).unwrap();
    let headline = format!("/32 units covering {} concepts", layer["concepts"]);
    assert!(page.contains(&headline), "no headline in the report");
    // Four top images for each of the 32 units, inside the page.
    assert_eq!(page.matches("data:image/png;base64,").count(), 32 * 4);

    let again = unitscope(&args, &[]);
    assert_success(&again);
    assert!(
        String::from_utf8(again.stdout)
            .unwrap()
            .contains("already dissected")
    );
    // A rerun with one layer more (named twice) dissects only that one, once; the
    // index lists both, in the order asked.
    let more = unitscope(
        &[
            "dissect",
            "--layer",
            "features.1,features.4,features.1",
            "--demo",
            "40",
            "-o",
            s(&out),
        ],
        &[],
    );
    assert_success(&more);
    let stdout = String::from_utf8(more.stdout).unwrap();
    assert!(
        stdout.contains("features.4: already dissected") && !stdout.contains("features.1: already"),
        "{stdout}"
    );
    assert!(out.join("features.1/tally.csv").exists());
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("dissect.json")).unwrap()).unwrap();
    let listed: Vec<&str> = (index["layers"].as_array().unwrap().iter())
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["features.1", "features.4"]);

    let missing = dir.path().join("nothing");
    let err = fails(&[
        "dissect",
        "--layer",
        "features.4",
        "--dataset",
        s(&missing),
        "-o",
        s(&out),
    ]);
    assert!(err.contains("index.csv"), "{err}");
    let err = fails(&["dissect", "--layer", "nope", "--demo", "4", "-o", s(&out)]);
    assert!(err.contains("no layer `nope`"), "{err}");
    let err = fails(&[
        "dissect",
        "--layer",
        "features.4",
        "--quantile",
        "2",
        "-o",
        s(&out),
    ]);
    assert!(err.contains("--quantile"), "{err}");
}

/// The sharded flow as the README's job array runs it: round 1 per shard, merge,
/// round 2 per shard, merge; its tally.csv (and with --report its report.html) is
/// the single run's from the sketch.
/// A round-2 shard without round 1's thresholds and a missing shard are one-line
/// errors.
#[test]
fn sharded_dissection_merges_into_the_single_runs_tally() {
    let dir = tempfile::tempdir().unwrap();
    let (parts, merged) = (dir.path().join("parts"), dir.path().join("merged"));
    let layer = ["--layer", "features.4", "--demo", "30"];
    let shard = |i: usize, extra: &[&str]| {
        let spec = format!("{i}/2");
        let mut args = vec!["dissect"];
        args.extend(layer);
        args.extend(["--shard", &spec, "-o", s(&parts)]);
        args.extend(extra);
        assert_success(&unitscope(&args, &[]));
    };
    shard(0, &[]);
    let err = fails(&["dissect", "merge", s(&parts), "-o", s(&parts)]);
    assert!(err.contains("lacks shard(s) 1 of 2"), "{err}");
    shard(1, &[]);
    assert_success(&unitscope(
        &["dissect", "merge", s(&parts), "-o", s(&parts)],
        &[],
    ));
    let thresholds = parts.join("thresholds.json");
    shard(0, &["--thresholds", s(&thresholds)]);
    shard(1, &["--thresholds", s(&thresholds)]);
    let tallies: Vec<String> = (0..2)
        .map(|i| s(&parts.join(format!("features.4.tally.{i:04}-of-0002.json"))).to_string())
        .collect();
    let mut args = vec!["dissect", "merge"];
    args.extend(tallies.iter().map(String::as_str));
    args.extend(["-o", s(&merged)]);
    assert_success(&unitscope(&args, &[]));
    // A single run that keeps no activations uses the sketch too: the same tally.
    let single = dir.path().join("single");
    let mut args = vec!["dissect", "--max-exact-mb", "0", "-o", s(&single)];
    args.extend(layer);
    assert_success(&unitscope(&args, &[]));
    let tally = |dir: &Path| std::fs::read_to_string(dir.join("features.4/tally.csv")).unwrap();
    assert_eq!(tally(&merged), tally(&single));
    assert_eq!(tally(&merged).lines().count(), 33);
    // With the run's model and data, merge draws the single run's report too; with
    // other data it refuses.
    let mut args = vec!["dissect", "merge"];
    args.extend(tallies.iter().map(String::as_str));
    args.extend(["-o", s(&merged), "--report", "--demo", "31"]);
    let err = fails(&args);
    assert!(err.contains("were made with another model, data"), "{err}");
    *args.last_mut().unwrap() = "30";
    assert_success(&unitscope(&args, &[]));
    let page = |dir: &Path| std::fs::read(dir.join("features.4/report.html")).unwrap();
    assert!(page(&merged) == page(&single), "the merged report differs");

    let other = dir.path().join("other.json");
    std::fs::write(&other, "{}").unwrap();
    let err = fails(&[
        "dissect",
        "--layer",
        "features.4",
        "--demo",
        "30",
        "--shard",
        "0/2",
        "--thresholds",
        s(&other),
        "-o",
        s(&parts),
    ]);
    assert!(err.contains("merge round 1"), "{err}");
    let err = fails(&[
        "dissect",
        "--layer",
        "features.4",
        "--shard",
        "2/2",
        "-o",
        s(&parts),
    ]);
    assert!(err.contains("2/2"), "{err}");
}

/// LIME and KernelSHAP write the superpixels their maps are painted on (a 16-bit
/// PNG of region numbers, listed in summary.json and removed by --force); LIME
/// reports its fit's R², LRP how much of the target's value its map holds.
#[test]
fn explain_saves_superpixels_and_each_methods_notes() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().to_str().unwrap();
    let args = [
        "explain",
        "--demo",
        "1",
        "-m",
        "lime,kernel-shap,lrp",
        "--perturbations",
        "64",
        "--outline",
        "-o",
        output,
    ];
    assert_success(&unitscope(&args, &[]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    let maps = summary[0]["maps"].as_array().unwrap();
    let r2 = maps[0]["r2"].as_f64().expect("LIME's R²");
    assert!((0.0..=1.0).contains(&r2), "{r2}");
    let kept = maps[2]["conservation"]
        .as_f64()
        .expect("LRP's conservation");
    assert!(kept > 0.0 && kept < 2.0, "{kept}");
    assert!(maps[1]["r2"].is_null() && maps[2]["segments"].is_null());
    for map in &maps[..2] {
        let path = map["segments"].as_str().unwrap();
        let labels = image::open(path).unwrap().into_luma16();
        assert_eq!(labels.dimensions(), (64, 64));
        let regions: std::collections::BTreeSet<u16> = labels.pixels().map(|p| p.0[0]).collect();
        // Numbered from 0 without gaps, about as many as asked for (50).
        assert_eq!(*regions.last().unwrap() as usize + 1, regions.len());
        assert!(
            (5..=80).contains(&regions.len()),
            "{} regions",
            regions.len()
        );
    }
    let again = [
        "explain", "--demo", "1", "-m", "saliency", "--force", "-o", output,
    ];
    assert_success(&unitscope(&again, &[]));
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".segments.png"))
        .collect();
    assert!(
        left.is_empty(),
        "the earlier run's superpixels stayed: {left:?}"
    );
}
