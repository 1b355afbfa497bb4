//! Paid outputs are never silently lost: earlier images are kept when new ones replace them
//! (and pruned only on request), tasks no longer in the manifest keep their spend and files in
//! every total, and `--fresh` deletes only what this manifest's runs wrote.

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code, stderr, stdout};

fn catalogue(prompt: &str) -> String {
    format!(
        r#"
version: 1
name: cat
retry: {{ attempts: 3, initial: 50ms, max: 200ms }}
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  lifestyle:
    vars: data/products.csv
    key: sku
    prompt: "{prompt}"
    sizes: ["16:9@512"]
"#
    )
}

fn status_json(ws: &Workspace) -> serde_json::Value {
    let out = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn json_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The output of the task of `sku` in the report.
fn output_of(report: &serde_json::Value, sku: &str) -> String {
    let task = report["tasks"].as_array().unwrap().iter().find(|t| t["key"] == sku).unwrap();
    task["outputs"][0].as_str().unwrap().to_owned()
}

/// A path as report.html shows it (escaped).
fn html_text(path: &str) -> String {
    path.replace('/', "&#x2f;")
}

fn nanos(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e9).round() as i64
}

/// Issue #15.7: editing a prompt and running again keeps the earlier image and its sidecar
/// (moved under `.nanobatch/superseded/<old fingerprint>/`), journals the move, lists it in
/// `status` and the report, and only `nanobatch prune` deletes it.
#[test]
fn an_edited_prompt_keeps_the_earlier_image_until_pruned() {
    let ws = Workspace::new();
    ws.write("m.yaml", &catalogue("the {{ name }} {{ sku }} in a sunny room"));
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    let rel = output_of(&ws.report(), "MUG-001");
    let image = std::fs::read(ws.out().join(&rel)).unwrap();
    let sidecar_rel = rel.replace(".png", ".json");
    let old_sidecar = json_file(&ws.out().join(&sidecar_rel));
    let old_fp = old_sidecar["fingerprint"].as_str().unwrap().to_owned();

    ws.write("m.yaml", &catalogue("the {{ name }} {{ sku }} on a rainy balcony"));
    let second = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&second, 0);
    let new_sidecar = json_file(&ws.out().join(&sidecar_rel));
    assert!(new_sidecar["prompt"].as_str().unwrap().contains("rainy balcony"));

    // The paid image and its sidecar, byte for byte, under the old fingerprint.
    let kept = ws.out().join(".nanobatch/superseded").join(&old_fp).join(&rel);
    assert_eq!(std::fs::read(&kept).unwrap(), image, "the earlier image is kept whole");
    assert!(stderr(&second).contains("kept 6 earlier images"), "{}", stderr(&second));
    let kept_sidecar = json_file(&kept.with_extension("json"));
    assert!(kept_sidecar["prompt"].as_str().unwrap().contains("sunny room"));
    let records: Vec<serde_json::Value> = ws.journal().into_iter().filter(|r| r["t"] == "superseded").collect();
    assert_eq!(records.len(), 6, "one record per earlier image");
    let mug = records.iter().find(|r| r["fp"] == old_fp.as_str()).expect("journaled under the old fingerprint");
    assert_eq!(mug["reason"], "changed");
    assert_eq!(mug["outputs"][0]["path"], format!(".nanobatch/superseded/{old_fp}/{rel}"));
    assert_eq!(mug["from"][0], rel.as_str());

    // Listed by status and the report.
    let status = ws.cmd(None).args(["status", "out"]).output().unwrap();
    assert!(stdout(&status).contains("superseded: 6 earlier images kept"), "{}", stdout(&status));
    assert_eq!(status_json(&ws)["superseded"].as_array().unwrap().len(), 6);
    let report = ws.report();
    let entry = report["superseded"].as_array().unwrap().iter().find(|s| s["fp"] == old_fp.as_str()).unwrap().clone();
    assert_eq!(entry["original"], rel.as_str());
    let html = std::fs::read_to_string(ws.out().join("report.html")).unwrap();
    assert!(html.contains("Earlier images") && html.contains(&html_text(&format!(".nanobatch/superseded/{old_fp}/"))));
    // The earlier version's spend stays in the totals.
    let status = status_json(&ws);
    assert_eq!(nanos(&report["totals"]["cost_usd"]["actual"]), nanos(&status["spent_usd"]));

    // Deleted only on request: not without --yes off a terminal, then for good.
    let refused = ws.cmd(None).args(["prune", "out"]).output().unwrap();
    assert_code(&refused, 3);
    assert!(kept.exists());
    let pruned = ws.cmd(None).args(["prune", "out", "--yes"]).output().unwrap();
    assert_code(&pruned, 0);
    assert!(stderr(&pruned).contains("deleted 12 files"), "{}", stderr(&pruned));
    assert!(!ws.out().join(".nanobatch/superseded").exists());
    assert!(status_json(&ws).get("superseded").is_none());
    assert!(ws.out().join(&rel).exists(), "the current image stays");
    assert_code(&ws.cmd(None).args(["report", "out"]).output().unwrap(), 0);
    assert!(ws.report().get("superseded").is_none());
}

