//! Bounds and honest errors before anything is paid for: output folders checked before the first
//! request, timeouts and flag values refused with the invalid-input code, runaway prompts and
//! symlinked references refused at validation, implausible usage flagged, short keys redacted.

use std::path::Path;

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code, nanobatch, stderr, stdout};

const ONE: &str = "version: 1\nretry: { attempts: 3, initial: 20ms, max: 50ms }\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n  a:\n    prompt: \"PROMPT\"\n    sizes: [\"1:1@512\"]\n";

fn one(prompt: &str) -> String {
    ONE.replace("PROMPT", prompt)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

// ---- #22.4: output folders are checked before the first request

/// Two jobs writing into `a/` and `b/` of the output directory.
const TWO_DIRS: &str = "version: 1\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\n  sizes: [\"1:1@512\"]\njobs:\n  a:\n    prompt: one\n  b:\n    prompt: two\n";

#[cfg(unix)]
#[test]
fn an_output_folder_linked_out_of_the_output_directory_is_refused_before_anything_is_sent() {
    let ws = Workspace::new();
    ws.write("m.yaml", TWO_DIRS);
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.out()).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), ws.out().join("a")).unwrap();
    std::os::unix::fs::symlink(ws.path().join("nowhere"), ws.out().join("b")).unwrap();
    let emulator = Emulator::start(MockConfig::default());
    for _ in 0..2 {
        let out = ws.run(&emulator, "m.yaml", &[]);
        assert_code(&out, 3);
        let err = stderr(&out);
        assert!(err.contains("2 output folders cannot be written; nothing was sent"), "{err}");
        assert!(err.contains("out/a resolves outside the output directory"), "{err}");
        assert!(err.contains("out/b is a symbolic link to nothing"), "{err}");
    }
    assert_eq!(emulator.stats().requests, 0, "nothing paid for, on any rerun");
    assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing written there");
    // `plan` says the same.
    let plan = ws.cmd(None).args(["plan", "m.yaml", "-o", "out"]).output().unwrap();
    assert_code(&plan, 3);
    assert!(stderr(&plan).contains("out/a resolves outside"), "{}", stderr(&plan));
}

#[test]
fn an_output_folder_that_is_a_file_is_refused_before_anything_is_sent() {
    let ws = Workspace::new();
    ws.write("m.yaml", TWO_DIRS);
    ws.write("out/a", "not a folder");
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("out/a exists and is not a folder"), "{}", stderr(&out));
    assert_eq!(emulator.stats().requests, 0);
}

/// A read-only file system (a read-only tmpfs; needs root to mount) and, for other users, a
/// read-only folder: refused before anything is sent.
#[cfg(target_os = "linux")]
#[test]
fn a_read_only_output_folder_is_refused_before_anything_is_sent() {
    let ws = Workspace::new();
    ws.write("m.yaml", TWO_DIRS);
    let emulator = Emulator::start(MockConfig::default());
    let (dir, _guard) = if crate::resume::nix_is_root() {
        let mnt = ws.path().join("ro");
        std::fs::create_dir_all(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            return;
        }
        ("ro/out".to_owned(), Some(crate::resume::Unmount(mnt)))
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(ws.path().join("locked/out/a")).unwrap();
        std::fs::set_permissions(ws.path().join("locked/out/a"), std::fs::Permissions::from_mode(0o555)).unwrap();
        ("locked/out".to_owned(), None)
    };
    let out = ws.cmd(Some(&emulator)).args(["run", "m.yaml", "-o", &dir]).output().unwrap();
    assert_code(&out, 3);
    assert!(stderr(&out).contains("is not writable"), "{}", stderr(&out));
    assert_eq!(emulator.stats().requests, 0);
}

// ---- #22.9: timeouts and invalid flag values

