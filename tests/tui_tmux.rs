//! The inspector end to end: the real binary in tmux at 120x40, driven by keys as
//! a user would, the pane captured and checked at each step; and the terminal given
//! back after a quit, a panic and a SIGTERM. `.ci/run` installs tmux.

use std::process::Command;
use std::time::{Duration, Instant};

/// One tmux server of its own per test (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached session running the inspector with `env` under a shell that, once
    /// it exits, prints its status and waits: the pane then shows what the inspector
    /// left (a dead pane's cursor cannot be asked about).
    fn start(name: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(name, env, &[])
    }

    /// [`Tmux::start`] with command-line arguments for the inspector.
    fn start_with(name: &str, env: &[(&str, &str)], options: &[&str]) -> Self {
        assert!(
            Command::new("tmux")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
            "tmux is needed for this test: install it (apt-get install tmux; .ci/run does)"
        );
        let tmux = Self {
            socket: format!("unitscope-{name}-{}", std::process::id()),
        };
        let home = tempfile::tempdir().unwrap().keep();
        let script = r#""$@"; echo "[exited $?]"; exec sleep 600"#;
        let mut args: Vec<String> = [
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            script,
            "sh",
            "env",
        ]
        .map(String::from)
        .to_vec();
        // A config of its own (none), no user plugins, and the same terminal type
        // tmux always has.
        args.push(format!("XDG_CONFIG_HOME={}", home.display()));
        args.push(format!("XDG_DATA_HOME={}", home.display()));
        args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        args.push(env!("CARGO_BIN_EXE_unitscope").into());
        args.extend(options.iter().map(|o| o.to_string()));
        tmux.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "0", key]);
        }
    }

    fn pane(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "0"])
    }

    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "0", format])
            .trim()
            .to_string()
    }

    /// Waits until the pane shows `text`; the pane in the failure otherwise.
    fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |pane| pane.contains(text))
    }

    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pane = self.pane();
            if done(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "waited 2 minutes for {what:?}; the pane:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the inspector to exit; its status.
    fn exit_status(&self) -> i32 {
        let pane = self.wait_for("[exited ");
        let status = pane
            .split("[exited ")
            .nth(1)
            .and_then(|s| s.split(']').next());
        status
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in:\n{pane}"))
    }

    /// The inspector's process id: the child of the pane's shell.
    fn inspector_pid(&self) -> String {
        let shell = self.format("#{pane_pid}");
        let out = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!pid.is_empty(), "the inspector is not running");
        pid
    }

    /// The terminal as the inspector left it: out of the alternate screen, cursor shown.
    fn assert_restored(&self) {
        assert_eq!(
            self.format("#{alternate_on}"),
            "0",
            "still in the alternate screen:\n{}",
            self.pane()
        );
        assert_eq!(
            self.format("#{cursor_flag}"),
            "1",
            "the cursor is still hidden"
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn a_session_from_layers_to_grad_cam_and_back() {
    let tmux = Tmux::start("session", &[]);
    tmux.wait_for("layers (enter opens its units)");
    tmux.wait_for("features.9");
    // A layer, then a unit.
    tmux.keys(&["j", "j", "j", "Enter"]);
    tmux.wait_for("features.3 · 32 units");
    tmux.wait_for("#31");
    tmux.keys(&["Enter"]);
    tmux.wait_for("features.3:0 · strongest inputs");
    tmux.wait_for("histogram of per-input peaks");
    tmux.wait_for("peak");
    // A demo scene explained with Grad-CAM (the default method), then the next;
    // past the layer's Concepts.
    tmux.keys(&["Tab"]);
    tmux.wait_for("Network Dissection");
    tmux.keys(&["Tab"]);
    let pane = tmux.wait_for("grad-cam →");
    assert!(pane.contains("scene0") && pane.contains("top-5"), "{pane}");
    tmux.keys(&["m"]);
    let pane = tmux.wait_until("another method's map", |p| {
        p.contains("→") && !p.contains("grad-cam →") && !p.contains("grad-cam (m/M)")
    });
    assert!(pane.contains("(m/M)"), "{pane}");
    // The help of this screen.
    tmux.keys(&["?"]);
    // The whole popup, not only its title: a capture can land mid-frame.
    tmux.wait_until("the help of Explain", |p| {
        p.contains("keys on Explain") && p.contains("next method") && p.contains("command palette")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_until("the help closed", |p| !p.contains("keys on Explain"));
    // Resizes at any moment: smaller, too small, back.
    tmux.run(&["resize-window", "-t", "0", "-x", "80", "-y", "24"]);
    tmux.wait_until("a frame at 80x24", |p| {
        p.lines().count() <= 24 && p.contains("Explain")
    });
    tmux.run(&["resize-window", "-t", "0", "-x", "20", "-y", "5"]);
    tmux.wait_for("too small");
    tmux.run(&["resize-window", "-t", "0", "-x", "120", "-y", "40"]);
    tmux.wait_for("top-5");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0, "{}", tmux.pane());
    tmux.assert_restored();
}

#[test]
fn a_panic_gives_the_terminal_back() {
    let tmux = Tmux::start("panic", &[("UNITSCOPE_TEST_PANIC", "1")]);
    assert_eq!(tmux.exit_status(), 101);
    let pane = tmux.pane();
    assert!(
        pane.contains("panics after its first frame"),
        "the panic message is not on the screen:\n{pane}"
    );
    tmux.assert_restored();
}

#[test]
fn sigterm_and_sighup_give_the_terminal_back() {
    for (signal, status) in [("TERM", 143), ("HUP", 129)] {
        let tmux = Tmux::start(&format!("sig{signal}"), &[]);
        tmux.wait_for("layers (enter opens its units)");
        let pid = tmux.inspector_pid();
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        assert_eq!(tmux.exit_status(), status, "SIG{signal}");
        tmux.assert_restored();
    }
}

/// An SSH drop that kills the shell leaves the inspector on a hung-up terminal
/// without a signal of its own: it must end, not spin on end-of-file.
#[test]
fn a_hung_up_terminal_ends_the_inspector() {
    let tmux = Tmux::start("hangup", &[]);
    tmux.wait_for("layers (enter opens its units)");
    let pid = tmux.inspector_pid();
    let _ = Command::new("tmux")
        .args(["-L", &tmux.socket, "kill-server"])
        .output();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("kill")
        .args(["-0", &pid])
        .output()
        .unwrap()
        .status
        .success()
    {
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-9", &pid]).output();
            panic!("the inspector still runs 10 s after its terminal hung up");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Broken plugins in the inspector: one that cannot load is a notice; one that
/// fails when its method runs is an error line, and the inspector goes on (the
/// next method's map comes, the keys answer, it quits cleanly).
#[test]
fn broken_plugins_leave_the_inspector_working() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = |name: &str, define: &str| {
        let out = dir.path().join(format!("lib{name}.so"));
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".to_owned()))
            .args(["-shared", "-fPIC", "-I"])
            .arg(root.join("sdk/include"))
            .args([define, &format!("-DNAME=\"{name}\"")])
            .arg("-o")
            .arg(&out)
            .arg(root.join("tests/plugins/broken.c"))
            .status()
            .expect("a C compiler (cc)");
        assert!(status.success());
        out.to_str().unwrap().to_owned()
    };
    let (major, nan) = (
        build("broken-major", "-DFAULT_MAJOR"),
        build("broken-nan", "-DFAULT_NAN"),
    );
    let tmux = Tmux::start_with("plugins", &[], &["--plugin", &major, "--plugin", &nan]);
    tmux.wait_for("built for plugin ABI 2.");
    tmux.keys(&["Tab", "Tab", "Tab", "Tab"]);
    tmux.wait_for("grad-cam →");
    // The plugins' methods come last in the list: back from the first one.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tmux.pane().contains("broken-nan") {
        assert!(
            Instant::now() < deadline,
            "no broken-nan method:\n{}",
            tmux.pane()
        );
        tmux.keys(&["M"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.wait_for("failed and is disabled");
    tmux.keys(&["m"]);
    tmux.wait_for("saliency →");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), 0, "{}", tmux.pane());
    tmux.assert_restored();
}
