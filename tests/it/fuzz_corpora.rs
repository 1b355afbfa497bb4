//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the inputs that once crashed
//! (`fuzz/regressions/<target>/`) through the same entry points as the fuzz targets: what the
//! fuzzers found stays fixed without a nightly toolchain.

use std::path::Path;

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<_> = ["corpus", "regressions"]
        .iter()
        .flat_map(|kind| std::fs::read_dir(root.join(kind).join(target)).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, min: usize, run: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(files.len() >= min, "the {target} corpus has {} inputs", files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{} panics", file.display());
    }
}

#[test]
fn the_manifest_corpus_never_panics() {
    let (_keep, dir) = nanobatch::fuzzing::manifest_scratch().unwrap();
    replay("manifest", 70, |data| nanobatch::fuzzing::manifest(&dir, data));
}

#[test]
fn the_response_corpus_never_panics() {
    replay("response", 10, nanobatch::fuzzing::response);
}

#[test]
fn the_journal_corpus_never_panics() {
    replay("journal", 4, nanobatch::fuzzing::journal);
}
