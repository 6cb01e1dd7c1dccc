//! The README's "Using it" commands, run as written on what ships: the embedded demo
//! model, the shipped EfficientNet-Lite0 card (its weights fetched as the real-data
//! tests fetch them) and scikit-image's photos. A README example that stops working
//! fails here.
//!
//! Optional `[...]` parts are left out; placeholders become real files; the long
//! commands (benchmarks, training) get small sizes, and nothing writes outside a
//! scratch folder (`train demo` would otherwise replace the shipped weights).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{download, root};

/// The commands of the README's first `sh` block under "## Using it", one per
/// entry, continuation lines joined and comments dropped.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let usage = readme
        .split("## Using it")
        .nth(1)
        .expect("a Using it section");
    let block = usage
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block under Using it");
    let mut commands: Vec<String> = Vec::new();
    for line in block.lines() {
        let code = line.split(" # ").next().unwrap_or("").trim_end();
        if code.trim().is_empty() {
            continue;
        }
        match code.starts_with(char::is_whitespace) {
            true => commands
                .last_mut()
                .expect("a continuation first")
                .push_str(code),
            false => commands.push(code.to_owned()),
        }
    }
    commands
}

/// `command` without its `[...]` optional parts, split into words (double quotes
/// group).
fn words(command: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut depth = 0;
    for c in command.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in plain.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The shipped card with the fetched weights beside it, in `dir`.
fn lite0_card(dir: &Path) -> PathBuf {
    let card = dir.join("efficientnet-lite0.toml");
    std::fs::copy(root().join("models/efficientnet-lite0.toml"), &card).unwrap();
    let weights = download("efficientnet-lite0-57934424.pth");
    std::fs::copy(weights, dir.join("efficientnet-lite0-57934424.pth")).unwrap();
    card
}

#[test]
fn every_usage_example_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let card = lite0_card(dir);
    let (chelsea, coffee) = (download("chelsea.png"), download("coffee.png"));
    let photos = dir.join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::copy(&chelsea, photos.join("chelsea.png")).unwrap();
    std::fs::copy(&coffee, photos.join("coffee.png")).unwrap();
    let place = |word: &str| -> String {
        let path = |p: &Path| p.display().to_string();
        match word {
            "models/efficientnet-lite0.toml" | "card.toml" => path(&card),
            "chelsea.png" | "cat.png" => path(&chelsea),
            "dog.jpg" => path(&coffee),
            "photos/" => path(&photos),
            other => other.to_owned(),
        }
    };
    let commands = readme_commands();
    assert!(
        commands.len() >= 15,
        "read only {} commands",
        commands.len()
    );
    for command in &commands {
        let mut args: Vec<String> = words(command).iter().skip(1).map(|w| place(w)).collect();
        assert!(command.starts_with("unitscope "), "{command}");
        // Small sizes for the long ones; nothing written outside the scratch folder.
        let small: &[&str] = match (args[0].as_str(), args.get(1).map(String::as_str)) {
            ("bench", Some("engine")) => &[
                "--models",
                "efficientnet_lite0",
                "--batch",
                "1",
                "--reps",
                "1",
            ],
            ("bench", Some("attribution")) => {
                &["--methods", "saliency", "--batch", "1", "--reps", "1"]
            }
            ("train", _) => &[
                "--steps",
                "2",
                "--batch",
                "2",
                "--eval",
                "2",
                "-o",
                "w.safetensors",
            ],
            ("evaluate", _) => &["--no-randomization", "--game-steps", "8"],
            _ => &[],
        };
        if args[0] == "evaluate"
            && let Some(i) = args.iter().position(|a| a == "--demo")
        {
            args[i + 1] = "2".into();
        }
        args.extend(small.iter().map(|s| s.to_string()));
        let run_dir = tempfile::tempdir_in(dir).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_unitscope"))
            .args(&args)
            .current_dir(run_dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README example `{command}` (run as {args:?}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn usage_lines_are_read_whole() {
    let commands = readme_commands();
    assert!(
        commands.iter().all(|c| c.starts_with("unitscope ")),
        "{commands:?}"
    );
    assert_eq!(
        words(r#"unitscope explain x.png [-t "a b"] -t "tabby cat" -m a,b"#),
        [
            "unitscope",
            "explain",
            "x.png",
            "-t",
            "tabby cat",
            "-m",
            "a,b"
        ]
    );
}
