//! Hostile input, class by class: checkpoints that amplify, nest or lie; card values
//! and options that would size huge allocations or mean nothing; images that amplify
//! or are cut off; closed pipes and full disks; weights that are not weights; a Hugging
//! Face cache that points outside itself.
//!
//! Every file is made here, and every case runs the release binary as a user would,
//! in a child process whose address space is capped (`setrlimit`) and whose time is
//! bounded: an amplification fails the test with an allocation abort instead of
//! taking the machine, a hang fails it by the clock. A refused input must end with
//! exit 1 (2 for a command-line value clap rejects) and exactly one line on stderr.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use common::{png_with_header, root};

/// The address space a case may take: the demo model needs a few hundred MB.
const ADDRESS_SPACE: u64 = 3 << 30;
/// A case still running after this has hung.
const TIMEOUT: Duration = Duration::from_secs(180);

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs the binary in `dir` under the address-space cap; `stdout` says where its
/// output goes (`None`: captured).
fn run_with(dir: &Path, args: &[&str], stdout: Option<Stdio>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitscope"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    cmd.stdout(stdout.unwrap_or_else(Stdio::piped));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: ADDRESS_SPACE,
                rlim_max: ADDRESS_SPACE,
            };
            match libc::setrlimit(libc::RLIMIT_AS, &cap) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let out = match finished.recv_timeout(TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the child's pid, which it still holds (not reaped).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{args:?} hung for {TIMEOUT:?}");
        }
    };
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(dir: &Path, args: &[&str]) -> Run {
    run_with(dir, args, None)
}

/// Asserts `args` are refused with exit `code` and one stderr line containing every
/// one of `needles`; returns that line.
fn refused_with(dir: &Path, args: &[&str], code: i32, needles: &[&str]) -> String {
    let out = run(dir, args);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        out.code,
        Some(code),
        "{args:?}: expected exit {code}, got {:?} (a signal or panic if not 1 or 2):\n{}",
        out.code,
        out.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected a one-line error, got:\n{}",
        out.stderr
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{args:?}: {line}");
    for needle in needles {
        assert!(line.contains(needle), "{args:?}: `{needle}` not in: {line}");
    }
    line.to_owned()
}

/// A refusal by unitscope itself (exit 1).
fn refused(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    refused_with(dir, args, 1, needles)
}

/// A value clap's range check refuses (exit 2), naming the allowed range.
fn out_of_range(dir: &Path, args: &[&str], range: &str) {
    refused_with(dir, args, 2, &[range]);
}

/// Asserts `args` succeed, with nothing on stderr but `warnings`; returns stdout.
fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert_eq!(out.code, Some(0), "{args:?} failed:\n{}", out.stderr);
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A demo scene as a PNG in `dir`.
fn scene_png(dir: &Path, name: &str) -> PathBuf {
    let world = unitscope::data::world::World::new(0);
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    world.scene(1).image.save(&path).unwrap();
    path
}

