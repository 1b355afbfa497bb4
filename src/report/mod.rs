//! Reports: `report.json` (versioned schema), `report.html` (a contact sheet), and the sidecar
//! written next to every image. Built from the plan snapshot and the journal, so a report can be
//! regenerated at any time, for a run in progress too.

pub mod build;
pub mod html;
pub mod schema;
pub mod sidecar;
pub mod thumbs;

use std::io::Write;
use std::path::Path;

use crate::fsutil::{self, FsError};

/// Writes `report.json` atomically.
pub fn write_json(report: &schema::Report, path: &Path) -> Result<(), FsError> {
    let mut buf = Vec::with_capacity(1024 + report.tasks.len() * 600);
    let _ = serde_json::to_writer_pretty(&mut buf, report);
    let _ = buf.write_all(b"\n");
    fsutil::write_atomic(path, &buf)
}
