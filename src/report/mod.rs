//! Reports: `report.json` (versioned schema), `report.html` (a contact sheet), and the sidecar
//! written next to every image. Built from the plan snapshot and the journal, so a report can be
//! regenerated at any time, for a run in progress too.

pub mod build;
pub mod html;
pub mod schema;
pub mod sidecar;
pub mod thumbs;

use std::cell::RefCell;
use std::path::Path;

use serde::ser::{Error as _, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::fsutil::{self, FsError};

/// Writes `report.json` atomically.
pub fn write_json(report: &schema::Report, path: &Path) -> Result<(), FsError> {
    fsutil::write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, report).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// Writes `report.json` atomically from a report without its task entries (`head`) and the
/// entries, made one at a time as they are written: the same bytes as [`write_json`] of the
/// whole report, without ever holding every entry (a few kilobytes each).
pub fn write_json_streamed(
    head: &schema::Report,
    tasks: impl Iterator<Item = schema::TaskEntry>,
    path: &Path,
) -> Result<(), FsError> {
    let streamed = StreamedReport { head, tasks: RefCell::new(Some(tasks)) };
    fsutil::write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, &streamed).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// [`schema::Report`]'s fields in its order, `tasks` taken from an iterator (serialized once).
struct StreamedReport<'a, I> {
    head: &'a schema::Report,
    tasks: RefCell<Option<I>>,
}

impl<I: Iterator<Item = schema::TaskEntry>> Serialize for StreamedReport<'_, I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let schema::Report {
            report_version,
            run,
            totals,
            by_model,
            by_job,
            by_size,
            drift,
            review,
            tasks: _,
            no_longer_in_manifest,
            superseded,
        } = self.head;
        let mut report = serializer.serialize_struct("Report", 11)?;
        report.serialize_field("report_version", report_version)?;
        report.serialize_field("run", run)?;
        report.serialize_field("totals", totals)?;
        report.serialize_field("by_model", by_model)?;
        report.serialize_field("by_job", by_job)?;
        report.serialize_field("by_size", by_size)?;
        report.serialize_field("drift", drift)?;
        match review {
            Some(review) => report.serialize_field("review", review)?,
            None => report.skip_field("review")?,
        }
        report.serialize_field("tasks", &Entries(&self.tasks))?;
        // As `skip_serializing_if = "Vec::is_empty"` on the struct.
        if no_longer_in_manifest.is_empty() {
            report.skip_field("no_longer_in_manifest")?;
        } else {
            report.serialize_field("no_longer_in_manifest", no_longer_in_manifest)?;
        }
        if superseded.is_empty() {
            report.skip_field("superseded")?;
        } else {
            report.serialize_field("superseded", superseded)?;
        }
        report.end()
    }
}

struct Entries<'a, I>(&'a RefCell<Option<I>>);

impl<I: Iterator<Item = schema::TaskEntry>> Serialize for Entries<'_, I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tasks =
            self.0.borrow_mut().take().ok_or_else(|| S::Error::custom("the task entries were written already"))?;
        serializer.collect_seq(tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden report of the integration tests, as a `Report`.
    fn golden() -> schema::Report {
        let snapshot = include_str!("../../tests/it/snapshots/it__report__golden_report.snap");
        let json = snapshot.splitn(3, "---\n").nth(2).expect("an insta snapshot: header, then the value");
        serde_json::from_str(json).expect("the golden report parses as a Report")
    }

    #[test]
    fn the_streamed_report_is_byte_for_byte_the_whole_one() {
        let report = golden();
        assert!(report.tasks.len() > 3, "a report with entries to stream");
        let dir = tempfile::tempdir().unwrap();
        let (whole, streamed) = (dir.path().join("whole.json"), dir.path().join("streamed.json"));
        write_json(&report, &whole).unwrap();
        let head = schema::Report { tasks: Vec::new(), ..report.clone() };
        write_json_streamed(&head, report.tasks.into_iter(), &streamed).unwrap();
        assert_eq!(std::fs::read_to_string(streamed).unwrap(), std::fs::read_to_string(whole).unwrap());
    }
}
