//! Issue #22.3: a finished image on disk is never paid for again. An image whose sidecar names
//! its task's fingerprint and whose content has the sidecar's hash is adopted (journaled) by
//! the next run, whether the journal lost its record (a failed write after the rename) or the
//! journal is gone altogether.

use std::time::Duration;

use nanobatch::mock::{Latency, MockConfig};

use crate::support::{Emulator, Workspace, assert_code, images, stderr, stdout};

/// Chains (`from:`) and a conversation (its turn is replayed by the next step), 22 tasks.
const MANIFEST: &str = r#"
version: 1
name: adopt
retry: { attempts: 3, initial: 50ms, max: 200ms }
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  packshot:
    vars: data/products.csv
    key: sku
    prompt: "packshot {{ key }} {{ ratio }}: a {{ color }} {{ name }}"
    sizes: ["1:1@512", "16:9@512"]
  lifestyle:
    vars: data/products.csv
    key: sku
    refs: [{ from: packshot, size: "1:1@512" }]
    prompt: "lifestyle {{ key }}: the {{ name }} in a sunny room"
    sizes: ["3:2@512"]
  story:
    vars: [{ key: one }, { key: two }]
    steps:
      - prompt: "story {{ key }} step one"
        sizes: ["1:1@512"]
      - prompt: "story {{ key }} step two"
"#;

const TASKS: u64 = 22;

fn status_json(ws: &Workspace) -> serde_json::Value {
    let out = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    assert_code(&out, 0);
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn nanos(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 1e9).round() as i64
}

fn plan_json(ws: &Workspace) -> (serde_json::Value, String) {
    let out = ws.cmd(None).args(["plan", "adopt.yaml", "-o", "out", "--json"]).output().unwrap();
    assert_code(&out, 0);
    (serde_json::from_str(&stdout(&out)).unwrap(), stderr(&out))
}

/// A deleted journal: every intact output is adopted, nothing is sent for it; an image edited
/// by hand or deleted is requested again (the edited one kept aside).
#[test]
fn a_deleted_journal_sends_nothing_for_intact_outputs() {
    let ws = Workspace::new();
    ws.write("adopt.yaml", MANIFEST);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "adopt.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, TASKS);
    let spent = nanos(&ws.report()["totals"]["cost_usd"]["actual"]);

    std::fs::remove_file(ws.out().join(".nanobatch/journal.jsonl")).unwrap();
    let (plan, notes) = plan_json(&ws);
    assert_eq!(plan["to_run"], 0, "{plan}");
    assert!(notes.contains("22 finished images on disk that no journal record named"), "{notes}");

    let again = ws.run(&emulator, "adopt.yaml", &[]);
    assert_code(&again, 0);
    assert_eq!(emulator.stats().requests, TASKS, "nothing sent: {}", stderr(&again));
    assert!(stderr(&again).contains("recorded now, not requested again"), "{}", stderr(&again));
    assert_eq!(ws.task_records().len() as u64, TASKS, "each adopted output is journaled");
    // What those images cost is known again, from their sidecars.
    let status = status_json(&ws);
    assert_eq!((status["succeeded"].as_u64(), nanos(&status["spent_usd"])), (Some(TASKS), spent));
    assert_eq!(nanos(&ws.report()["totals"]["cost_usd"]["actual"]), spent);

    // Without the journal once more, one image deleted and one edited: exactly those two (and
    // the lifestyle image made from the deleted packshot) are requested.
    std::fs::remove_file(ws.out().join(".nanobatch/journal.jsonl")).unwrap();
    let packshots = images(&ws.out().join("packshot"));
    let deleted = packshots.iter().find(|p| p.to_string_lossy().contains("MUG-001-1x1")).unwrap();
    let edited = packshots.iter().find(|p| p.to_string_lossy().contains("MUG-002-16x9")).unwrap();
    std::fs::remove_file(deleted).unwrap();
    std::fs::write(edited, b"edited by hand").unwrap();
    let third = ws.run(&emulator, "adopt.yaml", &[]);
    assert_code(&third, 0);
    assert_eq!(emulator.stats().requests, TASKS + 3, "{}", stderr(&third));
    let kept = nanobatch::checkpoint::superseded::all_files(&ws.out());
    assert!(kept.iter().any(|f| std::fs::read(f).is_ok_and(|b| b == b"edited by hand")), "{kept:?}");
}

