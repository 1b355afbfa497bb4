//! Everything that reaches the terminal. The rest of the crate returns data; `print_stdout` and
//! `print_stderr` are denied outside this module.
//!
//! Rules: stdout carries data (plans, `--json` events, reports asked for); stderr carries
//! progress, notes and errors. Progress bars only on a terminal; plain periodic lines otherwise.
//! `NO_COLOR` is honoured.

pub mod progress;

use std::io::{IsTerminal, Write};

/// Prints clap's message for a command line it refused (or its help or version text) and
/// returns the exit code: 0 for help and version, invalid input for the rest.
pub fn usage_error(error: &clap::Error) -> i32 {
    let _ = error.print();
    if error.use_stderr() { crate::exit_code::INVALID_INPUT } else { crate::exit_code::OK }
}

/// Output policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub verbosity: Verbosity,
    pub color: bool,
    pub stderr_is_terminal: bool,
}

impl Printer {
    pub fn new(verbosity: Verbosity) -> Printer {
        let stderr_is_terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer { verbosity, color: stderr_is_terminal && !no_color, stderr_is_terminal }
    }

    /// Data on stdout (always printed; `-q` silences only chatter).
    #[allow(clippy::print_stdout)]
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// A status line on stderr.
    pub fn note(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            self.stderr(text);
        }
    }

    pub fn verbose(&self, text: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.stderr(text);
        }
    }

    pub fn warn(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            let label = self.paint("warning:", "33;1");
            self.stderr(&format!("{label} {text}"));
        }
    }

    /// Errors are printed even with `-q`.
    pub fn error(&self, text: &str) {
        let label = self.paint("error:", "31;1");
        self.stderr(&format!("{label} {text}"));
    }

    /// Multi-line diagnostics, already formatted.
    pub fn diagnostics(&self, text: &str) {
        self.stderr(text.trim_end());
    }

    pub fn hint(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            let label = self.paint("hint:", "36;1");
            self.stderr(&format!("{label} {text}"));
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(text, "1")
    }

    pub fn paint(&self, text: &str, code: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    #[allow(clippy::print_stderr)]
    fn stderr(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
    }
}

/// `1234567` → `1,234,567`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count with its noun: `1 job`, `2 jobs`, `12,000 tasks` (nouns here take a plain `s`).
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{} {noun}s", thousands(n)) }
}

/// A size in bytes for people: `1.43 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Seconds as `1h02m`, `3m05s`, `12s`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A recorded timestamp (`2026-11-25T14:03:07.123456789Z`) for people: `2026-11-25 14:03:07 UTC`,
/// to the second. Text that is not a timestamp is shown as it is.
pub fn human_time(recorded: &str) -> String {
    match recorded.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => recorded.to_owned(),
    }
}

/// Asks a yes/no question on the terminal; anything but `y`/`yes` is no.
#[allow(clippy::print_stderr)]
pub fn confirm(printer: &Printer, question: &str) -> bool {
    let _ = printer;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    drop(err);
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::{bytes, duration, thousands};

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(duration(std::time::Duration::from_secs(3725)), "1h02m");
        assert_eq!(duration(std::time::Duration::from_secs(185)), "3m05s");
        assert_eq!((bytes(999), bytes(1_500_000)), ("999 B".into(), "1.43 MiB".into()));
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn timestamps_are_shown_to_the_second() {
        assert_eq!(super::human_time("2026-11-25T14:03:07.123456789Z"), "2026-11-25 14:03:07 UTC");
        assert_eq!(super::human_time("not a time"), "not a time");
    }
}