/// A card for the demo model with the weights at `weights` and `input`, more lines
/// of its `[input]` table.
fn demo_card(dir: &Path, weights: &Path, input: &str) -> PathBuf {
    let path = dir.join("card.toml");
    let text = format!(
        "architecture = \"plain_cnn\"\nweights = {:?}\nnum_classes = 8\n[input]\n\
         size = [64, 64]\nresize = \"stretch\"\nmean = [0.5, 0.5, 0.5]\n\
         std = [0.25, 0.25, 0.25]\n{input}\n[options]\nchannels = [16, 32, 64, 128]\n\
         batch_norm = false\n",
        weights.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn demo_weights() -> PathBuf {
    root().join("assets/demo-model.safetensors")
}

/// A card pointing at `weights`, for checkpoints that fail before any shape check.
fn any_card(dir: &Path, weights: &Path) -> PathBuf {
    demo_card(dir, weights, "")
}

// --- Pickle, as torch.save writes it (protocol 2) -------------------------------

mod pickle {
    pub fn string(s: &str) -> Vec<u8> {
        let mut out = vec![b'X'];
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
        out
    }

    pub fn int(i: i64) -> Vec<u8> {
        let mut out = vec![0x8a, 8];
        out.extend(i.to_le_bytes());
        out
    }

    pub fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    pub fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![b'('];
        items.iter().for_each(|i| out.extend(i));
        out.push(b't');
        out
    }

    /// `torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, {})`.
    pub fn tensor(storage: &str, key: &str, numel: i64, shape: &[i64], stride: &[i64]) -> Vec<u8> {
        let mut persistent_id = tuple(&[
            string("storage"),
            global("torch", storage),
            string(key),
            string("cpu"),
            int(numel),
        ]);
        persistent_id.push(b'Q');
        let mut dict = global("collections", "OrderedDict");
        dict.extend(b")R");
        let mut out = global("torch._utils", "_rebuild_tensor_v2");
        out.extend(tuple(&[
            persistent_id,
            int(0),
            tuple(&shape.iter().map(|&d| int(d)).collect::<Vec<_>>()),
            tuple(&stride.iter().map(|&d| int(d)).collect::<Vec<_>>()),
            vec![0x89],
            dict,
        ]));
        out.push(b'R');
        out
    }

    /// A dict of `name: value` pairs, as one pickle.
    pub fn state_dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0x80, 0x02, b'}', b'('];
        for (name, value) in items {
            out.extend(string(name));
            out.extend(value);
        }
        out.extend(b"u.");
        out
    }

    /// Lists nested `depth` deep, as one pickle.
    pub fn nested(depth: usize) -> Vec<u8> {
        let mut out = vec![0x80, 0x02];
        out.extend(std::iter::repeat_n(b'(', depth));
        out.extend(std::iter::repeat_n(b'l', depth));
        out.push(b'.');
        out
    }

    /// One KiB of bytes appended to a list 2^20 times by memo reference: 1 GiB
    /// decoded from 3 MB.
    pub fn memo_bomb() -> Vec<u8> {
        let mut out = vec![0x80, 0x02, b'B'];
        out.extend(1024u32.to_le_bytes());
        out.extend([7u8; 1024]);
        out.extend([b'q', 0, b'0', b']']);
        for _ in 0..1 << 20 {
            out.extend([b'h', 0, b'a']);
        }
        out.push(b'.');
        out
    }
}

/// A zip-format checkpoint: `data.pkl` and storages `data/KEY`, stored or deflated.
fn zip_checkpoint(path: &Path, pickle: &[u8], storages: &[(&str, Vec<u8>)], deflate: bool) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = match deflate {
        true => zip::CompressionMethod::Deflated,
        false => zip::CompressionMethod::Stored,
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    zip.start_file("archive/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), options)
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A legacy (pre-1.6) checkpoint: the magic, protocol and sys-info pickles, `root`,
/// the storage keys, then each storage as an element count and its bytes.
fn legacy_checkpoint(path: &Path, root: &[u8], storages: &[(&str, i64, Vec<u8>)]) {
    let mut out = vec![0x80, 0x02, 0x8a, 0x0a];
    out.extend([0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    out.extend(b".\x80\x02M\xe9\x03.\x80\x02}.");
    out.extend(root);
    out.extend([0x80, 0x02, b']', b'(']);
    storages
        .iter()
        .for_each(|(key, _, _)| out.extend(pickle::string(key)));
    out.extend(b"e.");
    for (_, count, bytes) in storages {
        out.extend(count.to_le_bytes());
        out.extend(bytes);
    }
    std::fs::write(path, out).unwrap();
}

// --- Class 1: checkpoint amplification and recursion -----------------------------

#[test]
fn deep_nesting_is_refused_in_both_checkpoint_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A million nested lists (2 MB): a stack overflow in a recursive reader or drop.
    let deep = pickle::nested(1_000_000);
    zip_checkpoint(&d.join("deep.pth"), &deep, &[], false);
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("deep.pth")))],
        &["deep.pth", "nests containers", "UNITSCOPE_MAX_PICKLE_DEPTH"],
    );
    legacy_checkpoint(&d.join("deep_legacy.pth"), &deep, &[]);
    refused(
        d,
        &[
            "info",
            "--model",
            s(&any_card(d, &d.join("deep_legacy.pth"))),
        ],
        &["nests containers", "UNITSCOPE_MAX_PICKLE_DEPTH"],
    );
}

