//! The budget: what a stop says adds up and agrees with `status` and the report, and real usage
//! (more thinking than the catalogue assumes) never takes the spend over `--max-cost`.

use nanobatch::mock::{MockConfig, Stats};

use crate::support::{Emulator, Workspace, assert_code, stderr, stdout};

/// `n` tasks of gemini-3.1-flash-image-preview at 512, each prompt ending in `suffix`.
fn manifest(n: usize, suffix: &str, extra: &str) -> String {
    let mut m = format!(
        "version: 1\n{extra}retry: {{ attempts: 3, initial: 50ms, max: 200ms }}\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n"
    );
    for i in 0..n {
        m.push_str(&format!("  t{i}:\n    prompt: \"picture {i} {suffix}\"\n    sizes: [\"1:1@512\"]\n"));
    }
    m
}

/// Dollars in a JSON figure, as whole nanodollars (every price is a whole number of them).
fn nanos(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e9).round() as i64
}

/// What the emulator billed, at gemini-3.1-flash-image-preview's prices, in nanodollars.
fn billed_nanos(stats: &Stats) -> i64 {
    let u = &stats.usage;
    let u2 = &stats.undelivered_usage;
    // Per token: input $0.50/M = 500 n$, text and thinking $3/M = 3,000 n$, image $60/M = 60,000 n$.
    let per = |u: &nanobatch::mock::stats::UsageTotals| -> i64 {
        500 * u.prompt as i64 + 3_000 * (u.output_text + u.thoughts) as i64 + 60_000 * u.output_image as i64
    };
    per(u) + per(u2)
}

/// The `stopping` event of a `--json` run.
fn stop_event(out: &std::process::Output) -> serde_json::Value {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "stopping")
        .unwrap_or_else(|| panic!("no stopping event in\n{}\n{}", stdout(out), stderr(out)))
}

fn status_json(ws: &Workspace) -> serde_json::Value {
    let out = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// `$0.1234` figures after `label` in `text`.
fn dollars_after(text: &str, label: &str) -> f64 {
    let at = text.find(label).unwrap_or_else(|| panic!("`{label}` not in {text}"));
    let rest = &text[at + label.len()..];
    let start = rest.find('$').unwrap() + 1;
    let end = rest[start..].find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or(rest.len(), |e| start + e);
    rest[start..end].parse().unwrap()
}

/// The final `stopped:` line of a run.
fn stopped_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines().find(|l| l.contains("stopped: budget")).unwrap_or_else(|| panic!("no budget stop in\n{err}")).to_owned()
}

/// Issue #15.4: the stop states what was spent (this run and before), and the message, `status`,
/// `report.json` and the exit agree to the picodollar.
#[test]
fn a_budget_stop_states_what_was_spent_and_agrees_with_status_and_the_report() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(14, "", ""));
    let emulator = Emulator::start(MockConfig::default());

    // A first run stops at its budget with requests in flight when it decided to stop.
    let first = ws.run(&emulator, "m.yaml", &["--max-cost", "0.3", "-j", "8", "--json"]);
    assert_code(&first, 4);
    let line = stopped_line(&first);
    let shown = dollars_after(&line, "budget reached:");
    assert!((shown - status_json(&ws)["spent_usd"].as_f64().unwrap()).abs() < 0.00005, "{line}");
    let event = stop_event(&first);
    let figures = &event["budget"];
    let status = status_json(&ws);
    let report = ws.report();
    let spent = nanos(&figures["spent_before_usd"]) + nanos(&figures["spent_usd"]);
    assert!(spent > 0, "it ran: {event}");
    assert_eq!(spent, nanos(&status["spent_usd"]), "stop event and status: {event} / {status}");
    assert_eq!(spent, nanos(&report["totals"]["cost_usd"]["actual"]), "stop event and report");
    assert_eq!(nanos(&figures["reserved_usd"]), 0, "nothing in flight when the run stopped");
    assert!(spent + nanos(&figures["next_usd"]) > 300_000_000, "the next request could cross: {figures}");
    assert!(spent <= 300_000_000);

    // A second run with a larger budget: the message counts what the first run spent too.
    let second = ws.run(&emulator, "m.yaml", &["--max-cost", "0.45"]);
    assert_code(&second, 4);
    let line = stopped_line(&second);
    let status = status_json(&ws);
    let report = ws.report();
    let total = dollars_after(&line, "budget reached:");
    assert!((total - status["spent_usd"].as_f64().unwrap()).abs() < 0.00005, "{line} / status {status}");
    assert!((total - report["totals"]["cost_usd"]["actual"].as_f64().unwrap()).abs() < 0.00005, "{line}");
    let before = dollars_after(&line, "this run, ");
    assert!((before - spent as f64 / 1e9).abs() < 0.00005, "the first run's spend is named: {line}");
    // The terms add up to the total shown.
    let sum = total + dollars_after(&line, "+ ") + dollars_after(&line, "possibly billed + ");
    assert!((sum - dollars_after(&line, "= ")).abs() < 0.00015, "{line}");
}

