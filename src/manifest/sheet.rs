//! Spreadsheet rows (`vars: products.xlsx`, also `.xlsm`, `.xlsb`, `.xls`, `.ods`): the first
//! sheet or the one `sheet:` names, read with calamine. Each cell becomes the text a CSV export
//! would hold — integers without `.0`, numbers to Excel's 15 significant digits, dates in ISO
//! 8601 — and problems are named by sheet, row and column as Excel shows them (`C4`).

use std::path::Path;
use std::sync::Arc;

use calamine::{Data, Reader};

use super::diagnostic::Diagnostic;
use super::load::closest;
use super::vars::{MAX_FIELD_BYTES, RawRows, is_blank};
use crate::fsutil;

/// File extensions read as spreadsheets (compared without case).
pub const SPREADSHEET_EXTENSIONS: &[&str] = &["xlsx", "xlsm", "xlsb", "xls", "ods"];

/// Largest spreadsheet accepted: a workbook is read whole and unpacked in memory, and a million
/// rows of product data fit well below this.
pub const MAX_SHEET_BYTES: u64 = 256 << 20;

/// Problems reported per sheet before summarising the rest.
const MAX_CELL_PROBLEMS: usize = 20;

pub fn is_spreadsheet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SPREADSHEET_EXTENSIONS.iter().any(|s| s.eq_ignore_ascii_case(e)))
}

/// Reads the rows of one sheet: the first used row is the header. Returns the sheet's name and
/// its rows (`line` is the sheet's 1-based row number), or every problem found.
pub fn load_sheet(path: &Path, shown: &Path, sheet: Option<&str>) -> Result<(String, RawRows), Vec<Diagnostic>> {
    let err = |msg: String| vec![Diagnostic::error(shown, msg)];
    let meta = fsutil::metadata(path)
        .map_err(|e| err(format!("cannot read spreadsheet {}: {}", shown.display(), fsutil::io_reason(&e))))?;
    if !meta.is_file() {
        return Err(err(format!("{} is not a file", shown.display())));
    }
    if meta.len() > MAX_SHEET_BYTES {
        return Err(err(format!(
            "spreadsheet {} is {} bytes; the limit is {MAX_SHEET_BYTES}",
            shown.display(),
            meta.len()
        )));
    }
    let mut book = calamine::open_workbook_auto(path).map_err(|e| {
        vec![
            Diagnostic::error(shown, format!("cannot read spreadsheet {}: {e}", shown.display()))
                .with_help("save it as .xlsx (or export the sheet as CSV)"),
        ]
    })?;
    let names = book.sheet_names();
    let name = pick_sheet(&names, sheet, shown)?;
    let range = book
        .worksheet_range(&name)
        .map_err(|e| err(format!("cannot read sheet `{name}` of {}: {e}", shown.display())))?;
    let Some((first_row, first_col)) = range.start() else {
        let help = other_sheets_help(&names, sheet)
            .unwrap_or_else(|| "the first row must name the columns, e.g. sku | name | color".into());
        return Err(vec![
            Diagnostic::error(shown, format!("sheet `{name}` of {} is empty", shown.display())).with_help(help),
        ]);
    };
    let mut reader = SheetReader { shown, name: &name, first_col, problems: Vec::new(), more: 0 };
    let mut rows = range.rows();
    let header = rows.next().unwrap_or_default();
    let body: Vec<(u32, &[Data])> = rows.enumerate().map(|(i, r)| (first_row + i as u32 + 2, r)).collect();
    let columns = reader.header(header, first_row + 1, &body);
    let mut out = Vec::with_capacity(body.len());
    for (line, cells) in body {
        let values: Vec<Option<Arc<str>>> = columns
            .iter()
            .map(|(i, column)| Some(reader.cell(line, *i, column, cells.get(*i).unwrap_or(&Data::Empty))))
            .collect();
        if !is_blank(&values) {
            out.push((line, values));
        }
    }
    let problems = reader.finish();
    if !problems.is_empty() {
        return Err(problems);
    }
    if out.is_empty() {
        let d = Diagnostic::error(shown, format!("sheet `{name}` of {} has a header but no rows", shown.display()));
        return Err(vec![match other_sheets_help(&names, sheet) {
            Some(help) => d.with_help(help),
            None => d,
        }]);
    }
    Ok((name, (columns.into_iter().map(|(_, c)| c).collect(), out)))
}

/// When the first sheet was read by default and there are others: how to name one.
fn other_sheets_help(names: &[String], wanted: Option<&str>) -> Option<String> {
    (wanted.is_none() && names.len() > 1)
        .then(|| format!("the first sheet is read unless `sheet:` names another; sheets: {}", names.join(", ")))
}

fn pick_sheet(names: &[String], wanted: Option<&str>, shown: &Path) -> Result<String, Vec<Diagnostic>> {
    match wanted {
        None => names
            .first()
            .cloned()
            .ok_or_else(|| vec![Diagnostic::error(shown, format!("spreadsheet {} has no sheets", shown.display()))]),
        Some(w) => {
            if let Some(n) = names.iter().find(|n| *n == w).or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(w)))
            {
                return Ok(n.clone());
            }
            let help = match closest(w, names) {
                Some(b) => format!("did you mean `{b}`? sheets: {}", names.join(", ")),
                None => format!("sheets: {}", names.join(", ")),
            };
            Err(vec![
                Diagnostic::error(shown, format!("spreadsheet {} has no sheet `{w}`", shown.display())).with_help(help),
            ])
        }
    }
}