#[test]
fn memo_amplification_is_refused_in_both_checkpoint_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bomb = pickle::memo_bomb();
    zip_checkpoint(&d.join("memo.pth"), &bomb, &[], false);
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("memo.pth")))],
        &["amplification", "UNITSCOPE_MAX_PICKLE_BYTES"],
    );
    legacy_checkpoint(&d.join("memo_legacy.pth"), &bomb, &[]);
    refused(
        d,
        &[
            "info",
            "--model",
            s(&any_card(d, &d.join("memo_legacy.pth"))),
        ],
        &["amplification", "UNITSCOPE_MAX_PICKLE_BYTES"],
    );
}

#[test]
fn views_that_repeat_their_storage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One float viewed 2^31 times by a zero stride: under the per-tensor cap, 8 GiB.
    let zero_stride = pickle::state_dict(&[(
        "w",
        pickle::tensor("FloatStorage", "0", 1, &[1 << 31], &[0]),
    )]);
    zip_checkpoint(
        &d.join("stride0.pth"),
        &zero_stride,
        &[("0", vec![0; 4])],
        false,
    );
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("stride0.pth")))],
        &["view 2147483648 elements of storages that hold 1"],
    );
    legacy_checkpoint(
        &d.join("stride0_legacy.pth"),
        &zero_stride,
        &[("0", 1, vec![0; 4])],
    );
    refused(
        d,
        &[
            "info",
            "--model",
            s(&any_card(d, &d.join("stride0_legacy.pth"))),
        ],
        &["storages that hold 1"],
    );
    // Many tensors over one storage, each within it: the total is what amplifies.
    let n = 1 << 16;
    let overlapping: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let t = pickle::tensor("FloatStorage", "0", n, &[n], &[1]);
            (format!("w{i}"), t)
        })
        .collect();
    let items: Vec<(&str, Vec<u8>)> = overlapping
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    zip_checkpoint(
        &d.join("overlap.pth"),
        &pickle::state_dict(&items),
        &[("0", vec![0; 4 << 16])],
        false,
    );
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("overlap.pth")))],
        &["up to `w2` view 196608 elements of storages that hold 65536"],
    );
}

#[test]
fn zip_bombs_are_refused_before_inflating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 256 MiB of zeros deflate to ~250 KB.
    let numel: i64 = 64 << 20;
    let pickle = pickle::state_dict(&[(
        "w",
        pickle::tensor("FloatStorage", "0", numel, &[numel], &[1]),
    )]);
    zip_checkpoint(
        &d.join("bomb.pth"),
        &pickle,
        &[("0", vec![0; 4 * numel as usize])],
        true,
    );
    assert!(std::fs::metadata(d.join("bomb.pth")).unwrap().len() < 1 << 20);
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("bomb.pth")))],
        &["zip bomb", "UNITSCOPE_MAX_INFLATE_RATIO"],
    );
}

#[test]
fn legacy_storages_longer_than_the_file_are_truncation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pickle = pickle::state_dict(&[("w", pickle::tensor("FloatStorage", "0", 4, &[4], &[1]))]);
    // The storage claims 2^40 elements and holds 16 bytes.
    legacy_checkpoint(
        &d.join("short.pth"),
        &pickle,
        &[("0", 1 << 40, vec![0; 16])],
    );
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("short.pth")))],
        &["truncated in storage `0`"],
    );
}

