//! Server-side batches against the emulator's Batch and Files APIs.

use std::process::Stdio;
use std::time::Duration;

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, TEST_KEY, Workspace, assert_code, images, stderr};

fn fast_batches() -> MockConfig {
    MockConfig {
        batch_pending: Duration::from_millis(100),
        batch_running: Duration::from_millis(150),
        ..MockConfig::default()
    }
}

/// `rows` rows × 5 sizes; sizes differ so that a result landing on the wrong task would show as
/// a size mismatch.
fn manifest(rows: usize, extra_rows: &str) -> String {
    let rows: String = (0..rows).map(|i| format!("      - {{ key: \"r{i:03}\", thing: \"thing {i}\" }}\n")).collect();
    format!(
        r#"
version: 1
retry: {{ attempts: 4, initial: 20ms, max: 50ms }}
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  grid:
    vars:
{rows}{extra_rows}    prompt: "a {{{{ thing }}}}"
    sizes: ["1:1@512", "4:5@512", "16:9@512", "9:16@512", "21:9@512"]
"#
    )
}

fn check_images(ws: &Workspace, report: &serde_json::Value) {
    let catalog = nanobatch::catalog::Catalog::embedded();
    for t in report["tasks"].as_array().unwrap() {
        if t["status"] != "succeeded" {
            continue;
        }
        assert!(t.get("size_mismatch").is_none(), "{t}");
        let path = ws.out().join(t["outputs"][0].as_str().unwrap());
        let img = image::open(&path).unwrap();
        let want = catalog
            .model(t["model"].as_str().unwrap())
            .unwrap()
            .pixels(t["ratio"].as_str().unwrap(), t["size"].as_str().unwrap());
        assert_eq!(Some((img.width(), img.height())), want);
        let sidecar: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(sidecar["task_id"], t["id"]);
        assert_eq!(sidecar["tier"], "batch");
    }
}

#[test]
fn five_hundred_tasks_in_batch_mode_at_half_price() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(100, ""));
    let emulator = Emulator::start(fast_batches());
    let out = ws.run(&emulator, "m.yaml", &["--mode", "batch", "--poll-interval", "200ms"]);
    assert_code(&out, 0);
    let report = ws.report();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 500);
    check_images(&ws, &report);
    assert_eq!(images(&ws.out()).len(), 500);
    for t in tasks {
        assert_eq!(t["cost_usd"]["actual"], t["cost_usd"]["estimated_batch"], "batch tasks are priced at 50%: {t}");
    }
    let stats = emulator.stats();
    assert_eq!(stats.batches_created, 10, "jobs of at most 50 requests");
    assert!(stats.files_uploaded >= 1, "large jobs go through the Files API");
    assert_eq!(stats.requests, 0, "no interactive request");
    assert_eq!(stats.batch_requests, 500);
}

#[test]
fn per_line_errors_and_out_of_order_results_land_on_the_right_tasks() {
    let ws = Workspace::new();
    let extra = "      - { key: \"bad\", thing: \"thing [[mock:fail=400x9]]\" }\n      - { key: \"flaky\", thing: \"thing [[mock:fail=503x1]]\" }\n";
    ws.write("m.yaml", &manifest(4, extra));
    let emulator = Emulator::start(fast_batches());
    let out = ws.run(&emulator, "m.yaml", &["--mode", "batch", "--poll-interval", "200ms"]);
    assert_code(&out, 1);
    let report = ws.report();
    check_images(&ws, &report);
    for t in report["tasks"].as_array().unwrap() {
        match t["key"].as_str().unwrap() {
            "bad" => {
                assert_eq!(t["status"], "failed");
                assert_eq!(t["error_class"], "invalid_request");
            }
            "flaky" => {
                assert_eq!(t["status"], "succeeded");
                assert_eq!(t["attempts"], 2, "a retryable line error goes into the next round");
            }
            _ => assert_eq!(t["status"], "succeeded"),
        }
    }
}

