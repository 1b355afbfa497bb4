//! The invalid corpus (tests/fixtures/invalid/*/manifest.yaml): each case exits 3 with a message
//! that names the place (snapshot-tested), never panics, and writes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::{nanobatch, stderr, stdout};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.clone());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn every_invalid_case_exits_3_names_the_place_and_writes_nothing() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.yaml").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let before = listing(&case);
        for verb in ["validate", "plan", "run"] {
            let mut cmd = nanobatch();
            cmd.current_dir(&case).env("GEMINI_API_KEY", "k").args([verb, "manifest.yaml"]);
            if verb == "run" {
                // Nothing may be sent: point at a closed port.
                cmd.env("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9");
            }
            let out = cmd.output().unwrap();
            let err = stderr(&out);
            assert_eq!(
                out.status.code(),
                Some(3),
                "{name} ({verb}) exited {:?}\n{err}\n{}",
                out.status.code(),
                stdout(&out)
            );
            assert!(!err.contains("panicked") && !err.contains("crashed"), "{name}: {err}");
            assert_eq!(listing(&case), before, "{name} ({verb}) wrote files");
            if verb == "validate" {
                assert!(err.contains("error:"), "{name}: {err}");
                insta::assert_snapshot!(format!("invalid__{name}"), err);
            }
        }
    }
}
