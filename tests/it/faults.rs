//! Every failure class against the emulator: the task's terminal state, the attempts made, and
//! from the emulator's own log, that no retry came before the advertised delay and nothing was
//! requested again after it succeeded.

use nanobatch::mock::{MockConfig, Stats};

use crate::support::{Emulator, Workspace, assert_code, stderr};

/// One task per prompt, fast retries.
pub(crate) fn manifest(prompts: &[&str], retry: &str) -> String {
    let mut m = format!(
        "version: 1\nretry: {retry}\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n"
    );
    for (i, p) in prompts.iter().enumerate() {
        m.push_str(&format!("  t{i}:\n    prompt: \"{p}\"\n    sizes: [\"1:1@512\"]\n"));
    }
    m
}

pub(crate) const FAST: &str = "{ attempts: 4, initial: 50ms, max: 200ms }";

pub(crate) fn task(report: &serde_json::Value, i: usize) -> serde_json::Value {
    report["tasks"].as_array().unwrap().iter().find(|t| t["job"] == format!("t{i}")).unwrap().clone()
}

fn check_invariants(stats: &Stats) {
    assert!(stats.early_retries().is_empty(), "retries before the advertised delay: {:?}", stats.early_retries());
    assert!(stats.repeated_successes().is_empty(), "requested again after success: {:?}", stats.repeated_successes());
}

fn events(stats: &Stats) -> Vec<Vec<String>> {
    stats
        .fingerprints
        .values()
        .map(|l| l.events.iter().map(|e| format!("{}:{}", e.status, e.outcome)).collect())
        .collect()
}

#[test]
fn transient_server_errors_are_retried_until_success() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["a [[mock:fail=503x2]]", "b [[mock:fail=500x1]]", "c [[mock:fail=504x1]]"], FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let report = ws.report();
    assert_eq!(task(&report, 0)["attempts"], 3);
    assert_eq!(task(&report, 1)["attempts"], 2);
    assert_eq!(task(&report, 2)["attempts"], 2);
    assert_eq!(report["totals"]["retries"], 4);
    // The API's 503 and 500 come before the model runs; its 504 (DEADLINE_EXCEEDED) after it
    // started, which may have been billed.
    assert_eq!(report["totals"]["possibly_billed_attempts"], 1, "only the 504 may have been billed");
    assert!(task(&report, 2)["cost_usd"]["possibly_billed"].as_f64().unwrap() > 0.0);
    let stats = emulator.stats();
    assert_eq!(stats.by_status["503"], 2);
    assert_eq!(stats.by_status["200"], 3);
    check_invariants(&stats);
}

#[test]
fn rate_limits_honour_retry_info_and_retry_after() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["a [[mock:fail=429x1,retry=1200ms]]", "b [[mock:fail=503x1,retry=1s]]"], FAST));
    let emulator = Emulator::start(MockConfig::default());
    let started = std::time::Instant::now();
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1200));
    let stats = emulator.stats();
    for log in stats.fingerprints.values() {
        assert_eq!(log.count, 2);
        let gap = log.events[1].at_ms - log.events[0].at_ms;
        let advertised = log.events[0].retry_after_ms.unwrap();
        assert!(gap >= advertised, "retried after {gap} ms; the server asked for {advertised} ms");
    }
    check_invariants(&stats);
    assert!(stderr(&out).contains("429"), "{}", stderr(&out));
}

#[test]
fn permanent_errors_fail_at_once_with_the_servers_message() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["a [[mock:fail=400x9]]", "b"], FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let report = ws.report();
    let failed = task(&report, 0);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["error_class"], "invalid_request");
    assert!(failed["error_message"].as_str().unwrap().contains("invalid argument"), "{failed}");
    assert_eq!(task(&report, 1)["status"], "succeeded");
    check_invariants(&emulator.stats());
}

#[test]
fn lost_connections_are_possibly_billed_and_retried() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["a [[mock:drop=1]]", "b [[mock:truncate=1]]"], FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let report = ws.report();
    for i in 0..2 {
        let t = task(&report, i);
        assert_eq!(t["status"], "succeeded");
        assert_eq!(t["attempts"], 2);
        assert!(t["cost_usd"]["possibly_billed"].as_f64().unwrap() > 0.0, "{t}");
    }
    assert_eq!(report["totals"]["possibly_billed_attempts"], 2);
    let stats = emulator.stats();
    assert_eq!((stats.dropped, stats.truncated), (1, 1));
    check_invariants(&stats);
    // The journal keeps each unknown outcome with its possible cost.
    let unknown: Vec<_> =
        ws.journal().into_iter().filter(|r| r["t"] == "attempt" && r["class"] == "outcome_unknown").collect();
    assert_eq!(unknown.len(), 2);
    assert!(unknown.iter().all(|r| r["possibly_billed_usd"].as_f64().unwrap() > 0.0));
}