#[test]
fn tensors_of_absurd_rank_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Materializing a view costs elements x rank: rank 100k over 2^16 elements took
    // seconds per tensor before the rank was bounded.
    let rank = 100_000;
    let shape: Vec<i64> = [1 << 16]
        .into_iter()
        .chain(std::iter::repeat_n(1, rank))
        .collect();
    let stride: Vec<i64> = [1]
        .into_iter()
        .chain(std::iter::repeat_n(0, rank))
        .collect();
    let pickle = pickle::state_dict(&[(
        "w",
        pickle::tensor("FloatStorage", "0", 1 << 16, &shape, &stride),
    )]);
    zip_checkpoint(
        &d.join("rank.pth"),
        &pickle,
        &[("0", vec![0; 4 << 16])],
        false,
    );
    refused(
        d,
        &["info", "--model", s(&any_card(d, &d.join("rank.pth")))],
        &["a tensor of rank 100001 (at most 32)"],
    );
}

// --- Class 2: sizes from cards and options ---------------------------------------

/// The demo card with `from` replaced by `to`: `info` must refuse it naming `needle`.
fn refuses_card_edit(d: &Path, from: &str, to: &str, needle: &str) {
    let card = demo_card(d, &demo_weights(), "");
    let text = std::fs::read_to_string(&card).unwrap();
    assert!(text.contains(from), "{from}");
    std::fs::write(&card, text.replace(from, to)).unwrap();
    refused(d, &["info", "--model", s(&card)], &[needle]);
}

#[test]
fn card_sizes_are_checked_before_they_size_anything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (from, to, needle) in [
        (
            "size = [64, 64]",
            "size = [100000, 100000]",
            "input.size = [100000, 100000]: each side takes 1 to 1024",
        ),
        ("size = [64, 64]", "size = [0, 64]", "input.size = [0, 64]"),
        (
            "size = [64, 64]",
            "size = [64, 64]\nresize_to = 1000000000",
            "input.resize_to = 1000000000: allowed 1 to 16384",
        ),
        (
            "num_classes = 8",
            "num_classes = 1000000000000",
            "num_classes = 1000000000000: allowed 1 to 1048576",
        ),
        (
            "[16, 32, 64, 128]",
            "[16, 32, 64, 1000000]",
            "options.channels",
        ),
        (
            "[16, 32, 64, 128]",
            "[16, 16, 16, 16, 16, 16, 16, 16, 16]",
            "9 stages: allowed 1 to 8",
        ),
    ] {
        refuses_card_edit(d, from, to, needle);
    }
}

#[test]
fn huge_and_deeply_nested_cards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let deep = d.join("deep.toml");
    let depth = 100_000;
    std::fs::write(
        &deep,
        format!("x = {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    )
    .unwrap();
    refused(d, &["info", "--model", s(&deep)], &["deep.toml"]);
    let huge = d.join("huge.toml");
    std::fs::write(&huge, format!("name = \"{}\"\n", "x".repeat(2 << 20))).unwrap();
    refused(
        d,
        &["info", "--model", s(&huge)],
        &["larger than 1048576 bytes"],
    );
}

#[test]
fn option_counts_are_bounded_with_the_range_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    out_of_range(d, &["evaluate", "--demo", "1000000000"], "1..=4096");
    out_of_range(d, &["explain", "--demo", "1000000000000"], "1..=1000000");
    out_of_range(
        d,
        &["explain", "--demo", "1", "--samples", "0"],
        "1..=10000",
    );
    out_of_range(
        d,
        &["explain", "--demo", "1", "--steps", "99999999999"],
        "1..=10000",
    );
    out_of_range(d, &["bench", "engine", "--batch", "100000"], "1..=256");
    out_of_range(
        d,
        &["demo", "render", "--count", "0", "-o", "x"],
        "1..=1000000",
    );
    refused(
        d,
        &[
            "demo",
            "render",
            "--count",
            "2",
            "--start",
            "18446744073709551615",
            "-o",
            "x",
        ],
        &["--start"],
    );
    refused(
        d,
        &[
            "explain",
            "--demo",
            "1",
            "-m",
            "integrated-gradients",
            "--baseline",
            "blur:1e9",
        ],
        &["--baseline blur:1e9", "at most 1000"],
    );
}

