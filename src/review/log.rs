//! The review log: `.nanobatch/review.jsonl`, a header line with the format version, then one
//! mark per line. Marks are data: every mark a person confirmed is on disk (written and
//! fsynced) before the app or `nanobatch mark` says it is done.
//!
//! The log is not the journal: reviewing goes on while a run writes its journal (and holds its
//! lock), so marks have a file of their own. Writers — the review app and `nanobatch mark`,
//! possibly at the same time — append under an exclusive `flock`, so lines never interleave.
//! Reading is tolerant where a crash can leave damage: a torn last line is ignored (and cut off
//! before the next append); a log from a newer format version is refused.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::checkpoint::records::now;
use crate::fsutil::{self, FsError};

pub const FORMAT_NAME: &str = "nanobatch-review";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{} was written by a newer nanobatch (review format {found}; this version reads {FORMAT_VERSION}); upgrade nanobatch", path.display())]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{} is not a nanobatch review log: {reason}", path.display())]
    NotALog { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogHeader {
    pub format: String,
    pub version: u32,
    pub tool: String,
    pub created: String,
}

/// A person's verdict on one image.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
    /// Back to "pending review" (the mark and its note are withdrawn).
    Cleared,
    /// Written by `run --reroll-rejected` when it moves the image aside for a new one: the mark
    /// the image had is kept as its history, and the task is pending review again (even should
    /// the new image be byte for byte the same).
    Rerolled,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "rejected",
            Verdict::Cleared => "cleared",
            Verdict::Rerolled => "rerolled",
        }
    }
}

/// One line of the log: the complete new state of an image's mark.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename = "mark")]
pub struct MarkRecord {
    /// The content hash of the image marked (as its journal record has it): a mark belongs to
    /// an image, so a re-rolled task (a new image) is pending review again, and a task whose
    /// output was only renamed keeps its mark.
    pub image: String,
    /// The task and output path when the mark was made (for people reading the log).
    pub id: String,
    pub path: String,
    pub mark: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub at: String,
}

impl MarkRecord {
    pub fn new(image: &str, id: &str, path: &str, mark: Verdict, note: Option<String>) -> MarkRecord {
        MarkRecord { image: image.to_owned(), id: id.to_owned(), path: path.to_owned(), mark, note, at: now() }
    }
}

/// A log read back.
#[derive(Debug, Default)]
pub struct LogContents {
    pub records: Vec<MarkRecord>,
    /// A torn or damaged line, worth telling the user.
    pub notes: Vec<String>,
}

/// The log's length before an append, and its metadata after it (both taken under the lock):
/// a reader that knew the log up to `before` knows it whole by adding what it appended.
#[derive(Debug)]
pub struct Appended {
    pub before: u64,
    pub after: Option<std::fs::Metadata>,
}

/// Appends `records` durably: one write and one fsync, under an exclusive lock of the file
/// (the log is created with its header first, and the directory synced, when it is new).
pub fn append(path: &Path, records: &[MarkRecord]) -> Result<Appended, LogError> {
    if records.is_empty() {
        return Ok(Appended { before: 0, after: std::fs::metadata(path).ok() });
    }
    let mut file = fsutil::open_append(path)?;
    flock(&file, FlockOperation::LockExclusive)
        .map_err(|e| FsError::new("cannot lock", path, std::io::Error::from(e)))?;
    let len = file.metadata().map_err(|e| FsError::new("cannot read", path, e))?.len();
    let mut bytes = Vec::with_capacity(256 * records.len());
    if len == 0 {
        let header = LogHeader {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            tool: env!("CARGO_PKG_VERSION").into(),
            created: now(),
        };
        let _ = serde_json::to_writer(&mut bytes, &header);
        bytes.push(b'\n');
    } else {
        check_header(path)?;
        cut_torn_tail(path, len)?;
    }
    for record in records {
        if serde_json::to_writer(&mut bytes, record).is_ok() {
            bytes.push(b'\n');
        }
    }
    file.write_all(&bytes).map_err(|e| FsError::new("cannot write", path, e))?;
    file.sync_data().map_err(|e| FsError::new("cannot sync", path, e))?;
    if len == 0
        && let Some(dir) = path.parent()
    {
        fsutil::sync_directory(dir)?;
    }
    // The lock goes with the file.
    Ok(Appended { before: len, after: file.metadata().ok() })
}

/// Reads the log at `path`; an absent log is an empty one.
pub fn read(path: &Path) -> Result<LogContents, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogContents::default()),
        Err(e) => return Err(FsError::new("cannot read", path, e).into()),
    };
    let mut text = Vec::new();
    BufReader::new(file).read_to_end(&mut text).map_err(|e| FsError::new("cannot read", path, e))?;
    parse(path, &text)
}