struct SheetReader<'a> {
    shown: &'a Path,
    name: &'a str,
    /// 0-based column of the used range's first cell (for the letters in diagnostics).
    first_col: u32,
    problems: Vec<Diagnostic>,
    more: usize,
}

impl SheetReader<'_> {
    /// The named columns: (index in the row, name). A header cell left empty over an empty
    /// column is no column at all (a formatted but unused column); over values, a problem.
    fn header(&mut self, header: &[Data], line: u32, body: &[(u32, &[Data])]) -> Vec<(usize, Arc<str>)> {
        let mut columns: Vec<(usize, Arc<str>)> = Vec::new();
        for (i, cell) in header.iter().enumerate() {
            let name = self.cell(line, i, "header", cell);
            let name = name.trim();
            if name.is_empty() {
                if body.iter().any(|(_, r)| r.get(i).is_some_and(|c| !matches!(c, Data::Empty))) {
                    self.problem(line, i, "this column has values but no name in the header".into(), None);
                }
                continue;
            }
            if columns.iter().any(|(_, c)| **c == *name) {
                self.problem(line, i, format!("column `{name}` appears twice in the header"), None);
            }
            columns.push((i, Arc::from(name)));
        }
        columns
    }

    /// The cell's text; a problem (and an empty text) for an error value or an oversized text.
    fn cell(&mut self, line: u32, i: usize, column: &str, cell: &Data) -> Arc<str> {
        let text = match cell {
            Data::Empty => return Arc::from(""),
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
            Data::Int(n) => n.to_string(),
            Data::Float(f) => number_text(*f),
            Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            Data::DateTime(d) => date_text(d),
            Data::Error(e) => {
                self.problem(
                    line,
                    i,
                    format!("the value of `{column}` is the spreadsheet error {e}"),
                    Some("fix the formula, or replace it by its value".into()),
                );
                return Arc::from("");
            }
        };
        if text.len() > MAX_FIELD_BYTES {
            self.problem(
                line,
                i,
                format!("the value of `{column}` is {} bytes; the limit is {MAX_FIELD_BYTES}", text.len()),
                None,
            );
            return Arc::from("");
        }
        Arc::from(text)
    }

    fn problem(&mut self, line: u32, i: usize, message: String, help: Option<String>) {
        if self.problems.len() >= MAX_CELL_PROBLEMS {
            self.more += 1;
            return;
        }
        let cell = format!("{}{line}", column_letters(self.first_col + i as u32));
        let d = Diagnostic::error(self.shown, message)
            .with_context(format!("sheet `{}`, cell {cell} (row {line})", self.name));
        self.problems.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        if self.more > 0 {
            self.problems.push(Diagnostic::error(
                self.shown,
                format!("… and {} more problems in sheet `{}` of {}", self.more, self.name, self.shown.display()),
            ));
        }
        self.problems
    }
}

/// A number as Excel shows it in a CSV export: an integer without `.0` (`12`, not `12.0`: SKUs
/// and quantities are typed as numbers), others to 15 significant digits (`=0.1+0.2` is `0.3`).
fn number_text(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    format!("{rounded}")
}

/// A date `2026-03-01`, a date and time `2026-03-01T14:30:00`, a time `14:30:00`, a duration
/// `36:15:00` (hours can exceed 24).
fn date_text(d: &calamine::ExcelDateTime) -> String {
    if d.is_duration() {
        let seconds = (d.as_f64() * 86_400.0).round() as i64;
        return format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    }
    let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
    let time = if ms > 0 { format!("{h:02}:{mi:02}:{s:02}.{ms:03}") } else { format!("{h:02}:{mi:02}:{s:02}") };
    if d.as_f64() < 1.0 {
        time
    } else if (h, mi, s, ms) == (0, 0, 0, 0) {
        format!("{y:04}-{mo:02}-{day:02}")
    } else {
        format!("{y:04}-{mo:02}-{day:02}T{time}")
    }
}

/// `A`, …, `Z`, `AA`, … for a 0-based column.
fn column_letters(mut col: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_a_csv_export_shows_them() {
        assert_eq!(number_text(12.0), "12");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(4006381333931.0), "4006381333931");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(19.99), "19.99");
        assert_eq!(number_text(1e20), "100000000000000000000");
    }

    #[test]
    fn column_letters_follow_excel() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(27), "AB");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }

    #[test]
    fn dates_are_iso() {
        use calamine::{ExcelDateTime, ExcelDateTimeType};
        let date = |v: f64, t| date_text(&ExcelDateTime::new(v, t, false));
        assert_eq!(date(45943.0, ExcelDateTimeType::DateTime), "2025-10-13");
        assert_eq!(date(45943.5, ExcelDateTimeType::DateTime), "2025-10-13T12:00:00");
        assert_eq!(date(0.75, ExcelDateTimeType::DateTime), "18:00:00");
        assert_eq!(date(1.5, ExcelDateTimeType::TimeDelta), "36:00:00");
    }
}