#[test]
fn resizes_that_amplify_run_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1 x 16384 px: its shorter side to 16384 px makes a 16384 x 268M px image whole;
    // only the 64 x 64 center is computed.
    let tall = d.join("tall.png");
    image::RgbImage::from_fn(1, 16384, |_, y| image::Rgb([(y % 251) as u8, 9, 200]))
        .save(&tall)
        .unwrap();
    let card = demo_card(d, &demo_weights(), "resize_to = 16384");
    let text = std::fs::read_to_string(&card)
        .unwrap()
        .replace("resize = \"stretch\"", "resize = \"shorter-side\"");
    std::fs::write(&card, text).unwrap();
    let out = succeeds(d, &["predict", s(&tall), "--model", s(&card), "--json"]);
    assert!(out.contains("\"top\""), "{out}");
    // And stretched: the horizontal pass runs over every row, 64 columns wide.
    succeeds(d, &["predict", s(&tall)]);
}

#[test]
fn images_over_the_pixel_limit_are_refused_undecoded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = d.join("big.png");
    std::fs::write(&big, png_with_header(16384, 16384)).unwrap();
    refused(
        d,
        &["predict", s(&big)],
        &["16384x16384", "UNITSCOPE_MAX_IMAGE_PIXELS"],
    );
}

#[test]
fn endless_image_files_are_refused_at_the_longest_image_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.png")).unwrap();
    refused(
        d,
        &["predict", "zero.png"],
        &["zero.png", "longer than any image within the pixel limit"],
    );
}

#[test]
fn inputs_smaller_than_a_kernel_are_errors_or_maps_never_panics() {
    // ResNet's 7x7 stride-2 stem on a 2x2 input: every tap of some kernel columns
    // reads padding only; the column copy addressed input before its start.
    let model = common::synthetic_model(
        unitscope::model::Architecture::Resnet18,
        &unitscope::model::ArchOptions::default(),
        10,
    );
    for (h, w) in [(1, 1), (2, 2), (33, 1), (7, 7)] {
        let x = common::synthetic_input(&[1, 3, h, w]);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            model.logits(&x).map(|l| l.dims().to_vec())
        }));
        match run {
            Ok(Ok(dims)) => assert_eq!(dims, [1, 10], "{h}x{w}"),
            Ok(Err(e)) => assert!(e.to_string().contains("too small"), "{h}x{w}: {e}"),
            Err(_) => panic!("ResNet-18 on a {h}x{w} input panicked"),
        }
    }
}

// --- Class 3: meaningless values --------------------------------------------------

#[test]
fn meaningless_option_values_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let explain = ["explain", "--demo", "1", "-o", "out"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        explain.iter().chain(extra).copied().collect()
    };
    out_of_range(d, &with(&["--noise-level", "-1"]), "0..=10");
    out_of_range(d, &with(&["--noise-level", "NaN"]), "0..=10");
    out_of_range(d, &with(&["--alpha", "2"]), "0..=1");
    out_of_range(d, &with(&["--batch-size", "0"]), "1..=256");
    refused(
        d,
        &with(&["-m", "integrated-gradients", "--baseline", "blur:inf"]),
        &["blur:inf"],
    );
    refused(
        d,
        &with(&["-m", "integrated-gradients", "--baseline", "blur:-3"]),
        &["blur:-3"],
    );
}

#[test]
fn an_occlusion_stride_longer_than_the_image_leaves_one_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    succeeds(
        d,
        &[
            "explain",
            "--demo",
            "1",
            "-m",
            "occlusion",
            "--stride",
            "1000",
            "-o",
            "out",
        ],
    );
    assert!(d.join("out/scene0.occlusion.predicted.png").is_file());
}

