//! Secrets and their redaction.
//!
//! The API key lives in [`Secret`], whose `Debug` and `Display` print `[redacted]`; the only way
//! to read it is [`Secret::expose`], which only `api::http` calls when it builds a request.
//! [`redact_url`] and [`redact_text`] scrub `key=` query parameters (and any known key value)
//! from text that may have come from an HTTP library, before it reaches a log, an error, a
//! report, a sidecar or the journal.
//!
//! A key is scrubbed whatever its length (a proxy's key may be a few characters; redacting a
//! short word in an error message is the lesser harm), and in the forms it takes on the way:
//! percent-encoded as in a `?key=` query (upper or lower case hex) and escaped as in a JSON
//! string, which is how a server that echoes the request shows it.

use std::fmt;
use std::sync::{OnceLock, RwLock};

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        let secret = Secret(value.into());
        remember(&secret.0);
        secret
    }

    /// The only way to read the secret. Call it where the value goes on the wire, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Every secret value this process has seen, so that [`redact_text`] can scrub them from any text
/// (an error message that echoes a header, a panic payload) even when they are not in a `key=`
/// parameter.
fn known_secrets() -> &'static RwLock<Vec<String>> {
    static KNOWN: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(Vec::new()))
}

fn remember(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut known = known_secrets().write().unwrap_or_else(|e| e.into_inner());
    for form in encoded_forms(value) {
        if !known.contains(&form) {
            known.push(form);
        }
    }
    // Longest first: a form that contains another is replaced whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// `value` as it may appear in text that echoes a request: itself, form-encoded as reqwest puts
/// it in a query (`+` for a space), percent-encoded with upper- or lower-case hex, and escaped
/// as a JSON string (with or without `\/`).
fn encoded_forms(value: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let percent = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.trim_matches('"').to_owned();
    let mut forms =
        vec![value.to_owned(), lower_hex(&form), form, lower_hex(&percent), percent, json.replace('/', "\\/"), json];
    forms.sort();
    forms.dedup();
    forms
}

/// `%2F` → `%2f`: servers and libraries differ in the case of percent-escapes.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

/// Replaces the value of every `key=` query parameter in `url` with `[redacted]`.
pub fn redact_url(url: &str) -> String {
    redact_query_keys(url)
}

/// Scrubs `key=…` parameters and every known secret value from free text.
pub fn redact_text(text: &str) -> String {
    let mut out = redact_query_keys(text);
    let known = known_secrets().read().unwrap_or_else(|e| e.into_inner());
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "[redacted]");
        }
    }
    out
}

fn redact_query_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = find_key_param(rest) {
        let value_start = pos + "key=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("[redacted]");
        let value_len = rest[value_start..]
            .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c == ')' || c.is_whitespace())
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

/// Position of a `key=` that starts a query parameter (after `?` or `&`), case-insensitive.
fn find_key_param(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        if (bytes[i] == b'?' || bytes[i] == b'&')
            && bytes.len() >= i + 5
            && bytes[i + 1..i + 5].eq_ignore_ascii_case(b"key=")
        {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// A log writer that scrubs secrets from every line before it reaches stderr (dependencies such
/// as reqwest log request URLs, `?key=` included, at debug level).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

#[cfg(test)]
mod tests {
    use super::{Secret, redact_text, redact_url};

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("AIzaSyTHIS-IS-A-TEST-KEY-0000000000000");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "AIzaSyTHIS-IS-A-TEST-KEY-0000000000000");
    }

    #[test]
    fn key_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("https://h/v1beta/models/m:generateContent?key=abc123&alt=sse"),
            "https://h/v1beta/models/m:generateContent?key=[redacted]&alt=sse"
        );
        assert_eq!(
            redact_url("error sending request for url (http://127.0.0.1:9/x?alt=1&KEY=zzz)"),
            "error sending request for url (http://127.0.0.1:9/x?alt=1&KEY=[redacted])"
        );
        assert_eq!(redact_url("no query here: monkey=1"), "no query here: monkey=1");
    }

    #[test]
    fn short_keys_and_their_encoded_forms_are_scrubbed() {
        let _s = Secret::new("k/7+ y=");
        for echoed in ["k/7+ y=", "k%2F7%2B+y%3D", "k%2f7%2b+y%3d", "k%2F7%2B%20y%3D", "k\\/7+ y="] {
            let text = format!("invalid key {echoed} in request");
            assert_eq!(redact_text(&text), "invalid key [redacted] in request", "{echoed}");
        }
        let _seven = Secret::new("abc1234");
        assert_eq!(redact_text("API key abc1234 is not valid"), "API key [redacted] is not valid");
    }

    #[test]
    fn known_secret_values_are_scrubbed_anywhere() {
        let _s = Secret::new("sk-known-secret-value-for-redaction-test");
        assert_eq!(redact_text("header was sk-known-secret-value-for-redaction-test!"), "header was [redacted]!");
    }
}
