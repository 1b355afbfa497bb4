//! The append-only journal: `.nanobatch/journal.jsonl`, a header line with the format version,
//! then one JSON record per line. Written only by the dispatcher; every record is on disk
//! (written and fsynced) before the run acts on it.
//!
//! Reading is tolerant where a crash can leave damage: a torn last line (the process died in
//! the middle of a write) is ignored with a note, and the writer cuts it off before appending.
//! A write that fails part-way (the disk filled up) is cut back to the last whole record at
//! once, so a full disk leaves no torn line behind, and the error says what happened.
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
    /// The length of the journal's whole records: where a failed write is cut back to.
    len: u64,
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
        let len = file.metadata().map_err(|e| FsError::new("cannot read", path, e))?.len();
        Ok(JournalWriter { file, path: path.to_path_buf(), buf: Vec::with_capacity(64 << 10), len })
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
        if let Err(e) = self.file.write_all(&self.buf).and_then(|()| self.file.sync_data()) {
            return Err(self.cut_back(e));
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// After a failed write: removes what part of it reached the file, so that the journal ends
    /// with a whole record (if even that fails, the next run ignores the torn line).
    fn cut_back(&mut self, error: std::io::Error) -> FsError {
        let _ = self.file.set_len(self.len).and_then(|()| self.file.sync_all());
        FsError::new("cannot write", &self.path, error)
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

/// Journals are read in blocks of this size: the file's bytes are never all in memory beside
/// the records decoded from them (a 100,000-task journal is ~100 MB of text).
const READ_BLOCK: usize = 16 << 20;

/// Visited journals need their records only a block at a time: smaller blocks, as fast (still
/// decoded on two cores), hold less.
const VISIT_BLOCK: usize = 8 << 20;

/// Reads the journal at `path`; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<JournalContents>, JournalError> {
    read_in_blocks(path, READ_BLOCK)
}

fn read_in_blocks(path: &Path, block: usize) -> Result<Option<JournalContents>, JournalError> {
    let mut records = Vec::new();
    let read = visit_in_blocks(path, block, &mut |part| append(&mut records, part))?;
    records.shrink_to_fit();
    Ok(read.map(|(header, notes)| JournalContents { header, records, notes }))
}

/// Hands every record of the journal at `path` to `f`, in order, a block at a time: the
/// records are never all in memory (a report of 100,000 tasks keeps what it needs of each).
/// Returns the notes (damaged or torn lines); `Ok(None)` when there is no journal.
pub fn visit(path: &Path, mut f: impl FnMut(Record)) -> Result<Option<Vec<String>>, JournalError> {
    let read = visit_in_blocks(path, VISIT_BLOCK, &mut |part| part.into_iter().for_each(&mut f))?;
    Ok(read.map(|(_, notes)| notes))
}

/// The first part's vector grows in place (a large one is remapped, not copied), and each later
/// part is freed once moved: the records are never held twice.
fn append(records: &mut Vec<Record>, part: Vec<Record>) {
    if records.is_empty() {
        *records = part;
    } else {
        records.extend(part);
    }
}

/// A journal's header (none when it is empty) and the notes on its damaged or torn lines.
type HeaderAndNotes = (Option<Header>, Vec<String>);

/// Decodes the journal block by block, handing each decoded part's records to `sink`; returns
/// the header and the notes.
fn visit_in_blocks(
    path: &Path,
    block: usize,
    sink: &mut dyn FnMut(Vec<Record>),
) -> Result<Option<HeaderAndNotes>, JournalError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FsError::new("cannot read", path, e).into()),
    };
    let cannot_read = |e| JournalError::from(FsError::new("cannot read", path, e));
    let mut reader = std::io::BufReader::new(file);
    let mut first = Vec::new();
    reader.read_until(b'\n', &mut first).map_err(cannot_read)?;
    let mut acc = Assembled::default();
    if first.is_empty() {
        return Ok(Some(acc.finish(path)));
    }
    acc.header = Some(decode_header(path, &first)?);
    // Each block is cut after its last newline; the rest starts the next one.
    let mut buffer: Vec<u8> = Vec::new();
    let mut line_no = 2;
    // A small journal gets a small buffer (one byte more than is left, to see its end).
    let size = reader.get_ref().metadata().map_or(u64::MAX, |m| m.len());
    let mut consumed = first.len() as u64;
    loop {
        let kept = buffer.len();
        let left = usize::try_from(size.saturating_sub(consumed)).unwrap_or(usize::MAX);
        // The carried-over line and the new bytes fit in one block (the buffer never grows to
        // two), unless a single line is longer than that.
        let want = block.saturating_sub(kept).max(block / 16).min(left.saturating_add(1)).max(1);
        buffer.resize(kept + want, 0);
        let n = read_full(&mut reader, &mut buffer[kept..]).map_err(cannot_read)?;
        consumed += n as u64;
        buffer.truncate(kept + n);
        let at_end = n < want;
        let cut = if at_end { buffer.len() } else { buffer.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
        if cut > 0 || at_end {
            acc.add(decode_body(&buffer[..cut], line_no, at_end), sink);
            line_no += buffer[..cut].iter().filter(|&&b| b == b'\n').count();
            buffer.drain(..cut);
        }
        if at_end {
            return Ok(Some(acc.finish(path)));
        }
    }
}

