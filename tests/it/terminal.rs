//! What a run prints: the opening line on a real terminal, counts that agree between the
//! progress line and the summary, retries numbered as `retry.attempts` counts them, and
//! `--json`'s last event with the totals.

use std::process::Command;

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, TEST_KEY, Workspace, assert_code, stderr, stdout};

/// Two images, two refusals, one permanent failure, and two 429s before a success.
const MIXED: &str = r#"
version: 1
name: mixed
retry: { attempts: 2, initial: 10ms, max: 20ms }
defaults: { model: gemini-3.1-flash-image-preview, modalities: [image], sizes: ["1:1@512"] }
jobs:
  shots:
    vars:
      - { key: ok, p: "a lighthouse" }
      - { key: quota, p: "a harbour [[mock:fail=429x2,retry=10ms]]" }
      - { key: refused-1, p: "a boat [[mock:safety]]" }
      - { key: refused-2, p: "a buoy [[mock:safety]]" }
      - { key: broken, p: "a pier [[mock:fail=400x9]]" }
    prompt: "{{ p }}"
"#;

#[test]
fn counts_agree_between_progress_summary_and_json_and_429s_are_retried_apart() {
    let ws = Workspace::new();
    ws.write("m.yaml", MIXED);
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let err = stderr(&out);
    // The summary and the last progress line use the same words and counts.
    assert!(err.contains("mixed: 2 succeeded, 1 failed, 2 without image in "), "{err}");
    let progress = err.lines().rfind(|l| l.contains(" done · ")).unwrap();
    assert!(progress.contains("· 1 failed · 2 without image"), "{progress}");
    // A 429 is retried apart from `retry.attempts: 2`: never "attempt 3".
    assert_eq!(err.matches("rate-limited retry shots/quota/1:1@512").count(), 2, "{err}");
    assert!(!err.contains("(attempt 3"), "{err}");
    assert!(!err.contains("attempt 2 failed"), "attempts: 2 leaves no retry after the second: {err}");

    // A run where nothing runs says what is already done, not "0 succeeded".
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("mixed: nothing to run: 2 already done, 3 failed in an earlier run"), "{err}");
    assert!(!err.contains("0 succeeded"), "{err}");

    // `--json`: the last event is `finished`, with the totals and the reports.
    let out = ws.run(&emulator, "m.yaml", &["--json", "--retry-failed"]);
    assert_code(&out, 1);
    let text = stdout(&out);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished", "{text}");
    assert_eq!(last["status"], "completed_with_failures");
    let totals = &last["totals"];
    assert_eq!(totals["tasks"], 5);
    assert_eq!(totals["already_done"], 2);
    assert_eq!((&totals["succeeded"], &totals["failed"], &totals["no_image"]), (&0.into(), &1.into(), &2.into()));
    assert!(totals["spent_usd"].is_number() || totals["spent_usd"].is_string(), "{totals}");
    let reports: Vec<&str> = totals["reports"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reports.iter().any(|r| r.ends_with("report.json")), "{reports:?}");
    assert_eq!(text.matches("\"event\":\"finished\"").count(), 1, "one finished event: {text}");

    // Times for people are to the second.
    let out = ws.cmd(None).args(["status", "out"]).output().unwrap();
    let text = stdout(&out) + &stderr(&out);
    let last_run = text.lines().find(|l| l.contains("last run:")).unwrap_or_default().to_owned();
    assert!(last_run.ends_with(" UTC") && !last_run.contains('.'), "{text}");
}

#[test]
fn the_opening_line_appears_on_a_real_terminal() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        "version: 1\nname: tty\ndefaults: { model: gemini-3.1-flash-image-preview, modalities: [image] }\n\
         jobs:\n  a:\n    prompt: a lighthouse\n    sizes: [\"1:1@512\", \"16:9@512\"]\n",
    );
    let emulator = Emulator::start(MockConfig::default());
    let bin = assert_cmd::cargo::cargo_bin("nanobatch");
    // `script` gives the run a pseudo-terminal: the progress bars' path, not the plain lines.
    let out = Command::new("script")
        .args(["-qfec", &format!("{} run m.yaml -o out", bin.display()), "/dev/null"])
        .current_dir(ws.path())
        .env_remove("GOOGLE_API_KEY")
        .env_remove("NO_COLOR")
        .env("GEMINI_API_KEY", TEST_KEY)
        .env("GOOGLE_GEMINI_BASE_URL", emulator.url())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(transcript.contains("running 2 of 2 tasks (0 already done)"), "{transcript}");
    assert!(transcript.contains("estimate $"), "{transcript}");
    // It is the terminal path: the summary is there, the plain periodic line is not.
    assert!(transcript.contains("tty: 2 succeeded"), "{transcript}");
    assert!(!transcript.contains(" done · "), "plain progress lines on a terminal: {transcript}");
}