#[test]
fn a_timeout_below_the_minimum_and_invalid_flag_values_exit_with_the_invalid_input_code() {
    let ws = Workspace::new();
    ws.write("m.yaml", &one("x"));
    let emulator = Emulator::start(MockConfig::default());
    for timeout in ["0s", "1ms", "999ms"] {
        let out = ws.run(&emulator, "m.yaml", &["--timeout", timeout]);
        assert_code(&out, 3);
        assert!(stderr(&out).contains("is below the minimum of 1s"), "{}", stderr(&out));
    }
    for bad in [&["-j", "many"][..], &["--mode", "sometimes"], &["--max-cost", "lots"], &["--no-such-flag"]] {
        let out = ws.run(&emulator, "m.yaml", bad);
        assert_code(&out, 3);
    }
    assert_eq!(emulator.stats().requests, 0);
    assert_code(&nanobatch().args(["run", "--help"]).output().unwrap(), 0);
    assert_code(&nanobatch().args(["--version"]).output().unwrap(), 0);
    assert_code(&nanobatch().output().unwrap(), 3);
    // The manifest's timeout is held to the same minimum.
    ws.write("t.yaml", &one("x").replace("version: 1\n", "version: 1\nendpoint: { timeout: 10ms }\n"));
    let out = nanobatch().current_dir(ws.path()).args(["validate", "t.yaml"]).output().unwrap();
    assert_code(&out, 3);
    assert!(stderr(&out).contains("t.yaml:2:"), "{}", stderr(&out));
    assert!(stderr(&out).contains("below the minimum"), "{}", stderr(&out));
}

// ---- #22.12: runaway prompts, oversized requests, references through symlinks, usage

#[test]
fn a_prompt_that_renders_beyond_what_any_model_reads_is_refused_at_validation() {
    let ws = Workspace::new();
    // Six times the engine's largest repeated string: 600 MB.
    ws.write("m.yaml", &one(&"{{ 'x' * 100000000 }}".repeat(6)));
    let started = std::time::Instant::now();
    let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "it did not render 600 MB");
    let err = stderr(&out);
    assert!(err.contains("renders more than 8 MiB"), "{err}");
    assert!(err.contains("jobs.a"), "{err}");
}

#[test]
fn a_request_beyond_the_apis_limit_is_refused_at_validation() {
    let ws = Workspace::new();
    let mut big = std::fs::read(ws.path().join("refs/MUG-001.png")).unwrap();
    big.resize(17 << 20, 0);
    std::fs::write(ws.path().join("refs/big.png"), big).unwrap();
    let refs = ["refs/big.png"; 6].join(", ");
    ws.write("m.yaml", &one("x").replace("    sizes:", &format!("    refs: [{refs}]\n    sizes:")));
    let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("would be 136 MB"), "{err}");
    assert!(err.contains("the API accepts at most 100 MB"), "{err}");
}

