//! Entry points for the fuzz targets (`fuzz/`) and for the test that replays their corpora:
//! one place says what each target exercises. Each function must return normally for any
//! input; a panic is a bug.

use std::path::{Path, PathBuf};

use crate::api::response::parse_reply;
use crate::api::splitter::{BlobSink, Splitter};
use crate::checkpoint::journal;
use crate::checkpoint::resume::JournalState;

/// Separates the manifest from the CSV in a manifest-target input.
pub const CSV_SEPARATOR: &[u8] = b"\n#--csv--\n";

/// A manifest (YAML) and `data.csv` next to it, both from `data` (split at
/// [`CSV_SEPARATOR`]), loaded and, when valid, planned. `dir` is a scratch directory that also
/// holds `ref.png` for manifests that name a reference image.
pub fn manifest(dir: &Path, data: &[u8]) {
    let (yaml, csv) = match find(data, CSV_SEPARATOR) {
        Some(at) => (&data[..at], &data[at + CSV_SEPARATOR.len()..]),
        None => (data, &b"sku,name\nA,mug\n"[..]),
    };
    let manifest_path = dir.join("manifest.yaml");
    if std::fs::write(&manifest_path, yaml).is_err() || std::fs::write(dir.join("data.csv"), csv).is_err() {
        return;
    }
    if let Ok(manifest) = crate::manifest::load(&manifest_path)
        && let Ok(plan) = crate::plan::expand(&manifest)
    {
        // Every output name stays inside the output directory.
        for task in &plan.tasks {
            assert!(!Path::new(&*task.output).is_absolute(), "absolute output {}", task.output);
            assert!(!task.output.split('/').any(|c| c == ".." || c.is_empty()), "bad output {}", task.output);
        }
    }
}

/// Makes the scratch directory of [`manifest`], with a small valid PNG as `ref.png`.
pub fn manifest_scratch() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let png = crate::mock::images::full_bytes(
        &crate::mock::images::ImageCache::default().get(crate::mock::images::ImageKey {
            width: 8,
            height: 8,
            style: 0,
            jpeg: false,
            pad_to: 0,
        }),
        "ref",
    );
    std::fs::write(dir.path().join("ref.png"), png)?;
    let path = dir.path().to_path_buf();
    Ok((dir, path))
}

/// A response body: parsed whole, and split as it would arrive in pieces (sizes taken from the
/// first byte), the skeleton parsed in turn.
pub fn response(data: &[u8]) {
    if let Ok(reply) = parse_reply(data) {
        let _ = reply.no_image();
        let _ = reply.tokens(1120);
        if let Some(image) = &reply.image {
            let _ = image.decode();
        }
    }
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut splitter = Splitter::new();
    let mut sink = CountingSink::default();
    for piece in data.chunks(step) {
        if splitter.feed(piece, &mut sink).is_err() {
            return;
        }
    }
    if let Ok((skeleton, blobs)) = splitter.finish(&mut sink) {
        assert_eq!(blobs, sink.begun, "every blob begun is ended");
        assert_eq!(sink.begun, sink.ended);
        let _ = parse_reply(&skeleton);
    }
}

#[derive(Default)]
struct CountingSink {
    begun: usize,
    ended: usize,
}

impl BlobSink for CountingSink {
    fn begin(&mut self, index: usize) -> std::io::Result<()> {
        assert_eq!(index, self.begun);
        self.begun += 1;
        Ok(())
    }
    fn write(&mut self, index: usize, _decoded: &[u8]) -> std::io::Result<()> {
        assert!(index < self.begun);
        Ok(())
    }
    fn end(&mut self, index: usize, _valid: bool) -> std::io::Result<()> {
        assert_eq!(index, self.ended);
        self.ended += 1;
        Ok(())
    }
}

/// A journal's bytes: parsed (torn tails, damaged lines) and folded into resume state.
pub fn journal(data: &[u8]) {
    // The fast decoder agrees with serde's general one on every line it accepts.
    for line in data.split(|b| *b == b'\n') {
        if let Ok(fast) = journal::decode_record(line) {
            let general: Result<crate::checkpoint::records::Record, _> = serde_json::from_slice(line);
            assert_eq!(general.ok().as_ref(), Some(&fast), "decoders disagree on {}", String::from_utf8_lossy(line));
        }
    }
    if let Ok(contents) = journal::parse(Path::new("journal.jsonl"), data) {
        let state = JournalState::from_records(&contents.records);
        let _ = state.open_batches();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
