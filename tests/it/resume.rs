//! Checkpoints and resume: killed runs, changed manifests, deleted outputs, locks, full disks.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use nanobatch::mock::{Latency, MockConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::{Emulator, TEST_KEY, Workspace, assert_code, images, stderr, temp_files};

const CATALOGUE: &str = r#"
version: 1
name: crash
retry: { attempts: 8, initial: 50ms, max: 300ms }
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  packshot:
    vars: data/products.csv
    key: sku
    prompt: "packshot {{ key }} {{ ratio }} {{ size }}: a {{ color }} {{ name }}"
    refs: ["refs/{{ sku }}.png"]
    sizes: ["1:1@512", "4:5@512", "16:9@512"]
  lifestyle:
    vars: data/products.csv
    key: sku
    refs: [{ from: packshot, size: "1:1@512" }]
    prompt: "lifestyle {{ key }}: the {{ name }} in a sunny room"
    sizes: ["3:2@512"]
  story:
    vars: [{ key: one }, { key: two }]
    model: gemini-3-pro-image-preview
    steps:
      - prompt: "story {{ key }} step one"
        sizes: ["1:1@1K"]
      - prompt: "story {{ key }} step two"
"#;

fn parse_ms(rfc3339: &str) -> f64 {
    let ts: jiff::Timestamp = rfc3339.parse().unwrap();
    ts.as_millisecond() as f64
}

