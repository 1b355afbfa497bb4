//! Variable rows: a CSV file or inline maps (spreadsheets are in `sheet`), loaded with every
//! problem reported (file, row, column) and with limits that keep a hostile file from
//! exhausting memory. CSV files come as spreadsheets export them: `,`, `;` or tab between the
//! fields (detected from the header line unless `delimiter:` says), a UTF-8 byte-order mark,
//! CRLF line ends.

use std::io::BufRead;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::diagnostic::Diagnostic;
use super::locate::Position;
use crate::fsutil;

/// Largest value accepted in one cell. Prompts are short; a 10 MB cell is an export gone wrong.
pub const MAX_FIELD_BYTES: usize = 64 << 10;
/// Largest CSV file accepted.
pub const MAX_CSV_BYTES: u64 = 2 << 30;
/// Row problems reported per file before summarising the rest.
const MAX_ROW_PROBLEMS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowSource {
    /// The job has no `vars`: a single instance with no variables.
    None,
    Csv(PathBuf),
    /// A spreadsheet file and the sheet read from it.
    Sheet {
        path: PathBuf,
        sheet: String,
    },
    Inline,
}

/// The rows of a job.
#[derive(Debug, Clone)]
pub struct Rows {
    pub source: RowSource,
    pub columns: Arc<[Arc<str>]>,
    pub key_column: Option<usize>,
    pub rows: Vec<Row>,
    /// The job's `vars` could not be read (the problem is reported); checks that depend on the
    /// rows are skipped.
    pub unreadable: bool,
}

#[derive(Debug, Clone)]
pub struct Row {
    /// The row's key (the key column's value, or the row number when there is none).
    pub key: Arc<str>,
    /// One value per column; `None` where an inline row lacks the column.
    pub values: Arc<[Option<Arc<str>>]>,
    /// 1-based: the CSV line, or the position in the inline list.
    pub line: u32,
}

impl Rows {
    pub fn none() -> Rows {
        Rows {
            source: RowSource::None,
            columns: Arc::from(Vec::new()),
            key_column: None,
            rows: vec![Row { key: Arc::from(""), values: Arc::from(Vec::new()), line: 0 }],
            unreadable: false,
        }
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| &**c == name)
    }

    pub fn has_vars(&self) -> bool {
        self.source != RowSource::None
    }

    pub fn describe_row(&self, row: &Row) -> String {
        match &self.source {
            RowSource::None => "the job".to_owned(),
            RowSource::Csv(path) => format!(
                "row {} (line {}, key `{}`) of {}",
                row.line.saturating_sub(1),
                row.line,
                row.key,
                path.display()
            ),
            RowSource::Sheet { path, sheet } => {
                format!("row {} (key `{}`) of sheet `{sheet}` in {}", row.line, row.key, path.display())
            }
            RowSource::Inline => format!("row {} (key `{}`)", row.line, row.key),
        }
    }
}

/// Column names, and rows as (line, one value per column).
pub type RawRows = (Vec<Arc<str>>, Vec<(u32, Vec<Option<Arc<str>>>)>);

/// The delimiters recognised in a header line, in the order that breaks a tie.
const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];

/// Reads a CSV file into rows, with `delimiter` or the one its header line uses. Returns the
/// problems found instead when there are any.
pub fn load_csv(path: &Path, shown: &Path, delimiter: Option<u8>) -> Result<RawRows, Vec<Diagnostic>> {
    let err = |msg: String| vec![Diagnostic::error(shown, msg)];
    let meta = fsutil::metadata(path)
        .map_err(|e| err(format!("cannot read CSV file {}: {}", shown.display(), fsutil::io_reason(&e))))?;
    if !meta.is_file() {
        return Err(err(format!("{} is not a file", shown.display())));
    }
    if meta.len() > MAX_CSV_BYTES {
        return Err(err(format!("CSV file {} is {} bytes; the limit is {MAX_CSV_BYTES}", shown.display(), meta.len())));
    }
    let file =
        fsutil::open(path).map_err(|e| err(format!("cannot open {}: {}", shown.display(), fsutil::io_reason(&e))))?;
    let mut input = std::io::BufReader::with_capacity(64 << 10, file);
    let head =
        input.fill_buf().map_err(|e| err(format!("cannot read {}: {}", shown.display(), fsutil::io_reason(&e))))?;
    // Excel's "CSV UTF-8" starts with a byte-order mark; left in, it would be part of the first
    // column's name (or break its quotes).
    let bom = if head.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&head[bom..]));
    input.consume(bom);
    let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).delimiter(delimiter).from_reader(input);
    let headers = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(err(format!("cannot read the header of {}: {e}", shown.display()))),
    };
    let mut problems = Vec::new();
    let columns = header_columns(&headers, shown, &mut problems);
    if columns.is_empty() && problems.is_empty() {
        return Err(vec![
            Diagnostic::error(shown, format!("CSV file {} is empty", shown.display()))
                .with_help("the first line must name the columns, e.g. `sku,name,color`"),
        ]);
    }
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut extra_problems = 0usize;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                problems.push(Diagnostic::error(shown, format!("malformed CSV: {e}")));
                break;
            }
        }
        let line = record.position().map_or(0, |p| p.line()) as u32;
        let before = problems.len();
        let values = record_values(&record, &columns, line, shown, &mut problems);
        if problems.len() > MAX_ROW_PROBLEMS {
            extra_problems += problems.len() - before;
            problems.truncate(MAX_ROW_PROBLEMS);
        }
        if is_blank(&values) {
            continue;
        }
        rows.push((line, values));
    }
    if extra_problems > 0 {
        problems.push(Diagnostic::error(shown, format!("… and {extra_problems} more problems in {}", shown.display())));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if rows.is_empty() {
        return Err(vec![Diagnostic::error(shown, format!("CSV file {} has a header but no rows", shown.display()))]);
    }
    Ok((columns, rows))
}

