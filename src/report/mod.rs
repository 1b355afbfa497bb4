//! Reports: `report.json` (versioned schema), `report.html` (a contact sheet), and the sidecar
//! written next to every image. Built from the plan snapshot and the journal, so a report can be
//! regenerated at any time, for a run in progress too.

pub mod build;
pub mod html;
pub mod schema;
pub mod sidecar;
pub mod thumbs;

use std::path::Path;

use crate::fsutil::{self, FsError};

/// Writes `report.json` atomically.
pub fn write_json(report: &schema::Report, path: &Path) -> Result<(), FsError> {
    fsutil::write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, report).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}
