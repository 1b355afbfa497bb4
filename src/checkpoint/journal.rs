//! The append-only journal: `.nanobatch/journal.jsonl`, a header line with the format version,
//! then one JSON record per line. Written only by the dispatcher; every record is on disk
//! (written and fsynced) before the run acts on it.
//!
//! Reading is tolerant where a crash can leave damage: a torn last line (the process died in
//! the middle of a write) is ignored with a note, and the writer cuts it off before appending.
//! A journal from a newer format version is refused.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::records::{FORMAT_NAME, FORMAT_VERSION, Header, Record, now};
use crate::fsutil::{self, FsError};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{} was written by a newer nanobatch (journal format {found}; this version reads {FORMAT_VERSION}); upgrade nanobatch to resume this run", path.display())]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("{} is not a nanobatch journal: {reason}", path.display())]
    NotAJournal { path: PathBuf, reason: String },
}

/// Appends records with group commit: [`JournalWriter::append`] buffers, [`JournalWriter::commit`]
/// writes the buffer and fsyncs once.
#[derive(Debug)]
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl JournalWriter {
    /// Opens (or creates, with a header) the journal at `path`.
    pub fn open(path: &Path) -> Result<JournalWriter, JournalError> {
        let exists = fsutil::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
        if exists {
            check_header(path)?;
            cut_torn_tail(path)?;
        }
        let mut file = fsutil::open_append(path)?;
        if !exists {
            let header = Header {
                format: FORMAT_NAME.into(),
                version: FORMAT_VERSION,
                tool: env!("CARGO_PKG_VERSION").into(),
                created: now(),
            };
            let mut line = serde_json::to_vec(&header).unwrap_or_default();
            line.push(b'\n');
            file.write_all(&line).map_err(|e| FsError::new("cannot write", path, e))?;
            file.sync_all().map_err(|e| FsError::new("cannot sync", path, e))?;
            if let Some(dir) = path.parent() {
                fsutil::sync_directory(dir)?;
            }
        }
        Ok(JournalWriter { file, path: path.to_path_buf(), buf: Vec::with_capacity(64 << 10) })
    }

    pub fn append(&mut self, record: &Record) {
        if serde_json::to_writer(&mut self.buf, record).is_ok() {
            self.buf.push(b'\n');
        }
    }

    /// Writes what was appended and makes it durable.
    pub fn commit(&mut self) -> Result<(), FsError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(|e| FsError::new("cannot write", &self.path, e))?;
        self.file.sync_data().map_err(|e| FsError::new("cannot sync", &self.path, e))?;
        self.buf.clear();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_header(path: &Path) -> Result<(), JournalError> {
    let file = fsutil::open(path).map_err(|e| FsError::new("cannot open", path, e))?;
    let mut first = String::new();
    BufReader::new(file).take(64 << 10).read_line(&mut first).map_err(|e| FsError::new("cannot read", path, e))?;
    parse_header(path, first.trim_end()).map(|_| ())
}

fn parse_header(path: &Path, line: &str) -> Result<Header, JournalError> {
    let header: Header = serde_json::from_str(line)
        .map_err(|e| JournalError::NotAJournal { path: path.to_path_buf(), reason: format!("bad header: {e}") })?;
    if header.format != FORMAT_NAME {
        return Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
            reason: format!("format is `{}`", header.format),
        });
    }
    if header.version > FORMAT_VERSION {
        return Err(JournalError::NewerFormat { path: path.to_path_buf(), found: header.version });
    }
    Ok(header)
}

/// Removes a partial last line left by a crash, so the next record starts on its own line.
fn cut_torn_tail(path: &Path) -> Result<(), FsError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| FsError::new("cannot open", path, e))?;
    let len = file.metadata().map_err(|e| FsError::new("cannot read", path, e))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut pos = len;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let start = pos.saturating_sub(chunk.len() as u64);
        let n = (pos - start) as usize;
        file.seek(SeekFrom::Start(start)).map_err(|e| FsError::new("cannot read", path, e))?;
        file.read_exact(&mut chunk[..n]).map_err(|e| FsError::new("cannot read", path, e))?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep).map_err(|e| FsError::new("cannot truncate", path, e))?;
                file.sync_all().map_err(|e| FsError::new("cannot sync", path, e))?;
            }
            return Ok(());
        }
        if start == 0 {
            return Ok(());
        }
        pos = start;
    }
}

/// A journal read back.
#[derive(Debug, Default)]
pub struct JournalContents {
    pub header: Option<Header>,
    pub records: Vec<Record>,
    /// Things worth telling the user (a torn last line, a skipped damaged line).
    pub notes: Vec<String>,
}

/// Reads the journal at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<JournalContents>, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::new("cannot read", path, e).into()),
    };
    parse(path, &bytes).map(Some)
}

/// Parses journal bytes (pure; the fuzz target and the property tests call it).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<JournalContents, JournalError> {
    let mut out = JournalContents::default();
    if bytes.is_empty() {
        return Ok(out);
    }
    let mut lines = bytes.split(|b| *b == b'\n').peekable();
    let first = lines.next().unwrap_or_default();
    let first = std::str::from_utf8(first)
        .map_err(|_| JournalError::NotAJournal { path: path.to_path_buf(), reason: "header is not UTF-8".into() })?;
    out.header = Some(parse_header(path, first.trim_end())?);
    let mut line_no = 1usize;
    let mut damaged = 0usize;
    while let Some(line) = lines.next() {
        line_no += 1;
        let is_last = lines.peek().is_none();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => out.records.push(record),
            Err(_) if is_last => out.notes.push(format!(
                "the last line of {} was cut short by a crash ({} bytes); it was ignored",
                path.display(),
                line.len()
            )),
            Err(e) => {
                damaged += 1;
                if damaged <= 5 {
                    out.notes.push(format!("line {line_no} of {} is damaged and was skipped: {e}", path.display()));
                }
            }
        }
    }
    if damaged > 5 {
        out.notes.push(format!("… {} more damaged lines of {} were skipped", damaged - 5, path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::{JournalError, JournalWriter, parse, read};
    use crate::checkpoint::records::{EndRecord, Record};

    fn end(status: &str) -> Record {
        Record::End(EndRecord { at: "t".into(), status: status.into() })
    }

    #[test]
    fn writes_reads_and_survives_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut w = JournalWriter::open(&path).unwrap();
        w.append(&end("one"));
        w.commit().unwrap();
        drop(w);
        // A crash in the middle of a write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t\":\"end\",\"at\":\"t\",\"sta")
            .unwrap();
        let before = read(&path).unwrap().unwrap();
        assert_eq!(before.records, vec![end("one")]);
        assert_eq!(before.notes.len(), 1);
        let mut w = JournalWriter::open(&path).unwrap();
        w.append(&end("two"));
        w.commit().unwrap();
        let after = read(&path).unwrap().unwrap();
        assert_eq!(after.records, vec![end("one"), end("two")]);
        assert!(after.notes.is_empty());
    }

    #[test]
    fn newer_versions_are_refused() {
        let bytes = b"{\"format\":\"nanobatch-journal\",\"version\":99,\"tool\":\"9\",\"created\":\"t\"}\n";
        let err = parse(std::path::Path::new("j"), bytes).unwrap_err();
        assert!(matches!(err, JournalError::NewerFormat { found: 99, .. }));
        assert!(err.to_string().contains("upgrade"));
    }
}
