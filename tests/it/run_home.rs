//! One home per run: the default output directory resolves from the manifest's folder, so the
//! same manifest finds its journal from any working directory; a run left where the old rule
//! put it (under the current directory) is found, never started over.

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code, hint_command, images, paste, stderr};

const MANIFEST: &str = r#"
version: 1
name: home
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  a:
    vars: [{ key: one }, { key: two }, { key: three }]
    prompt: "item {{ key }}"
    sizes: ["1:1@512", "16:9@512"]
"#;

#[test]
fn the_same_manifest_finds_its_run_from_any_working_directory() {
    let ws = Workspace::new();
    ws.write("project/m.yaml", MANIFEST);
    std::fs::create_dir_all(ws.path().join("elsewhere")).unwrap();
    let emulator = Emulator::start(MockConfig::default());
    let first =
        ws.cmd(Some(&emulator)).current_dir(ws.path().join("project")).args(["run", "m.yaml"]).output().unwrap();
    assert_code(&first, 0);
    assert_eq!(emulator.stats().requests, 6);
    assert_eq!(images(&ws.path().join("project/out/home")).len(), 6);

    for (cwd, manifest) in [("elsewhere", "../project/m.yaml"), (".", "project/m.yaml")] {
        let again = ws.cmd(Some(&emulator)).current_dir(ws.path().join(cwd)).args(["run", manifest]).output().unwrap();
        assert_code(&again, 0);
        assert_eq!(emulator.stats().requests, 6, "run from {cwd} sent nothing:\n{}", stderr(&again));
        assert!(!ws.path().join(cwd).join("out").exists(), "no second home under {cwd}");
    }
    let plan =
        ws.cmd(None).current_dir(ws.path().join("elsewhere")).args(["plan", "../project/m.yaml"]).output().unwrap();
    assert_code(&plan, 0);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("6 done"), "{}", String::from_utf8_lossy(&plan.stdout));
}

#[test]
fn a_run_under_the_old_default_is_found_and_each_printed_way_on_works() {
    let ws = Workspace::new();
    ws.write("project/m.yaml", MANIFEST);
    let emulator = Emulator::start(MockConfig::default());
    // Where the old rule put it: out/<name> under the directory the command was typed in.
    let old = ws.cmd(Some(&emulator)).args(["run", "project/m.yaml", "-o", "out/home"]).output().unwrap();
    assert_code(&old, 0);
    assert_eq!(emulator.stats().requests, 6);

    let refused = ws.cmd(Some(&emulator)).args(["run", "project/m.yaml"]).output().unwrap();
    assert_code(&refused, 3);
    assert_eq!(emulator.stats().requests, 6, "nothing sent");
    assert!(!ws.path().join("project/out").exists(), "nothing written at the new default");
    let err = stderr(&refused);
    assert!(err.contains("out/home"), "{err}");
    let plan = ws.cmd(None).args(["plan", "project/m.yaml"]).output().unwrap();
    assert_code(&plan, 0);
    assert!(stderr(&plan).contains("warning: this manifest's earlier run is in out/home"), "{}", stderr(&plan));

    // Way one, pasted as printed: continue it where it is.
    let continued = paste(ws.path(), &hint_command(&err, "continue that run"));
    assert_code(&continued, 0);
    assert_eq!(emulator.stats().requests, 6, "{}", stderr(&continued));

    // Way two: move it next to the manifest; from then on the plain command finds it.
    let moved = paste(ws.path(), &hint_command(&err, "move it"));
    assert_code(&moved, 0);
    let plain = ws.cmd(Some(&emulator)).args(["run", "project/m.yaml"]).output().unwrap();
    assert_code(&plain, 0);
    assert_eq!(emulator.stats().requests, 6, "{}", stderr(&plain));
    assert_eq!(images(&ws.path().join("project/out/home")).len(), 6);
}