#[test]
fn meaningless_card_values_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (from, to, needle) in [
        (
            "std = [0.25, 0.25, 0.25]",
            "std = [0.25, 0.0, 0.25]",
            "input.std[1] = 0",
        ),
        (
            "std = [0.25, 0.25, 0.25]",
            "std = [0.25, 0.25, -1.0]",
            "input.std[2] = -1",
        ),
        (
            "mean = [0.5, 0.5, 0.5]",
            "mean = [nan, 0.5, 0.5]",
            "input.mean[0] = NaN",
        ),
    ] {
        refuses_card_edit(d, from, to, needle);
    }
    // The batch-norm epsilon is EfficientNet's option (the plain CNN takes none).
    for (eps, needle) in [
        ("0.0", "options.bn_eps = 0"),
        ("-1e-5", "options.bn_eps = -0.00001"),
    ] {
        let card = d.join("lite.toml");
        let text = format!(
            "architecture = \"efficientnet_lite0\"\nweights = \"w.pth\"\n[options]\nbn_eps = {eps}\n"
        );
        std::fs::write(&card, text).unwrap();
        refused(d, &["info", "--model", s(&card)], &[needle]);
    }
}

// --- Class 4: output ---------------------------------------------------------------

#[test]
fn a_closed_pipe_ends_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let png = scene_png(d, "x.png");
    let images: Vec<&str> = std::iter::repeat_n(s(&png), 64).collect();
    for args in [
        [&["predict"][..], &images].concat(),
        vec!["demo", "concepts"],
        vec!["info"],
    ] {
        // The reading end is closed before the child writes anything.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = run_with(d, &args, Some(writer.into()));
        assert_eq!(out.code, Some(0), "{:?}: {}", &args[..2], out.stderr);
        assert!(out.stderr.is_empty(), "{:?}: {}", &args[..2], out.stderr);
    }
}

#[test]
fn a_full_disk_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [&["demo", "concepts"][..], &["--help"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = run_with(d, args, Some(full.into()));
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        assert!(lines[0].contains("No space left on device"), "{}", lines[0]);
    }
}

#[test]
fn inputs_with_the_same_file_name_keep_their_own_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = scene_png(d, "a/x.png");
    let b = scene_png(d, "b/x.png");
    succeeds(d, &["explain", s(&a), s(&b), "-m", "saliency", "-o", "out"]);
    for name in ["x", "x-2"] {
        assert!(d.join(format!("out/{name}.grid.png")).is_file(), "{name}");
        assert!(
            d.join(format!("out/{name}.saliency.predicted.png"))
                .is_file(),
            "{name}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/summary.json")).unwrap())
            .unwrap();
    let entries: Vec<(String, String)> = summary
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["image"].as_str().unwrap().into(),
                e["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [("x".into(), s(&a).into()), ("x-2".into(), s(&b).into())]
    );
}

// --- Class 5: silent garbage --------------------------------------------------------

/// The demo weights with `edit` applied to every tensor, saved as safetensors.
fn edited_weights(path: &Path, edit: impl Fn(&str, Tensor) -> Tensor) {
    let tensors: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(demo_weights(), &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let v = edit(&k, v);
                (k, v)
            })
            .collect();
    candle_core::safetensors::save(&tensors, path).unwrap();
}

