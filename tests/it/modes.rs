//! Files are for the team: every file nanobatch writes (images, sidecars, reports, state, the
//! files `init` writes) gets the mode the umask gives any tool's output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, TEST_KEY, Workspace};

/// `nanobatch ARGS` in `dir` under `umask`; the shell sets the mask, as a user's would.
fn under_umask(umask: &str, dir: &Path, emulator: &Emulator, args: &[&str]) {
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(&bin)
        .args(args)
        .current_dir(dir)
        .env_remove("GOOGLE_API_KEY")
        .env("GEMINI_API_KEY", TEST_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every file and directory under `dir`, with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            let path = entry.path();
            out.push((path.strip_prefix(dir).unwrap().to_path_buf(), meta.permissions().mode() & 0o777, meta.is_dir()));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn assert_modes_follow(umask: u32) {
    let ws = Workspace::new();
    let emulator = Emulator::start(MockConfig::default());
    let mask = format!("{umask:03o}");
    under_umask(&mask, ws.path(), &emulator, &["init", "team"]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/multi-turn.yaml");
    std::fs::copy(example, ws.path().join("multi-turn.yaml")).unwrap();
    under_umask(&mask, ws.path(), &emulator, &["run", "multi-turn.yaml", "-o", "out"]);
    under_umask(&mask, ws.path(), &emulator, &["report", "out"]);

    let mut seen = Vec::new();
    for root in ["team", "out"] {
        for (path, mode, is_dir) in modes(&ws.path().join(root)) {
            let want = if is_dir { 0o777 & !umask } else { 0o666 & !umask };
            assert_eq!(mode, want, "{root}/{} is {mode:03o} under umask {mask}", path.display());
            seen.push(format!("{root}/{}", path.display()));
        }
    }
    // What was checked: the kinds of file a run writes.
    for expected in [
        "team/nanobatch.yaml",
        "team/data/products.csv",
        "team/refs/brand-style.png",
        "out/report.json",
        "out/report.html",
        "out/.nanobatch/journal.jsonl",
        "out/.nanobatch/plan.jsonl",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} missing from {seen:#?}");
    }
    for (kind, suffix) in [("image", ".png"), ("sidecar", ".json"), ("turn", "")] {
        let dir_part = if kind == "turn" { "/.nanobatch/turns/" } else { "" };
        assert!(seen.iter().any(|s| s.contains(dir_part) && s.ends_with(suffix)), "no {kind} in {seen:#?}");
    }
}

#[test]
fn files_follow_a_umask_of_022() {
    assert_modes_follow(0o022);
}

#[test]
fn files_follow_a_umask_of_027() {
    assert_modes_follow(0o027);
}