#[test]
fn timeouts_are_unknown_outcomes_retried_within_policy() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["slow [[mock:delay=3s]]"], "{ attempts: 2, initial: 50ms, max: 100ms }"));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--timeout", "1s"]);
    assert_code(&out, 1);
    let report = ws.report();
    let t = task(&report, 0);
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error_class"], "outcome_unknown");
    assert_eq!(t["attempts"], 2);
    assert_eq!(report["totals"]["possibly_billed_attempts"], 2);
}

#[test]
fn a_200_without_an_image_is_its_own_outcome_with_the_text_kept() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        &manifest(&["a [[mock:safety]]", "b [[mock:text-only]]", "c [[mock:blocked]]", "d [[mock:no-image]]"], FAST),
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let report = ws.report();
    for i in 0..4 {
        let t = task(&report, i);
        assert_eq!(t["status"], "no_image", "{t}");
        assert_eq!(t["attempts"], 1, "not retried unless the manifest asks");
    }
    assert!(task(&report, 0)["error_message"].as_str().unwrap().contains("IMAGE_SAFETY"));
    assert_eq!(task(&report, 0)["finish_reason"], "IMAGE_SAFETY");
    assert!(task(&report, 1)["error_message"].as_str().unwrap().contains("text only"));
    assert!(task(&report, 2)["error_message"].as_str().unwrap().contains("prompt blocked"));
    let text = ws.task_records().into_iter().find(|r| r["status"] == "no_image" && r["text"].is_string()).unwrap();
    assert!(text["text"].as_str().unwrap().contains("can't generate"));
    check_invariants(&emulator.stats());
}

#[test]
fn no_image_is_retried_when_the_manifest_asks() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        &manifest(&["a [[mock:safety=1]]"], "{ attempts: 3, initial: 50ms, max: 100ms, on_no_image: true }"),
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let t = task(&ws.report(), 0);
    assert_eq!(t["status"], "succeeded");
    assert_eq!(t["attempts"], 2);
}

#[test]
fn a_daily_quota_stops_the_run_resumably() {
    let ws = Workspace::new();
    let prompts: Vec<String> = (0..6).map(|i| format!("p{i}")).chain(["q [[mock:daily-quota]]".to_owned()]).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    ws.write("m.yaml", &manifest(&refs, FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["-j", "1"]);
    assert_code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("daily quota"), "{err}");
    assert!(err.contains("resume with: nanobatch run m.yaml -o out"), "{err}");
    let status = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["pending"].as_u64().unwrap() >= 1);
    assert_eq!(status["failed"], 0, "the quota is not the task's fault");
}

#[test]
fn an_endless_body_is_refused_without_exhausting_memory() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(&["x [[mock:endless]]"], FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let t = task(&ws.report(), 0);
    assert_eq!(t["error_class"], "response_too_large");
    assert_eq!(t["attempts"], 1);
}

#[test]
fn the_budget_is_never_crossed() {
    let ws = Workspace::new();
    let prompts: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    ws.write("m.yaml", &manifest(&refs, FAST));
    // Each task costs 747 × $60/M + thinking + text ≈ $0.0453; twelve ≈ $0.54.
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--max-cost", "0.2", "-j", "3"]);
    assert_code(&out, 4);
    let report = ws.report();
    let spent = report["totals"]["cost_usd"]["actual"].as_f64().unwrap();
    assert!(spent <= 0.2 + 1e-9, "spent {spent}");
    // Each request reserves its worst case (≈ $0.143: the image and 32,768 thinking tokens), so
    // the run stops once spent + $0.143 would cross $0.2.
    assert!(spent > 0.2 - 0.1433, "it did run until near the budget: {spent}");
    assert!(stderr(&out).contains("budget"), "{}", stderr(&out));
    // Resuming with the same budget sends nothing more: the meter does not reset.
    let before = emulator.stats().requests;
    let again = ws.run(&emulator, "m.yaml", &["--max-cost", "0.2"]);
    assert_code(&again, 4);
    assert_eq!(emulator.stats().requests, before);
}

#[test]
fn fail_fast_stops_at_the_first_failure() {
    let ws = Workspace::new();
    let prompts: Vec<String> =
        std::iter::once("bad [[mock:fail=400x9]]".to_owned()).chain((0..10).map(|i| format!("p{i}"))).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    ws.write("m.yaml", &manifest(&refs, FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--fail-fast", "-j", "1"]);
    assert_code(&out, 1);
    assert_eq!(emulator.stats().requests, 1, "{:?}", events(&emulator.stats()));
}
