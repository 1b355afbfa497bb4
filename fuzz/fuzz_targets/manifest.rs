//! The manifest loader: YAML, then a CSV after `#--csv--` (see `nanobatch::fuzzing::manifest`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<(tempfile_dir::Keep, std::path::PathBuf)> = OnceLock::new();

mod tempfile_dir {
    /// Keeps the scratch directory alive for the whole fuzzing session.
    pub struct Keep(#[allow(dead_code)] pub Box<dyn std::any::Any + Send + Sync>);
}

fuzz_target!(|data: &[u8]| {
    let (_, dir) = SCRATCH.get_or_init(|| {
        let (keep, path) = nanobatch::fuzzing::manifest_scratch().expect("scratch directory");
        (tempfile_dir::Keep(Box::new(keep)), path)
    });
    nanobatch::fuzzing::manifest(dir, data);
});