/// The delimiter of a header line: whichever of `,`, `;` and tab occurs most outside quotes
/// (a European Excel writes `sku;name;color`), `,` when none does (a single column).
pub fn detect_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = DELIMITERS.iter().position(|d| *d == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..DELIMITERS.len()).rev().max_by_key(|&i| counts[i]).unwrap_or(0);
    if counts[best] == 0 { b',' } else { DELIMITERS[best] }
}

fn header_columns(headers: &csv::ByteRecord, shown: &Path, problems: &mut Vec<Diagnostic>) -> Vec<Arc<str>> {
    let mut columns: Vec<Arc<str>> = Vec::new();
    for (i, raw) in headers.iter().enumerate() {
        let position = Some(Position { line: 1, column: i as u32 + 1 });
        let name = match std::str::from_utf8(raw) {
            Ok(s) => s.trim().trim_start_matches('\u{feff}').to_owned(),
            Err(_) => {
                problems.push(csv_diag(shown, position, format!("column {} of the header is not UTF-8", i + 1)));
                continue;
            }
        };
        if name.is_empty() {
            problems.push(
                csv_diag(shown, position, format!("column {} of the header has no name", i + 1))
                    .with_help("every column needs a name: templates refer to it as {{ name }}"),
            );
        } else if columns.iter().any(|c| **c == *name) {
            problems.push(csv_diag(shown, position, format!("column `{name}` appears twice in the header")));
        }
        columns.push(Arc::from(name));
    }
    columns
}

fn record_values(
    record: &csv::ByteRecord,
    columns: &[Arc<str>],
    line: u32,
    shown: &Path,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Option<Arc<str>>> {
    if record.len() != columns.len() && !(record.len() == 1 && record.get(0) == Some(b"")) {
        problems.push(
            csv_diag(
                shown,
                Some(Position { line, column: 1 }),
                format!("row has {} fields but the header has {}", record.len(), columns.len()),
            )
            .with_context(format!("line {line}")),
        );
    }
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let raw = record.get(i).unwrap_or_default();
        let position = Some(Position { line, column: i as u32 + 1 });
        if raw.len() > MAX_FIELD_BYTES {
            problems.push(
                csv_diag(
                    shown,
                    position,
                    format!("value of `{column}` is {} bytes; the limit is {MAX_FIELD_BYTES}", raw.len()),
                )
                .with_context(format!("line {line}, column `{column}`")),
            );
            values.push(None);
            continue;
        }
        match std::str::from_utf8(raw) {
            Ok(s) => values.push(Some(Arc::from(s))),
            Err(_) => {
                problems.push(
                    csv_diag(shown, position, format!("value of `{column}` is not valid UTF-8"))
                        .with_context(format!("line {line}, column `{column}`"))
                        .with_help("save the CSV as UTF-8"),
                );
                values.push(None);
            }
        }
    }
    values
}

pub(super) fn is_blank(values: &[Option<Arc<str>>]) -> bool {
    values.iter().all(|v| v.as_deref().is_none_or(|s| s.trim().is_empty()))
}

fn csv_diag(shown: &Path, position: Option<Position>, message: String) -> Diagnostic {
    let mut d = Diagnostic::error(shown, message);
    d.position = position;
    d
}

/// Inline rows: the union of their keys is the column list, in first-seen order.
pub fn inline_rows(rows: &[IndexMap<String, String>]) -> RawRows {
    let mut columns: Vec<Arc<str>> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !columns.iter().any(|c| **c == **key) {
                columns.push(Arc::from(key.as_str()));
            }
        }
    }
    let out = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let values = columns.iter().map(|c| row.get(&**c).map(|v| Arc::from(v.as_str()))).collect();
            (i as u32 + 1, values)
        })
        .collect();
    (columns, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_one_the_header_uses_most_outside_quotes() {
        assert_eq!(detect_delimiter(b"sku,name,color\n"), b',');
        assert_eq!(detect_delimiter(b"sku;name;color\r\nA,1;b;c\r\n"), b';');
        assert_eq!(detect_delimiter(b"sku\tname\tcolor\n"), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b\",c\n"), b',');
        assert_eq!(detect_delimiter(b"sku\n"), b',');
        assert_eq!(detect_delimiter(b"a;b,c\n"), b',', "a tie goes to the comma");
        assert_eq!(detect_delimiter(b""), b',');
    }
}