/// The journal write fails after the image and sidecar were renamed into place (the journal is
/// left as a failed write leaves it: cut back to its last whole record, the request's `sent`
/// record in it). The next run adopts that image and sends only what never ran.
#[test]
fn an_image_whose_journal_record_was_lost_is_adopted_not_paid_again() {
    let ws = Workspace::new();
    ws.write("adopt.yaml", MANIFEST);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "adopt.yaml", &["-j", "1"]), 0);
    let spent = nanos(&ws.report()["totals"]["cost_usd"]["actual"]);

    // The write of the 5th task record fails: the run stops there, so the tasks after it were
    // never sent and their files never written.
    let journal = ws.out().join(".nanobatch/journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let is_task = |l: &str| l.contains(r#""t":"task""#);
    let cut = lines.iter().enumerate().filter(|(_, l)| is_task(l)).nth(4).unwrap().0;
    let lost: serde_json::Value = serde_json::from_str(lines[cut]).unwrap();
    let mut never_ran = 0;
    for later in lines[cut + 1..].iter().filter(|l| is_task(l)) {
        let record: serde_json::Value = serde_json::from_str(later).unwrap();
        for output in record["outputs"].as_array().unwrap() {
            for key in ["path", "sidecar"] {
                std::fs::remove_file(ws.out().join(output[key].as_str().unwrap())).unwrap();
            }
        }
        never_ran += 1;
    }
    std::fs::write(&journal, lines[..cut].join("\n") + "\n").unwrap();
    assert!(lines[cut - 1].contains(r#""t":"sent""#), "the lost record's request was journaled");
    let before = status_json(&ws);
    assert!(nanos(&before["possibly_billed_usd"]) > 0, "its request counts as possibly billed: {before}");

    // A new emulator: what it sees is what the resumed run sent.
    let emulator = Emulator::start(MockConfig::default());
    let resumed = ws.run(&emulator, "adopt.yaml", &["-j", "1"]);
    assert_code(&resumed, 0);
    assert_eq!(emulator.stats().requests, never_ran, "only what never ran is sent: {}", stderr(&resumed));
    let sidecar = ws.out().join(lost["outputs"][0]["sidecar"].as_str().unwrap());
    let sidecar: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(sidecar).unwrap()).unwrap();
    let prompt = sidecar["prompt"].as_str().unwrap();
    let sent: Vec<String> = emulator.stats().fingerprints.values().map(|log| log.prompt.clone()).collect();
    assert!(!sent.iter().any(|p| prompt.starts_with(p.as_str())), "{prompt:?} was sent again: {sent:?}");
    let adopted = ws.task_records().into_iter().find(|r| r["id"] == lost["id"]).expect("journaled");
    assert_eq!((&adopted["fp"], &adopted["outputs"][0]["path"]), (&lost["fp"], &lost["outputs"][0]["path"]));
    assert_eq!((&adopted["cost_usd"], &adopted["attempts"]), (&lost["cost_usd"], &lost["attempts"]));
    // Its request is settled at the sidecar's cost: spent as before, nothing possibly billed.
    let after = status_json(&ws);
    assert_eq!((nanos(&after["spent_usd"]), nanos(&after["possibly_billed_usd"])), (spent, 0), "{after}");
}

/// A real journal write failure after the rename: the state directory sits on a tiny file
/// system that is filled while the request is in flight, so the image and sidecar land and the
/// task record cannot be written (exit 2). Needs root to mount a tmpfs; skipped otherwise.
#[cfg(target_os = "linux")]
#[test]
fn a_journal_write_that_fails_after_the_rename_costs_nothing_on_the_next_run() {
    use std::io::Write;
    if !crate::resume::nix_is_root() {
        return;
    }
    let ws = Workspace::new();
    // One task whose record is longer than a page (its id carries a 4,200-character key), so
    // that it cannot slip into the free end of the journal's last page once the disk is full.
    ws.write(
        "one.yaml",
        &format!(
            "version: 1\njobs:\n  packshot:\n    model: gemini-3.1-flash-image-preview\n    vars: [{{ sku: {} }}]\n    key: sku\n    prompt: packshot\n    sizes: [\"1:1@512\"]\n    output: packshot/one\n",
            "K".repeat(4200)
        ),
    );
    // The state directory is the mount point (a link out of the output directory is refused).
    let state = ws.out().join(".nanobatch");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        return;
    }
    let small = crate::resume::Unmount(state);
    let config = MockConfig { latency: Latency::Fixed(Duration::from_millis(1500)), ..MockConfig::default() };
    let emulator = Emulator::start(config);
    let mut child = ws.spawn_run(&emulator, "one.yaml", &["-j", "1"]);
    // The `sent` record is fsynced before the request leaves (and the emulator holds it for
    // 1.5 s): once it is in the journal, fill the disk.
    let journal = small.0.join("journal.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&journal).is_ok_and(|j| j.contains(r#""t":"sent""#)) {
        assert!(std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(), "nothing sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let filler_path = small.0.join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    let _ = filler.sync_all();
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("journal"), "{}", stderr(&out));
    let made = images(&ws.out());
    assert_eq!(made.len(), 1, "the answered image landed: {}", stderr(&out));
    assert!(made[0].with_extension("json").is_file());
    assert!(!std::fs::read_to_string(&journal).unwrap().contains(r#""t":"task""#));

    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    let resumed = ws.run(&emulator, "one.yaml", &["-j", "1"]);
    assert_code(&resumed, 0);
    assert_eq!(emulator.stats().requests, 1, "nothing sent again: {}", stderr(&resumed));
    assert!(stderr(&resumed).contains("1 finished image on disk"), "{}", stderr(&resumed));
    assert_eq!(ws.task_records().len(), 1);
    drop(small);
}