#[cfg(unix)]
#[test]
fn references_that_lead_out_of_the_manifests_folder_through_a_symlink_are_refused_unless_allowed() {
    let ws = Workspace::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(ws.path().join("refs/MUG-001.png"), outside.path().join("secret.png")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.png"), ws.path().join("refs/LINK.png")).unwrap();
    ws.write("rows.csv", "sku\nMUG-001\nLINK\n");
    let manifest = "version: 1\njobs:\n  a:\n    model: gemini-3.1-flash-image-preview\n    vars: rows.csv\n    prompt: x\n    refs: [\"refs/{{ sku }}.png\"]\n  g:\n    model: gemini-3.1-flash-image-preview\n    prompt: y\n    refs: [\"refs/L*.png\"]\n";
    ws.write("m.yaml", manifest);
    let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert_eq!(err.matches("leads out of the manifest's folder through a symlink").count(), 2, "{err}");
    assert!(err.contains("m.yaml:7:"), "the variable's reference: {err}");
    assert!(err.contains("m.yaml:11:"), "the glob's: {err}");
    assert!(err.contains("reference_roots"), "{err}");
    // Written literally, the path is the author's: allowed (like a literal `..`).
    ws.write(
        "lit.yaml",
        &manifest.replace("refs/{{ sku }}.png", "refs/LINK.png").replace("refs/L*.png", "refs/MUG-001.png"),
    );
    assert_code(&nanobatch().current_dir(ws.path()).args(["validate", "lit.yaml"]).output().unwrap(), 0);
    // Allowed explicitly.
    let allowed = format!(
        "version: 1\nreference_roots: [\"{}\"]\n{}",
        outside.path().display(),
        &manifest["version: 1\n".len()..]
    );
    ws.write("ok.yaml", &allowed);
    let out = nanobatch().current_dir(ws.path()).args(["validate", "ok.yaml"]).output().unwrap();
    assert_code(&out, 0);
}

#[test]
fn usage_beyond_any_models_limits_is_flagged_not_spent() {
    let ws = Workspace::new();
    ws.write("m.yaml", &one("inflated [[mock:usage=huge]]"));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--max-cost", "1"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("implausible usage"), "{err}");
    let report = ws.report();
    let task = &report["tasks"][0];
    let actual = report["totals"]["cost_usd"]["actual"].as_f64().unwrap();
    assert_eq!(actual, task["cost_usd"]["estimated"].as_f64().unwrap(), "counted at the estimate");
    assert!(actual < 0.1, "{actual}");
    assert_eq!(task["usage_reported"]["output_image"].as_u64(), Some(u64::MAX), "{task}");
    let status = ws.cmd(None).args(["status", "out", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["spent_usd"].as_f64(), Some(actual), "{status}");
}

// ---- #22.8: a short key is redacted everywhere

#[test]
fn a_short_key_echoed_by_the_server_never_appears_anywhere() {
    let ws = Workspace::new();
    // `auth: query` puts it in the URL (percent-encoded); the server echoes it decoded.
    for (key, auth) in [("abc1234", "header"), ("a/b+c=1", "query")] {
        let manifest = one("echo [[mock:echo-key]]")
            .replace("version: 1\n", &format!("version: 1\nendpoint: {{ auth: {auth} }}\n"));
        ws.write("m.yaml", &manifest);
        let emulator = Emulator::start(MockConfig::default());
        let out = ws
            .cmd(Some(&emulator))
            .env("GEMINI_API_KEY", key)
            .env("NANOBATCH_LOG", "debug")
            .args(["-v", "run", "m.yaml", "-o", "out", "--retry-failed"])
            .output()
            .unwrap();
        assert_code(&out, 1);
        assert_eq!(emulator.stats().by_status.get("400"), Some(&1), "the server echoed it");
        assert!(stderr(&out).contains("API key [redacted] is not valid"), "{}", stderr(&out));
        let json =
            ws.cmd(Some(&emulator)).env("GEMINI_API_KEY", key).args(["status", "out", "--json"]).output().unwrap();
        let encoded: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        for needle in [key.to_owned(), encoded] {
            for o in [&out, &json] {
                assert!(!contains(&o.stdout, needle.as_bytes()), "stdout leaks {needle}: {}", stdout(o));
                assert!(!contains(&o.stderr, needle.as_bytes()), "stderr leaks {needle}: {}", stderr(o));
            }
            for f in files_under(&ws.out()) {
                assert!(!contains(&std::fs::read(&f).unwrap(), needle.as_bytes()), "{} leaks {needle}", f.display());
            }
        }
    }
}

// ---- #22.11: a journal write cut short by a full disk leaves no torn line

#[cfg(target_os = "linux")]
#[test]
fn a_journal_write_that_fills_the_disk_is_cut_back_to_its_last_whole_record() {
    use std::io::Write;

    use nanobatch::checkpoint::journal::{self, JournalWriter};
    use nanobatch::checkpoint::records::{EndRecord, Record};
    if !crate::resume::nix_is_root() {
        return;
    }
    let ws = Workspace::new();
    let Some(guard) = crate::resume::small_tmpfs(&ws, "64k") else { return };
    let path = guard.0.join("journal.jsonl");
    let mut writer = JournalWriter::open(&path).unwrap();
    writer.append(&Record::End(EndRecord { at: "then".into(), status: "completed".into() }));
    writer.commit().unwrap();
    let whole = std::fs::read(&path).unwrap();
    // Fill the disk but for a few hundred bytes.
    let mut filler = std::fs::File::create(guard.0.join("filler")).unwrap();
    while filler.write_all(&[0u8; 512]).is_ok() {}
    let _ = filler.sync_all();
    for _ in 0..50 {
        writer.append(&Record::End(EndRecord { at: "x".repeat(100), status: "interrupted".into() }));
    }
    let error = writer.commit().unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), whole, "the partial write was removed");
    let contents = journal::read(&path).unwrap().unwrap();
    assert!(contents.notes.is_empty(), "{:?}", contents.notes);
    drop(guard);
}