/// A safetensors file of one tensor `w` with raw `dtype` and `data`.
fn raw_safetensors(path: &Path, dtype: &str, shape: &[usize], data: &[u8]) {
    let header = format!(
        "{{\"w\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[0,{}]}}}}",
        data.len()
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

#[test]
fn non_finite_weights_and_outputs_are_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = d.join("nan.safetensors");
    edited_weights(&weights, |name, t| match name {
        "fc.bias" => (t * f64::NAN).unwrap(),
        _ => t,
    });
    let card = demo_card(d, &weights, "");
    let png = scene_png(d, "x.png");
    let out = run(d, &["predict", s(&png), s(&png), "--model", s(&card)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with("warning: 8 weight(s) in 1 tensor(s)")
            && lines[0].contains("`fc.bias`"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("warning: the model's outputs are NaN"),
        "{}",
        lines[1]
    );
}

#[test]
fn non_float_weights_are_refused_naming_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ints = d.join("int.safetensors");
    edited_weights(&ints, |_, t| t.to_dtype(DType::I64).unwrap());
    refused(
        d,
        &["info", "--model", s(&any_card(d, &ints))],
        &["holds I64 values", "float weights"],
    );
    let fp8 = d.join("fp8.safetensors");
    raw_safetensors(&fp8, "F8_E5M2", &[2], &[0, 0]);
    refused(
        d,
        &["info", "--model", s(&any_card(d, &fp8))],
        &["element type F8_E5M2", "does not read"],
    );
    let int_pth = d.join("int.pth");
    zip_checkpoint(
        &int_pth,
        &pickle::state_dict(&[("w", pickle::tensor("LongStorage", "0", 1, &[1], &[1]))]),
        &[("0", vec![0; 8])],
        false,
    );
    refused(
        d,
        &["info", "--model", s(&any_card(d, &int_pth))],
        &["tensor `w` holds int64 values"],
    );
    let fp8_pth = d.join("fp8.pth");
    zip_checkpoint(
        &fp8_pth,
        &pickle::state_dict(&[(
            "w",
            pickle::tensor("Float8_e4m3fnStorage", "0", 1, &[1], &[1]),
        )]),
        &[("0", vec![0; 1])],
        false,
    );
    let line = refused(
        d,
        &["info", "--model", s(&any_card(d, &fp8_pth))],
        &["torch.Float8_e4m3fnStorage", "element type"],
    );
    assert!(
        !line.contains("refusing"),
        "not a code-execution refusal: {line}"
    );
    // num_batches_tracked is int64 in every batch-norm state dict: dropped, not refused.
    let tracked = d.join("tracked.safetensors");
    edited_weights(&tracked, |_, t| t);
    let mut tensors = candle_core::safetensors::load(&tracked, &Device::Cpu).unwrap();
    tensors.insert(
        "features.0.num_batches_tracked".into(),
        Tensor::new(&[5i64], &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &tracked).unwrap();
    succeeds(d, &["info", "--model", s(&any_card(d, &tracked))]);
}

#[test]
fn truncated_images_and_directories_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let world = unitscope::data::world::World::new(0);
    let jpeg = d.join("cut.jpg");
    world.scene(2).image.save(&jpeg).unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() * 2 / 3]).unwrap();
    refused(d, &["predict", s(&jpeg)], &["cut.jpg", "truncated"]);
    let png = scene_png(d, "cut.png");
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
    refused(d, &["predict", s(&png)], &["cut.png"]);
    std::fs::create_dir(d.join("folder.png")).unwrap();
    refused(d, &["predict", "folder.png"], &["is a directory"]);
    std::fs::create_dir(d.join("weights.safetensors")).unwrap();
    refused(
        d,
        &[
            "info",
            "--model",
            s(&any_card(d, &d.join("weights.safetensors"))),
        ],
        &["is a directory"],
    );
}

// --- Class 6: the Hugging Face cache ------------------------------------------------

#[test]
fn huggingface_names_may_not_leave_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = d.join("hub");
    let repo = hub.join("models--acme--net");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::write(d.join("secret.safetensors"), b"outside").unwrap();
    // A ref that climbs out of the cache instead of naming a commit.
    std::fs::write(repo.join("refs/main"), "../../../..").unwrap();
    let card = |fields: &str| {
        let path = d.join("hf.toml");
        std::fs::write(
            &path,
            format!("architecture = \"resnet18\"\n[huggingface]\nrepo = \"acme/net\"\n{fields}\n"),
        )
        .unwrap();
        path
    };
    let with_hub = |args: &[&str], needle: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitscope"));
        let out = cmd.args(args).env("HF_HUB_CACHE", &hub).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "`{needle}` not in {stderr}");
    };
    let c = card("file = \"secret.safetensors\"");
    with_hub(&["info", "--model", s(&c)], "does not hold a commit hash");
    let c = card(
        "file = \"../../../../secret.safetensors\"\nrevision = \"0123456789abcdef0123456789abcdef01234567\"",
    );
    with_hub(
        &["info", "--model", s(&c)],
        "must be a path inside the repository",
    );
    let c = card("file = \"model.safetensors\"\nrevision = \"../../x\"");
    with_hub(&["info", "--model", s(&c)], "huggingface.revision");
    // A snapshot file that links outside the cache.
    std::os::unix::fs::symlink(
        d.join("secret.safetensors"),
        repo.join("snapshots")
            .join(commit)
            .join("model.safetensors"),
    )
    .unwrap();
    let c = card(&format!(
        "file = \"model.safetensors\"\nrevision = \"{commit}\""
    ));
    with_hub(&["info", "--model", s(&c)], "links outside the cache");
}