/// Parses log bytes (pure).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<LogContents, LogError> {
    let mut out = LogContents::default();
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    let Some((_, first)) = lines.next() else { return Ok(out) };
    if first.is_empty() {
        return Ok(out);
    }
    parse_header(path, first)?;
    while let Some((i, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<MarkRecord>(line) {
            Ok(record) => out.records.push(record),
            // The last line without its newline: a write the process did not finish.
            Err(_) if lines.peek().is_none() => {
                out.notes.push(format!("{} line {}: an unfinished write was ignored", path.display(), i + 1))
            }
            Err(e) => out.notes.push(format!("{} line {}: a damaged mark was skipped ({e})", path.display(), i + 1)),
        }
    }
    Ok(out)
}

fn check_header(path: &Path) -> Result<(), LogError> {
    let file = fsutil::open(path).map_err(|e| FsError::new("cannot open", path, e))?;
    let mut first = Vec::new();
    BufReader::new(file)
        .take(64 << 10)
        .read_until(b'\n', &mut first)
        .map_err(|e| FsError::new("cannot read", path, e))?;
    parse_header(path, first.strip_suffix(b"\n").unwrap_or(&first)).map(|_| ())
}

fn parse_header(path: &Path, line: &[u8]) -> Result<LogHeader, LogError> {
    let header: LogHeader = serde_json::from_slice(line)
        .map_err(|e| LogError::NotALog { path: path.to_path_buf(), reason: format!("bad header: {e}") })?;
    if header.format != FORMAT_NAME {
        return Err(LogError::NotALog { path: path.to_path_buf(), reason: format!("format is `{}`", header.format) });
    }
    if header.version > FORMAT_VERSION {
        return Err(LogError::NewerFormat { path: path.to_path_buf(), found: header.version });
    }
    Ok(header)
}

/// Cuts a partial last line (a writer died mid-line), so the next mark starts on its own line.
/// Runs under the append lock.
fn cut_torn_tail(path: &Path, len: u64) -> Result<(), FsError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| FsError::new("cannot open", path, e))?;
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))
        .and_then(|_| file.read_exact(&mut last))
        .map_err(|e| FsError::new("cannot read", path, e))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Marks are short: the last newline is near the end.
    let from = len.saturating_sub(1 << 20);
    let mut tail = vec![0u8; (len - from) as usize];
    file.seek(SeekFrom::Start(from))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| FsError::new("cannot read", path, e))?;
    let keep = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| from + i as u64 + 1);
    file.set_len(keep).map_err(|e| FsError::new("cannot truncate", path, e))?;
    file.sync_all().map_err(|e| FsError::new("cannot sync", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(image: &str, verdict: Verdict) -> MarkRecord {
        MarkRecord::new(image, "job/k", "job/k.png", verdict, None)
    }

    #[test]
    fn marks_round_trip_and_a_torn_tail_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("review.jsonl");
        assert!(read(&path).unwrap().records.is_empty());
        append(&path, &[mark("a", Verdict::Approved), mark("b", Verdict::Rejected)]).unwrap();
        // A writer died in the middle of a line.
        let mut file = fsutil::open_append(&path).unwrap();
        file.write_all(br#"{"t":"mark","image":"c","id":"#).unwrap();
        let torn = read(&path).unwrap();
        assert_eq!(torn.records.len(), 2);
        assert_eq!(torn.notes.len(), 1, "{:?}", torn.notes);
        append(&path, &[mark("c", Verdict::Cleared)]).unwrap();
        let back = read(&path).unwrap();
        assert!(back.notes.is_empty(), "{:?}", back.notes);
        let images: Vec<(&str, Verdict)> = back.records.iter().map(|r| (r.image.as_str(), r.mark)).collect();
        assert_eq!(images, [("a", Verdict::Approved), ("b", Verdict::Rejected), ("c", Verdict::Cleared)]);
    }

    #[test]
    fn a_newer_log_is_refused_and_a_foreign_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("review.jsonl");
        std::fs::write(&path, "{\"format\":\"nanobatch-review\",\"version\":9,\"tool\":\"9\",\"created\":\"x\"}\n")
            .unwrap();
        assert!(matches!(read(&path), Err(LogError::NewerFormat { found: 9, .. })));
        assert!(matches!(append(&path, &[mark("a", Verdict::Approved)]), Err(LogError::NewerFormat { .. })));
        std::fs::write(&path, "hello\n").unwrap();
        assert!(matches!(read(&path), Err(LogError::NotALog { .. })));
    }
}
