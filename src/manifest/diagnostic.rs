//! Problems found in a manifest, its CSV files or its reference images: where (file, line,
//! column, key path), what is wrong, and how to fix it. Validation collects all of them and
//! reports them at once.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{LocationIndex, Position};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Not a problem: something the manifest wrote was read in a way worth knowing (a size
    /// written `1k` is sent as `1K`).
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub position: Option<Position>,
    /// Where in the document: a key path (`jobs.packshot.sizes[1]`) or `row 4, column "sku"`.
    pub context: Option<String>,
    pub message: String,
    pub help: Option<String>,
    /// The source line the position points into, for the caret snippet.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            position: None,
            context: None,
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Diagnostic {
        self.context = Some(context.into());
        self
    }

    pub fn at(mut self, position: Option<Position>, source: &str) -> Diagnostic {
        self.position = position;
        self.source_line =
            position.and_then(|p| source.lines().nth(p.line.saturating_sub(1) as usize)).map(str::to_owned);
        self
    }

    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }

    pub fn note(mut self) -> Diagnostic {
        self.severity = Severity::Note;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `error: …` / `  --> file:line:col` / snippet with a caret / `  = help: …`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        writeln!(f, "{label}: {}", self.message)?;
        let file = self.file.display();
        match (self.position, &self.context) {
            (Some(p), Some(c)) => writeln!(f, "  --> {file}:{}:{} ({c})", p.line, p.column)?,
            (Some(p), None) => writeln!(f, "  --> {file}:{}:{}", p.line, p.column)?,
            (None, Some(c)) => writeln!(f, "  --> {file} ({c})")?,
            (None, None) => writeln!(f, "  --> {file}")?,
        }
        // A note is not a problem: where it is suffices.
        if let (Some(p), Some(line), false) = (self.position, &self.source_line, self.severity == Severity::Note) {
            write_snippet(f, p, line)?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "   = help: {help}")?;
        }
        Ok(())
    }
}

fn write_snippet(f: &mut fmt::Formatter<'_>, p: Position, line: &str) -> fmt::Result {
    let number = p.line.to_string();
    let pad = " ".repeat(number.len());
    let shown: String = line.chars().take(160).collect();
    let col = (p.column.max(1) - 1) as usize;
    let prefix: String = shown.chars().take(col).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    let rest: Vec<char> = shown.chars().skip(col).collect();
    let token_len = match rest.first() {
        // A quoted scalar: underline up to the closing quote.
        Some(&q @ ('"' | '\'')) => rest.iter().skip(1).position(|c| *c == q).map_or(rest.len(), |end| end + 2),
        Some('[' | '{') => 1,
        _ => rest.iter().take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | ']' | '}')).count(),
    }
    .max(1);

    writeln!(f, "{pad} |")?;
    writeln!(f, "{number} | {shown}")?;
    writeln!(f, "{pad} | {prefix}{}", "^".repeat(token_len))
}

/// Every problem found, errors first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Warnings and notes: what is printed even when the manifest is valid.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted: Vec<&Diagnostic> = self.0.iter().collect();
        sorted.sort_by_key(|d| d.severity);
        for (i, d) in sorted.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let errors = self.error_count();
        if errors > 0 {
            writeln!(f)?;
            let noun = if errors == 1 { "problem" } else { "problems" };
            writeln!(f, "{errors} {noun} found; nothing was sent and nothing was written")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Makes diagnostics that point into one YAML file.
#[derive(Debug)]
pub struct YamlReporter<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    pub index: &'a LocationIndex,
    pub out: Diagnostics,
}

impl<'a> YamlReporter<'a> {
    pub fn new(file: &'a Path, source: &'a str, index: &'a LocationIndex) -> YamlReporter<'a> {
        YamlReporter { file, source, index, out: Diagnostics::default() }
    }

    /// A problem with the value at `path`.
    pub fn value(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        let d = Diagnostic::error(self.file, message)
            .with_context(display_path(path))
            .at(self.index.value(path), self.source);
        self.out.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    /// A problem with the key at `path` (unknown key, misplaced key).
    pub fn key(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        let d = Diagnostic::error(self.file, message)
            .with_context(display_path(path))
            .at(self.index.key(path), self.source);
        self.out.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>, help: Option<String>) {
        let d = Diagnostic::error(self.file, message)
            .with_context(display_path(path))
            .at(self.index.value(path), self.source)
            .warning();
        self.out.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    /// Something about the value at `path` worth knowing that is not a problem.
    pub fn note(&mut self, path: &str, message: impl Into<String>) {
        let d = Diagnostic::error(self.file, message)
            .with_context(display_path(path))
            .at(self.index.value(path), self.source)
            .note();
        self.out.push(d);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() { "top level".to_owned() } else { path.to_owned() }
}