// --- Seeds for the fuzz targets -------------------------------------------------------

/// Writes small versions of this file's hostile checkpoints, images and cards into
/// `$UNITSCOPE_FUZZ_SEEDS/TARGET/` for `fuzz/seed.sh`; run only on request.
#[test]
#[ignore = "writes fuzz seeds; run by fuzz/seed.sh"]
fn write_fuzz_seeds() {
    let out =
        PathBuf::from(std::env::var_os("UNITSCOPE_FUZZ_SEEDS").expect("UNITSCOPE_FUZZ_SEEDS"));
    let dir = |target: &str| {
        let d = out.join(target);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let float = |n: i64| pickle::tensor("FloatStorage", "0", n, &[n], &[1]);
    let pickles = [
        ("nested", pickle::nested(200)),
        ("memo", {
            let mut p = pickle::memo_bomb();
            p.truncate(1100 + 3 * 64);
            p.push(b'.');
            p
        }),
        (
            "stride0",
            pickle::state_dict(&[(
                "w",
                pickle::tensor("FloatStorage", "0", 1, &[1 << 20], &[0]),
            )]),
        ),
        (
            "overlap",
            pickle::state_dict(&[("a", float(4)), ("b", float(4)), ("c", float(4))]),
        ),
        (
            "int",
            pickle::state_dict(&[("w", pickle::tensor("LongStorage", "0", 1, &[1], &[1]))]),
        ),
        (
            "fp8",
            pickle::state_dict(&[(
                "w",
                pickle::tensor("Float8_e4m3fnStorage", "0", 1, &[1], &[1]),
            )]),
        ),
        ("plain", pickle::state_dict(&[("w", float(4))])),
    ];
    for (name, p) in &pickles {
        zip_checkpoint(
            &dir("pth_zip").join(format!("{name}.pth")),
            p,
            &[("0", vec![0; 16])],
            false,
        );
        legacy_checkpoint(
            &dir("pth_legacy").join(format!("{name}.pth")),
            p,
            &[("0", 4, vec![0; 16])],
        );
    }
    zip_checkpoint(
        &dir("pth_zip").join("deflated.pth"),
        &pickles[6].1,
        &[("0", vec![0; 4096])],
        true,
    );
    let st = dir("safetensors");
    raw_safetensors(&st.join("f32.safetensors"), "F32", &[2, 2], &[0; 16]);
    raw_safetensors(&st.join("i64.safetensors"), "I64", &[1], &[0; 8]);
    raw_safetensors(&st.join("f8.safetensors"), "F8_E5M2", &[2], &[0; 2]);
    let img = dir("image");
    let world = unitscope::data::world::World::new(0);
    world.scene(3).image.save(img.join("scene.png")).unwrap();
    world.scene(4).image.save(img.join("scene.jpg")).unwrap();
    image::RgbImage::from_pixel(1, 300, image::Rgb([1, 2, 3]))
        .save(img.join("tall.png"))
        .unwrap();
    std::fs::write(img.join("huge_header.png"), png_with_header(16384, 16384)).unwrap();
    let cards = dir("model_card");
    let card = demo_card(&cards, Path::new("w.safetensors"), "resize_to = 256");
    std::fs::rename(&card, cards.join("demo.toml")).unwrap();
    std::fs::copy(
        root().join("models/efficientnet-lite0.toml"),
        cards.join("lite0.toml"),
    )
    .unwrap();
    std::fs::write(
        cards.join("hf.toml"),
        "architecture = \"resnet18\"\nlabels = \"imagenet\"\n[huggingface]\nrepo = \"a/b\"\nfile = \"m.safetensors\"\n",
    )
    .unwrap();
}
