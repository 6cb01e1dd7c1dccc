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

/// One broken plugin: how to make it, and what its one line must say.
struct Broken {
    name: &'static str,
    /// Whether it fails when loaded (else when it runs).
    at_load: bool,
    needle: &'static str,
}

/// Builds the corpus in `dir`: C plugins each broken one way, a file that is not
/// a library, and a library for another machine.
fn corpus(dir: &Path) -> Vec<(Broken, PathBuf)> {
    let source = root().join("tests/plugins/broken.c");
    let c = [
        ("major", "FAULT_MAJOR", true, "built for plugin ABI 2.0"),
        (
            "minor",
            "FAULT_MINOR",
            true,
            "newer than this unitscope's 1.0",
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

/// A Rust plugin (built here with Cargo against the SDK) that panics in its
/// entry, its pass count or its method: the SDK catches each panic, the host
/// reports it in one line, and nothing of the panic reaches the terminal.
#[test]
fn a_panicking_rust_plugin_is_caught_at_every_export() {
    let target = root().join("target/test-plugins");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(root().join("tests/plugins/panicky/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap();
    assert!(built.success(), "building tests/plugins/panicky");
    let library = target.join("debug/libpanicky.so");
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