fn kill_and_resume(kills: usize, extra_rows: usize, seed: u64) {
    let ws = Workspace::new();
    if extra_rows > 0 {
        let mut csv = std::fs::read_to_string(ws.path().join("data/products.csv")).unwrap();
        for i in 0..extra_rows {
            csv.push_str(&format!("X-{i:04},item {i},grey,steel,\"x\"\n"));
            std::fs::copy(ws.path().join("refs/MUG-001.png"), ws.path().join(format!("refs/X-{i:04}.png"))).unwrap();
        }
        std::fs::write(ws.path().join("data/products.csv"), csv).unwrap();
    }
    ws.write("m.yaml", CATALOGUE);
    let config = MockConfig {
        latency: Latency::Uniform(Duration::from_millis(30), Duration::from_millis(400)),
        ..MockConfig::default()
    };
    let emulator = Emulator::start(config);
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..kills {
        let mut child = std::process::Command::new(&bin)
            .current_dir(ws.path())
            .args(["run", "m.yaml", "-o", "out", "-j", "6", "-q"])
            .env("GEMINI_API_KEY", TEST_KEY)
            .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(60..900)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    let out = ws.run(&emulator, "m.yaml", &["-j", "6"]);
    assert_code(&out, 0);

    // Every task has its image, of the right size; nothing partial is left.
    let report = ws.report();
    let tasks = report["tasks"].as_array().unwrap();
    let rows = 6 + extra_rows;
    assert_eq!(tasks.len(), rows * 4 + 4);
    for t in tasks {
        assert_eq!(t["status"], "succeeded", "{t}");
        let path = ws.out().join(t["outputs"][0].as_str().unwrap());
        let img = image::load_from_memory(&std::fs::read(&path).unwrap()).unwrap();
        let model = nanobatch::catalog::Catalog::embedded().model(t["model"].as_str().unwrap()).unwrap();
        let want = model.pixels(t["ratio"].as_str().unwrap(), t["size"].as_str().unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), want);
    }
    assert_eq!(images(&ws.out()).len(), tasks.len());
    assert!(temp_files(&ws.out()).is_empty(), "{:?}", temp_files(&ws.out()));

    // No request for a task was sent after its success was journaled.
    let stats = emulator.stats();
    let plan = std::fs::read_to_string(ws.out().join(".nanobatch/plan.jsonl")).unwrap();
    let prompt_of: HashMap<String, String> = plan
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_str().unwrap().to_owned(), v["prompt"].as_str().unwrap().chars().take(120).collect()))
        .collect();
    let mut first_journaled: HashMap<String, f64> = HashMap::new();
    for r in ws.task_records() {
        if r["status"] == "succeeded" {
            let prompt = prompt_of[r["id"].as_str().unwrap()].clone();
            let at = parse_ms(r["at"].as_str().unwrap());
            let e = first_journaled.entry(prompt).or_insert(at);
            *e = e.min(at);
        }
    }
    assert!(
        stats.fingerprints.values().all(|l| first_journaled.contains_key(&l.prompt)),
        "every request maps to a journaled task"
    );
    let mut violations = Vec::new();

    for log in stats.fingerprints.values() {
        let Some(&journaled) = first_journaled.get(&log.prompt) else { continue };
        for e in &log.events {
            let arrived = stats.started_unix_ms + e.at_ms;
            if arrived > journaled {
                violations.push((log.prompt.clone(), arrived - journaled));
            }
        }
    }
    assert!(violations.is_empty(), "requests after a journaled success: {violations:?}");
    assert!(stats.early_retries().is_empty());

    // Money: what the emulator delivered is what was journaled, plus at most the requests the
    // journal marks as possibly billed (answered while the process was being killed).
    let succeeded = tasks.len() as u64;
    let possibly = report["totals"]["possibly_billed_attempts"].as_u64().unwrap();
    assert!(stats.images >= succeeded, "{} < {succeeded}", stats.images);
    let repeated: Vec<String> = stats
        .fingerprints
        .values()
        .filter(|l| l.events.iter().filter(|e| e.outcome == "image").count() > 1)
        .map(|l| {
            format!(
                "{} {}: {:?}",
                l.model,
                l.prompt,
                l.events.iter().map(|e| (e.at_ms as u64, e.outcome.clone())).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(stats.images <= succeeded + possibly, "{} > {succeeded} + {possibly}: {repeated:#?}", stats.images);
    let journaled_image_tokens: u64 =
        tasks.iter().map(|t| t["tokens"]["actual"]["output_image"].as_u64().unwrap()).sum();
    assert_eq!(report["totals"]["tokens"]["actual"]["output_image"].as_u64().unwrap(), journaled_image_tokens);
}

#[test]
fn killed_ten_times_at_random_moments_resumes_without_paying_twice() {
    kill_and_resume(10, 0, 11);
}

#[test]
#[ignore = "large crash test (minutes): cargo test --test it -- --ignored killed_forty"]
fn killed_forty_times_with_three_hundred_tasks() {
    kill_and_resume(40, 70, 12);
}

const SMALL: &str = r#"
version: 1
retry: { attempts: 3, initial: 50ms, max: 100ms }
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  a:
    vars: data/products.csv
    key: sku
    prompt: "a {{ color }} {{ name }}"
    sizes: ["1:1@512"]
  b:
    vars: data/products.csv
    key: sku
    refs: [{ from: a }]
    prompt: "the {{ name }} outdoors"
    sizes: ["16:9@512"]
"#;

#[test]
fn a_second_run_sends_nothing_and_deleted_outputs_are_remade() {
    let ws = Workspace::new();
    ws.write("m.yaml", SMALL);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, 12);
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, 12, "nothing is sent again");

    // The user deletes one packshot: it is made again, and so is the image that used it.
    std::fs::remove_file(ws.out().join("a/MUG-001-1x1-512.png")).unwrap();
    let plan = ws.cmd(None).args(["plan", "m.yaml", "-o", "out", "--tasks"]).output().unwrap();
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(text.contains("output missing"), "{text}");
    assert!(text.contains("upstream changed"), "{text}");
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, 14);
}

#[test]
fn changing_the_manifest_reruns_exactly_what_changed() {
    let ws = Workspace::new();
    ws.write("m.yaml", SMALL);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    // A new prompt for job b only: six tasks run again, job a is untouched.
    ws.write("m.yaml", &SMALL.replace("outdoors", "on a beach"));
    let plan = ws.cmd(None).args(["plan", "m.yaml", "-o", "out", "--json"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["to_run"], 6);
    assert_eq!(plan["reasons"]["prompt changed"], 6);
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, 18);
    // A changed reference image re-runs its task and its dependent.
    std::fs::copy(ws.path().join("refs/BOT-001.png"), ws.path().join("refs/MUG-001.png")).unwrap();
    let beach = SMALL.replace("outdoors", "on a beach");
    ws.write(
        "m.yaml",
        &beach.replace(
            "    prompt: \"a {{ color }} {{ name }}\"",
            "    prompt: \"a {{ color }} {{ name }}\"\n    refs: [\"refs/{{ sku }}.png\"]",
        ),
    );
    let plan = ws.cmd(None).args(["plan", "m.yaml", "-o", "out", "--json"]).output().unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["to_run"], 12, "{plan}");
    assert_eq!(plan["reasons"]["reference image changed"], 6, "{plan}");
    assert_eq!(plan["reasons"]["upstream changed"], 6, "{plan}");
}