/// Fills `buf` unless the file ends first; returns how much was read.
fn read_full(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Parses journal bytes (pure; the fuzz target and the property tests call it). Large journals
/// are decoded on every core, in slices cut at line ends, and joined in order.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<JournalContents, JournalError> {
    let mut acc = Assembled::default();
    let mut records = Vec::new();
    if !bytes.is_empty() {
        let header_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
        acc.header = Some(decode_header(path, &bytes[..header_end])?);
        let body = bytes.get(header_end + 1..).unwrap_or_default();
        acc.add(decode_body(body, 2, true), &mut |part| append(&mut records, part));
    }
    let (header, notes) = acc.finish(path);
    Ok(JournalContents { header, records, notes })
}

fn decode_header(path: &Path, line: &[u8]) -> Result<Header, JournalError> {
    let first = std::str::from_utf8(line)
        .map_err(|_| JournalError::NotAJournal { path: path.to_path_buf(), reason: "header is not UTF-8".into() })?;
    parse_header(path, first.trim_end())
}

/// Decodes whole lines (the last one may be torn only when `holds_the_end`), on every core when
/// there are enough of them; the parts come back in order.
fn decode_body(body: &[u8], first_line: usize, holds_the_end: bool) -> Vec<Decoded> {
    let slices = line_slices(body, parallel_slices(body.len()), first_line);
    if slices.len() == 1 {
        return vec![decode_lines(slices[0].1, slices[0].0, holds_the_end)];
    }
    let last = slices.len() - 1;
    std::thread::scope(|scope| {
        let handles: Vec<_> = slices
            .iter()
            .enumerate()
            .map(|(i, &(first, text))| scope.spawn(move || decode_lines(text, first, holds_the_end && i == last)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// Decoded parts passed on in order, with what is worth telling the user.
#[derive(Default)]
struct Assembled {
    header: Option<Header>,
    damaged: Vec<(usize, String)>,
    torn: Option<usize>,
}

impl Assembled {
    fn add(&mut self, parts: Vec<Decoded>, sink: &mut dyn FnMut(Vec<Record>)) {
        for part in parts {
            sink(part.records);
            self.damaged.extend(part.damaged);
            self.torn = self.torn.or(part.torn);
        }
    }

    /// The header and the notes.
    fn finish(self, path: &Path) -> HeaderAndNotes {
        let mut notes = Vec::new();
        for (line_no, error) in self.damaged.iter().take(5) {
            notes.push(format!("line {line_no} of {} is damaged and was skipped: {error}", path.display()));
        }
        if self.damaged.len() > 5 {
            notes.push(format!("… {} more damaged lines of {} were skipped", self.damaged.len() - 5, path.display()));
        }
        if let Some(len) = self.torn {
            notes.push(format!(
                "the last line of {} is incomplete ({len} bytes): the run stopped, or its disk filled up, while writing it; it was ignored",
                path.display()
            ));
        }
        (self.header, notes)
    }
}

/// What one slice of the journal decoded to.
#[derive(Default)]
struct Decoded {
    records: Vec<Record>,
    /// (line number, error) of lines that are not records.
    damaged: Vec<(usize, String)>,
    /// The length of an unterminated last line (only in the journal's last slice).
    torn: Option<usize>,
}

/// How many slices to decode `len` bytes in: one per core above a few megabytes.
fn parallel_slices(len: usize) -> usize {
    if len < 4 << 20 {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// Cuts `body` into about `n` slices at line ends: (number of the slice's first line, text).
fn line_slices(body: &[u8], n: usize, first_line: usize) -> Vec<(usize, &[u8])> {
    let mut slices = Vec::with_capacity(n);
    let mut start = 0;
    let mut line_no = first_line;
    for i in 1..=n {
        let target = if i == n { body.len() } else { (body.len() * i / n).max(start) };
        let end = match body[target..].iter().position(|&b| b == b'\n') {
            Some(at) if i < n => target + at + 1,
            _ => body.len(),
        };
        if end > start || slices.is_empty() {
            slices.push((line_no, &body[start..end]));
            line_no += body[start..end].iter().filter(|&&b| b == b'\n').count();
            start = end;
        }
        if start >= body.len() {
            break;
        }
    }
    slices
}

fn decode_lines(text: &[u8], first_line: usize, holds_the_end: bool) -> Decoded {
    // Task lines are ~900 bytes and the others ~200: this rarely over-reserves by much.
    let mut out = Decoded { records: Vec::with_capacity(text.len() / 500), ..Decoded::default() };
    let mut lines = text.split(|b| *b == b'\n').peekable();
    let mut line_no = first_line;
    while let Some(line) = lines.next() {
        // A complete line ends with its newline: only an unterminated last piece can be torn.
        let is_last = holds_the_end && lines.peek().is_none();
        if !line.iter().all(u8::is_ascii_whitespace) {
            match decode_record(line) {
                Ok(record) => out.records.push(record),
                Err(_) if is_last => out.torn = Some(line.len()),
                Err(e) => out.damaged.push((line_no, e.to_string())),
            }
        }
        line_no += 1;
    }
    out
}

/// Decodes one record. Lines start with their tag (`{"t":"task",…`, as [`JournalWriter`]
/// writes them), so the variant's own struct is decoded directly, without serde's buffering of
/// internally tagged enums (three times slower on a 100,000-task resume). Anything else goes
/// through the general path, which also gives the error message.
pub fn decode_record(line: &[u8]) -> serde_json::Result<Record> {
    use serde_json::from_slice;
    // serde_json skips unknown fields without checking their UTF-8; the general path checks
    // it. Checking first keeps the two exactly equivalent (the journal fuzz target asserts it).
    let fast = line.strip_prefix(br#"{"t":""#).filter(|_| std::str::from_utf8(line).is_ok()).and_then(|rest| {
        let tag = &rest[..rest.iter().position(|&b| b == b'"')?];
        let record = match tag {
            b"task" => from_slice(line).map(Record::Task),
            b"sent" => from_slice(line).map(Record::Sent),
            b"attempt" => from_slice(line).map(Record::Attempt),
            b"run" => from_slice(line).map(Record::Run),
            b"end" => from_slice(line).map(Record::End),
            _ => return None,
        };
        record.ok()
    });
    match fast {
        Some(record) => Ok(record),
        None => from_slice(line),
    }
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
    fn a_large_journal_decodes_in_parallel_exactly_as_in_one_piece() {
        let mut bytes = br#"{"format":"nanobatch-journal","version":1,"tool":"t","created":"c"}"#.to_vec();
        bytes.push(b'\n');
        let mut expected = Vec::new();
        for i in 0..60_000 {
            let record = end(&format!("status {i} {}", "x".repeat(i % 97)));
            bytes.extend(serde_json::to_vec(&record).unwrap());
            bytes.push(b'\n');
            expected.push(record);
            if i == 31_000 {
                bytes.extend(b"{damaged\n");
            }
        }
        bytes.extend(br#"{"t":"end","at":"#);
        assert!(bytes.len() > 4 << 20, "the journal must be large enough to be split");
        let contents = parse(std::path::Path::new("j"), &bytes).unwrap();
        assert_eq!(contents.records, expected);
        assert_eq!(contents.notes.len(), 2, "{:?}", contents.notes);
        assert!(contents.notes[0].contains("line 31003"), "{:?}", contents.notes);
        assert!(contents.notes[1].contains("is incomplete"), "{:?}", contents.notes);
        let slices = super::line_slices(&bytes, 7, 1);
        assert_eq!(slices.iter().map(|s| s.1.len()).sum::<usize>(), bytes.len());
        assert!(slices.iter().rev().skip(1).all(|s| s.1.ends_with(b"\n")));
    }

    #[test]
    fn reading_in_blocks_gives_exactly_what_parsing_the_whole_file_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let header = br#"{"format":"nanobatch-journal","version":1,"tool":"t","created":"c"}"#;
        let mut bytes = header.to_vec();
        bytes.push(b'\n');
        for i in 0..300 {
            bytes.extend(serde_json::to_vec(&end(&format!("status {i} {}", "y".repeat(i % 41)))).unwrap());
            bytes.push(b'\n');
            if i % 97 == 5 {
                bytes.extend(b"{damaged\n\n");
            }
        }
        let whole_with_torn_tail = [&bytes[..], br#"{"t":"end","at":"#].concat();
        let header_only = [&header[..], b"\n"].concat();
        for case in [&bytes[..], &whole_with_torn_tail[..], &header_only[..], &header[..], b""] {
            std::fs::write(&path, case).unwrap();
            let expected = parse(&path, case).unwrap();
            for block in [1, 2, 7, 64, 333, 4096, 1 << 20] {
                let got = super::read_in_blocks(&path, block).unwrap().unwrap();
                assert_eq!(got.records, expected.records, "block {block}");
                assert_eq!(got.notes, expected.notes, "block {block}");
                assert_eq!(got.header.is_some(), expected.header.is_some(), "block {block}");
            }
        }
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
