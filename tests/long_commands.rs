//! Long commands run as jobs: Ctrl-C stops them within a batch with status 130 and
//! only whole files behind, and a terminal (and only a terminal) gets a progress bar.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file of `dir`: no temporary `.part` file, every PNG decodes whole.
fn assert_whole_files(dir: &Path) -> usize {
    let mut pngs = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "a partial file was left: {name}");
        if name.ends_with(".png") {
            image::open(&path).unwrap_or_else(|e| panic!("{name} is not a whole PNG: {e}"));
            pngs += 1;
        }
    }
    pngs
}

/// SIGINT while `explain` works through many scenes: it stops early with 130, says
/// so on one line, and leaves only whole files, listed in its summary.
#[test]
fn ctrl_c_stops_explain_with_only_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(["explain", "--demo", "100000", "-m", "smoothgrad", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once it is surely mid-way: after its second finished scene.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("explain printed nothing").unwrap();
        assert!(line.starts_with("scene"), "{line}");
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = wait_or_kill(&mut child, "explain did not stop after SIGINT");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let pngs = assert_whole_files(&out);
    assert!(pngs >= 4, "{pngs} files for the two finished scenes");
    assert!(pngs < 1000, "it ran on for {pngs} files");
    // The summary lists what the run did, and every file it lists is there.
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let images = summary.as_array().unwrap();
    assert!(images.len() >= 2, "{} images in the summary", images.len());
    for image in images {
        assert!(
            Path::new(image["grid"].as_str().unwrap()).is_file(),
            "{image}"
        );
    }
}

/// The progress bar draws on a terminal: `explain` with its stderr on a pseudo
/// terminal writes the bar there; into a pipe (the other tests) it writes none.
#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    let (master, slave) = pseudo_terminal();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(["explain", "--demo", "24", "-m", "smoothgrad", "-o"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let reader = read_terminal(master);
    assert!(child.wait().unwrap().success());
    let drawn = reader.join().unwrap();
    assert!(
        drawn.contains("explain [") && drawn.contains("/24"),
        "no progress bar on the terminal: {drawn:?}"
    );

    let piped = Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(["explain", "--demo", "3", "-m", "saliency", "-o"])
        .arg(dir.path().join("piped"))
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&piped.stderr)
    );
}

/// `--show` on a terminal that never answers the graphics queries (a silent pseudo
/// terminal) gives up on them and prints half blocks, instead of hanging.
#[test]
fn show_on_a_silent_terminal_falls_back_to_half_blocks() {
    let (master, slave) = pseudo_terminal();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_unitscope"))
        .args(["explain", "--demo", "1", "-m", "saliency", "--show", "-o"])
        .arg(dir.path())
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let reader = read_terminal(master);
    // The queries time out in well under a second.
    let status = wait_or_kill(&mut child, "explain --show hung on a silent terminal");
    let drawn = reader.join().unwrap();
    assert!(status.success(), "{drawn}");
    assert!(
        drawn.contains('\u{2584}') || drawn.contains('\u{2580}'),
        "no half blocks: {drawn:?}"
    );
}

/// The exit status of `child`, or a failure saying `hung` after two minutes: a
/// hang detector, not a speed test.
fn wait_or_kill(child: &mut std::process::Child, hung: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{hung}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything written to a pseudo terminal's slave side, read from `master` on a
/// thread until the child closes its side (the read then ends with EIO).
fn read_terminal(master: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut terminal = std::fs::File::from(master);
        let mut seen = Vec::new();
        let _ = terminal.read_to_end(&mut seen);
        String::from_utf8_lossy(&seen).into_owned()
    })
}

/// A pseudo terminal of 24 x 120 cells: (master, slave).
fn pseudo_terminal() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own; the name buffer may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}