/// Issue #22.2: answers with far more thinking than the catalogue's 120 tokens. Each request
/// reserves its worst case (the model's 32,768-token output limit), so what the server billed
/// stays within the budget at any concurrency, and the report says the same.
#[test]
fn real_usage_never_crosses_the_budget() {
    for (thinking, budget, jobs) in [(3_000, "0.6", "4"), (20_000, "0.5", "4")] {
        let ws = Workspace::new();
        ws.write("m.yaml", &manifest(16, &format!("[[mock:thinking={thinking}]]"), ""));
        let emulator = Emulator::start(MockConfig::default());
        let out = ws.run(&emulator, "m.yaml", &["--max-cost", budget, "-j", jobs]);
        assert_code(&out, 4);
        let stats = emulator.stats();
        let billed = billed_nanos(&stats);
        let limit = (budget.parse::<f64>().unwrap() * 1e9) as i64;
        assert!(billed <= limit, "thinking {thinking}: the server billed ${} of ${budget}", billed as f64 / 1e9);
        assert!(stats.images >= 3, "it ran until near the budget: {} images", stats.images);
        let report = ws.report();
        assert_eq!(nanos(&report["totals"]["cost_usd"]["actual"]), billed, "the report counts what was billed");
        let line = stopped_line(&out);
        assert!(line.contains("reserved in flight"), "{line}");
        assert!((dollars_after(&line, "budget reached:") - billed as f64 / 1e9).abs() < 0.00005, "{line}");
    }
}

/// An answer beyond the model's output limit (which the server should never bill) raises the
/// worst case for the rest of the run: the budget is crossed by at most the requests in flight
/// when the first such answer came, and the stop says the budget was exceeded.
#[test]
fn usage_beyond_the_output_limit_raises_the_worst_case() {
    let ws = Workspace::new();
    ws.write("m.yaml", &manifest(12, "[[mock:thinking=100000]]", ""));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--max-cost", "1.0", "-j", "1"]);
    assert_code(&out, 4);
    let stats = emulator.stats();
    // Each answer bills 747 × $60/M + 100,000 × $3/M ≈ $0.345; after the first, each request
    // reserves as much, so at -j 1 the spend stays within $1.
    assert!(billed_nanos(&stats) <= 1_000_000_000, "billed ${}", billed_nanos(&stats) as f64 / 1e9);
    assert_eq!(stats.images, 2, "two fit once the worst case is known");
    assert!(stderr(&out).contains("beyond the model's output limit"), "{}", stderr(&out));
}

/// A job's `max_output_tokens` is sent as `maxOutputTokens` and is what the budget reserves, so
/// a tight budget buys more images than with the model's 32,768-token limit, and still holds.
#[test]
fn a_configured_output_bound_is_sent_and_reserved() {
    let images_within = |bound: &str| {
        let ws = Workspace::new();
        let extra = if bound.is_empty() { String::new() } else { format!("  max_output_tokens: {bound}\n") };
        let m = manifest(12, "[[mock:thinking=3000]]", "")
            .replace("  modalities: [image]\n", &format!("  modalities: [image]\n{extra}"));
        ws.write("m.yaml", &m);
        let emulator = Emulator::start(MockConfig::default());
        let out = ws.run(&emulator, "m.yaml", &["--max-cost", "0.3", "-j", "4"]);
        assert_code(&out, 4);
        let stats = emulator.stats();
        assert!(billed_nanos(&stats) <= 300_000_000, "bound {bound:?}: billed ${}", billed_nanos(&stats) as f64 / 1e9);
        stats.images
    };
    let unbounded = images_within("");
    let bounded = images_within("4000");
    assert!(bounded > unbounded, "{bounded} images with a 4,000-token bound, {unbounded} without");
    // The emulator stops the thinking where the request says.
    let ws = Workspace::new();
    let m = manifest(2, "[[mock:thinking=100000]]", "")
        .replace("  modalities: [image]\n", "  modalities: [image]\n  max_output_tokens: 2000\n");
    ws.write("m.yaml", &m);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().usage.thoughts, 4000, "2 answers of at most 2,000 thinking tokens");
}