#[test]
fn expired_and_failed_jobs_send_their_tasks_back() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(30, ""));
    let config = MockConfig { batch_expire_every: 3, batch_fail_every: 4, ..fast_batches() };
    let emulator = Emulator::start(config);
    let out = ws.run(&emulator, "m.yaml", &["--mode", "batch", "--poll-interval", "200ms"]);
    assert_code(&out, 0);
    let report = ws.report();
    assert!(report["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "succeeded"));
    check_images(&ws, &report);
    let err = stderr(&out);
    assert!(err.contains("BATCH_STATE_EXPIRED"), "{err}");
    assert!(err.contains("BATCH_STATE_FAILED"), "{err}");
}

#[test]
fn interactive_fallback_runs_expired_tasks_interactively() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(4, ""));
    let config = MockConfig { batch_expire_every: 1, ..fast_batches() };
    let emulator = Emulator::start(config);
    let out = ws.run(&emulator, "m.yaml", &["--mode", "batch", "--interactive-fallback", "--poll-interval", "200ms"]);
    assert_code(&out, 0);
    let stats = emulator.stats();
    assert_eq!(stats.requests, 20, "every task ran interactively after its job expired");
    let report = ws.report();
    let t = &report["tasks"][0];
    assert_eq!(t["cost_usd"]["actual"], t["cost_usd"]["estimated"], "interactive price");
}

#[test]
fn a_killed_run_reattaches_to_its_jobs_instead_of_submitting_again() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(20, ""));
    let config = MockConfig {
        batch_pending: Duration::from_secs(2),
        batch_running: Duration::from_millis(500),
        ..MockConfig::default()
    };
    let emulator = Emulator::start(config);
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let mut child = std::process::Command::new(&bin)
        .current_dir(ws.path())
        .args(["run", "m.yaml", "-o", "out", "--mode", "batch", "--poll-interval", "200ms", "-q"])
        .env("GEMINI_API_KEY", TEST_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until both jobs exist, then kill the process while they run.
    let started = std::time::Instant::now();
    while emulator.stats().batches_created < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(emulator.stats().batches_created, 2);
    let status = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["open_batches"].as_array().unwrap().len(), 2, "{status}");

    let out = ws.run(&emulator, "m.yaml", &["--mode", "batch", "--poll-interval", "200ms"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("reattaching"), "{}", stderr(&out));
    assert_eq!(emulator.stats().batches_created, 2, "nothing submitted again");
    assert_eq!(emulator.stats().batch_requests, 100);
    check_images(&ws, &ws.report());
}

#[test]
fn cancel_cancels_the_open_jobs_and_the_next_run_does_the_work() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(6, ""));
    let config = MockConfig { batch_pending: Duration::from_secs(60), ..MockConfig::default() };
    let emulator = Emulator::start(config);
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    let mut child = std::process::Command::new(&bin)
        .current_dir(ws.path())
        .args(["run", "m.yaml", "-o", "out", "--mode", "batch", "-q"])
        .env("GEMINI_API_KEY", TEST_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while emulator.stats().batches_created < 1 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let out = ws.cmd(Some(&emulator)).args(["cancel", "out"]).output().unwrap();
    assert_code(&out, 0);
    assert!(stderr(&out).contains("cancelled batches/"), "{}", stderr(&out));
    let status = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["open_batches"].as_array().unwrap().len(), 0, "{status}");
    // Interactively now.
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    assert_eq!(emulator.stats().requests, 30);
}

#[test]
fn auto_mode_batches_first_steps_and_continues_conversations_interactively() {
    let ws = Workspace::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/multi-turn.yaml");
    std::fs::copy(src, ws.path().join("multi-turn.yaml")).unwrap();
    let emulator = Emulator::start(fast_batches());
    let out = ws.run(&emulator, "multi-turn.yaml", &["--mode", "auto", "--poll-interval", "200ms"]);
    assert_code(&out, 0);
    let stats = emulator.stats();
    assert_eq!(stats.batch_requests, 2, "the two first steps went to the Batch API");
    assert_eq!(stats.requests, 4, "steps two and three ran interactively");
    assert_eq!(stats.by_status.get("400"), None, "the signatures from the batch responses were accepted");
    let report = ws.report();
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "succeeded");
        let first = t["step"] == "s1";
        let batch_price = t["cost_usd"]["actual"] == t["cost_usd"]["estimated_batch"];
        assert_eq!(first, batch_price, "{t}");
    }
}