/// Issue #15.6: after a CSV row is removed, its spend stays in every total (as the group "no
/// longer in the manifest"), its files are listed, and the run does not claim the report is
/// unchanged.
#[test]
fn a_removed_row_keeps_its_spend_and_files_in_every_total() {
    let ws = Workspace::new();
    ws.write("m.yaml", &catalogue("the {{ name }} {{ sku }} in a sunny room"));
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    let first = ws.report();
    let spent = nanos(&first["totals"]["cost_usd"]["actual"]);
    let removed_file = output_of(&first, "VAS-001");

    let csv = std::fs::read_to_string(ws.path().join("data/products.csv")).unwrap();
    let kept: Vec<&str> = csv.lines().filter(|l| !l.starts_with("VAS-001")).collect();
    std::fs::write(ws.path().join("data/products.csv"), kept.join("\n") + "\n").unwrap();
    let requests = emulator.stats().requests;
    let second = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&second, 0);
    assert_eq!(emulator.stats().requests, requests, "nothing is sent");
    assert!(!stderr(&second).contains("unchanged"), "the report changed: {}", stderr(&second));
    assert!(stderr(&second).contains("on 1 task no longer in the manifest"), "{}", stderr(&second));

    let report = ws.report();
    assert_eq!(nanos(&report["totals"]["cost_usd"]["actual"]), spent, "the report keeps the spend");
    assert_eq!(report["totals"]["tasks"]["total"], 5, "the plan's tasks");
    let group = &report["by_job"]["(no longer in the manifest)"];
    assert_eq!(group["tasks"]["succeeded"], 1);
    assert!(nanos(&group["cost_usd"]["actual"]) > 0);
    let by_job: i64 = report["by_job"].as_object().unwrap().values().map(|b| nanos(&b["cost_usd"]["actual"])).sum();
    assert_eq!(by_job, spent, "the groups add up to the total");
    let removed = &report["no_longer_in_manifest"][0];
    assert_eq!(removed["outputs"][0], removed_file.as_str());
    assert_eq!(removed["earlier_version"], false);

    let status = status_json(&ws);
    assert_eq!(nanos(&status["spent_usd"]), spent);
    assert_eq!(status["no_longer_in_manifest"][0]["files"][0], removed_file.as_str());
    let text = stdout(&ws.cmd(None).args(["status", "out"]).output().unwrap());
    assert!(text.contains("no longer in the manifest: 1 task,") && text.contains(&removed_file), "{text}");
    let html = std::fs::read_to_string(ws.out().join("report.html")).unwrap();
    assert!(html.contains("No longer in the manifest") && html.contains(&html_text(&removed_file)));
}

/// Issue #22.12 (`--fresh`): starting over deletes only the outputs this manifest's runs
/// recorded and that are still as recorded, inside the output directory; another manifest's
/// runs and files in the same directory, a user's file, and paths a tampered journal points
/// outside the directory are left alone.
#[test]
fn fresh_deletes_only_what_this_manifests_runs_wrote() {
    let ws = Workspace::new();
    ws.write("a.yaml", &catalogue("the {{ name }} {{ sku }} in a sunny room"));
    ws.write("b.yaml", &catalogue("the {{ name }} {{ sku }} at night").replace("lifestyle:", "night:"));
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "a.yaml", &[]), 0);
    assert_code(&ws.run(&emulator, "b.yaml", &[]), 0);
    let a_images = crate::support::images(&ws.out().join("lifestyle"));
    let b_images = crate::support::images(&ws.out().join("night"));
    assert_eq!((a_images.len(), b_images.len()), (6, 6));
    std::fs::write(ws.out().join("notes.txt"), "mine").unwrap();
    let outside = ws.path().join("outside.png");
    std::fs::write(&outside, "not nanobatch's").unwrap();
    // A journal line (as a tampered or foreign journal could hold) naming files outside.
    let journal = ws.out().join(".nanobatch/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    let forged = |path: &str| {
        format!(
            r#"{{"t":"task","id":"x","fp":"00","parts":"","status":"succeeded","attempts":1,"outputs":[{{"path":"{path}","sidecar":"{path}.json","blake3":"","bytes":15,"mtime_ns":0,"mime":"image/png","width":1,"height":1}}],"tier":"interactive","latency_ms":1,"at":"2026-01-01T00:00:00Z"}}"#
        )
    };
    text.push_str(&(forged("../outside.png") + "\n"));
    text.push_str(&(forged(&outside.display().to_string()) + "\n"));
    std::fs::write(&journal, text).unwrap();
    // One of b's images edited by hand: no longer the recorded file.
    std::fs::write(&b_images[0], b"edited").unwrap();

    let requests = emulator.stats().requests;
    let fresh = ws.run(&emulator, "b.yaml", &["--fresh", "--yes"]);
    assert_code(&fresh, 0);
    assert_eq!(emulator.stats().requests, requests + 6, "b runs again, a does not: {}", stderr(&fresh));
    assert!(outside.exists() && ws.out().join("notes.txt").exists());
    for a in &a_images {
        assert!(a.exists() && a.with_extension("json").exists(), "{} kept", a.display());
    }
    // The edited image was not deleted: it was kept aside when its task ran again.
    let kept: Vec<_> = nanobatch::checkpoint::superseded::all_files(&ws.out());
    assert!(kept.iter().any(|f| std::fs::read(f).is_ok_and(|b| b == b"edited")), "{kept:?}");
    // a's runs are still in the journal: running a sends nothing.
    let again = ws.run(&emulator, "a.yaml", &[]);
    assert_code(&again, 0);
    assert_eq!(emulator.stats().requests, requests + 6, "{}", stderr(&again));
}