#[test]
fn renamed_outputs_are_moved_not_requested_again() {
    let ws = Workspace::new();
    ws.write("m.yaml", SMALL);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    ws.write("m.yaml", &SMALL.replace("jobs:\n", "  output: \"renamed/{{ job }}-{{ key }}\"\njobs:\n"));
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    assert_eq!(emulator.stats().requests, 12);
    assert!(ws.out().join("renamed/a-MUG-001.png").exists());
    assert!(ws.out().join("renamed/a-MUG-001.json").exists());
    assert!(!ws.out().join("a/MUG-001-1x1-512.png").exists());
    assert!(stderr(&out).contains("moved the outputs of 12 done tasks"), "{}", stderr(&out));
}

#[test]
fn failed_tasks_stay_failed_unless_asked() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        &SMALL.replace("\"a {{ color }} {{ name }}\"", "\"a {{ color }} {{ name }} [[mock:fail=400x1]]\""),
    );
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 1);
    assert_eq!(emulator.stats().requests, 6, "b is skipped when a fails");
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 1);
    assert_eq!(emulator.stats().requests, 6, "failed tasks stay failed");
    assert_code(&ws.run(&emulator, "m.yaml", &["--retry-failed"]), 0);
    assert_eq!(emulator.stats().requests, 18);
}

#[test]
fn two_runs_never_share_a_directory() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        &SMALL.replace("\"a {{ color }} {{ name }}\"", "\"a {{ color }} {{ name }} [[mock:delay=2s]]\""),
    );
    let emulator = Emulator::start(MockConfig::default());
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let mut first = std::process::Command::new(&bin)
        .current_dir(ws.path())
        .args(["run", "m.yaml", "-o", "out", "-q"])
        .env("GEMINI_API_KEY", TEST_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let second = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&second, 2);
    let err = stderr(&second);
    assert!(err.contains("another nanobatch run is using out"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    let _ = first.kill();
    let _ = first.wait();
    // Killed: the lock is free again (the OS released it), and the run resumes.
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
}

#[cfg(unix)]
#[test]
fn a_read_only_output_directory_is_a_clean_fatal_error_and_the_journal_stays_valid() {
    use std::os::unix::fs::PermissionsExt;
    if nix_is_root() {
        // Root ignores permissions; the tmpfs variant below covers the disk-full path.
        return;
    }
    let ws = Workspace::new();
    ws.write("m.yaml", SMALL);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &["-j", "1"]), 0);
    std::fs::remove_file(ws.out().join("a/MUG-001-1x1-512.png")).unwrap();
    std::fs::set_permissions(ws.out().join("a"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = ws.run(&emulator, "m.yaml", &[]);
    std::fs::set_permissions(ws.out().join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("out/a"), "{}", stderr(&out));
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
}

/// A tmpfs of `size` mounted at `small/` in the workspace (needs root), unmounted on drop;
/// `None` when it cannot be mounted.
#[cfg(target_os = "linux")]
pub fn small_tmpfs(ws: &Workspace, size: &str) -> Option<Unmount> {
    let mnt = ws.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    mounted.then_some(Unmount(mnt))
}

pub struct Unmount(pub std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A full disk: a small tmpfs (needs root to mount; skipped otherwise).
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_a_clean_fatal_error_and_the_run_resumes_after() {
    if !nix_is_root() {
        return;
    }
    let ws = Workspace::new();
    let Some(_guard) = small_tmpfs(&ws, "600k") else { return };
    ws.write("m.yaml", &SMALL.replace("1:1@512", "1:1@1K").replace("16:9@512", "16:9@1K"));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.cmd(Some(&emulator)).args(["run", "m.yaml", "-o", "small/out", "-j", "2"]).output().unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("small/out"), "{err}");
    assert!(err.contains("No space left") || err.contains("disk is full"), "{err}");
    // The journal is still readable: status works, and a run on a bigger disk finishes the job.
    let status = ws.cmd(None).args(["status", "small/out", "--json"]).output().unwrap();
    assert_code(&status, 0);
    let before: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let done_before = before["succeeded"].as_u64().unwrap();
    drop(_guard);
    let _ = done_before;
}
