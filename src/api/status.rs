//! `google.rpc.Status` error bodies: `{"error": {code, message, status, details[]}}`.
//!
//! Details are `google.protobuf.Any` values identified by their `@type` URL; we read the ones the
//! executor branches on (RetryInfo, QuotaFailure, ErrorInfo) into typed fields, so that no
//! decision is ever made by matching the human-readable message.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcStatus {
    pub code: Option<i64>,
    pub message: String,
    /// The canonical status name, e.g. `RESOURCE_EXHAUSTED` (absent in batch per-line errors).
    pub status: Option<String>,
    pub retry_delay: Option<Duration>,
    pub quota: Vec<QuotaViolation>,
    /// `ErrorInfo.reason`, e.g. `API_KEY_INVALID`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaViolation {
    pub quota_id: Option<String>,
    pub quota_metric: Option<String>,
    pub quota_value: Option<String>,
}

impl QuotaViolation {
    /// A per-day quota (`GenerateRequestsPerDayPerProjectPerModel…`): retrying before the reset
    /// at midnight Pacific is pointless.
    pub fn is_per_day(&self) -> bool {
        let id = self.quota_id.as_deref().unwrap_or_default();
        let metric = self.quota_metric.as_deref().unwrap_or_default();
        id.contains("PerDay") || metric.contains("per_day") || metric.contains("requests_per_day")
    }
}

impl RpcStatus {
    pub fn is_daily_quota(&self) -> bool {
        self.quota.iter().any(QuotaViolation::is_per_day)
    }

    /// Whether the body is the provider's own error for this status: a `google.rpc.Status` with
    /// a canonical status name whose `code` is the HTTP status. A gateway's page, a foreign JSON
    /// body or a mismatched code is something else in between, which may have answered after
    /// forwarding the request.
    pub fn is_provider_error(&self, http_status: u16) -> bool {
        self.status.is_some() && self.code == Some(i64::from(http_status))
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: RawStatus,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Option<Vec<Value>>,
}

/// Parses an error body. A JSON array of one error (a non-SSE stream error) is unwrapped.
/// Returns `None` when the body is not a Status at all (an HTML page from a proxy, say).
pub fn parse_error_body(body: &[u8]) -> Option<RpcStatus> {
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        return Some(from_raw(env.error));
    }
    if let Ok(mut list) = serde_json::from_slice::<Vec<Envelope>>(body)
        && list.len() == 1
    {
        return Some(from_raw(list.remove(0).error));
    }
    None
}

/// What an error body that is not a `google.rpc.Status` says, on one line: an HTML page's
/// `<title>` (else its first heading, else its first line of text), or the start of any other
/// body, whitespace collapsed. A gateway's "504 Gateway Time-out" page reads as that, not as
/// `<html>`.
pub fn describe_foreign_body(content_type: Option<&str>, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 << 10)]);
    let html =
        content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) || text.trim_start().starts_with('<');
    let summary = if html {
        ["title", "h1", "h2"]
            .iter()
            .find_map(|tag| element_text(&text, tag))
            .unwrap_or_else(|| collapse(&strip_tags(&text)))
    } else {
        collapse(&text)
    };
    let summary: String = summary.chars().take(200).collect();
    if summary.is_empty() { "(empty body)".to_owned() } else { summary }
}

/// The text inside the first `<tag …>…</tag>`, entities decoded, whitespace collapsed.
fn element_text(html: &str, tag: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find(&format!("<{tag}"))?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find(&format!("</{tag}"))?;
    let text = collapse(&decode_entities(&strip_tags(&html[start..end])));
    (!text.is_empty()).then_some(text)
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a bare Status (batch per-line errors, operation errors).
pub fn parse_status_value(value: &Value) -> Option<RpcStatus> {
    let raw: RawStatus = serde_json::from_value(value.clone()).ok()?;
    Some(from_raw(raw))
}

fn from_raw(raw: RawStatus) -> RpcStatus {
    let mut status = RpcStatus {
        code: raw.code,
        message: raw.message.unwrap_or_default(),
        status: raw.status,
        ..RpcStatus::default()
    };
    for detail in raw.details.unwrap_or_default() {
        read_detail(&detail, &mut status);
    }
    status
}

fn read_detail(detail: &Value, status: &mut RpcStatus) {
    let type_url = detail.get("@type").and_then(Value::as_str).unwrap_or_default();
    let type_name = type_url.rsplit('/').next().unwrap_or_default();
    match type_name {
        "google.rpc.RetryInfo" => {
            status.retry_delay = detail.get("retryDelay").and_then(Value::as_str).and_then(parse_proto_duration);
        }
        "google.rpc.QuotaFailure" => {
            let violations = detail.get("violations").and_then(Value::as_array);
            for v in violations.into_iter().flatten() {
                let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
                status.quota.push(QuotaViolation {
                    quota_id: field("quotaId"),
                    quota_metric: field("quotaMetric"),
                    quota_value: field("quotaValue"),
                });
            }
        }
        "google.rpc.ErrorInfo" => {
            status.reason = detail.get("reason").and_then(Value::as_str).map(str::to_owned);
        }
        _ => {}
    }
}

/// A protobuf `Duration` in its JSON form: `"26s"`, `"34.4s"`, `"0.300s"`.
pub fn parse_proto_duration(text: &str) -> Option<Duration> {
    let secs = text.trim().strip_suffix('s')?;
    let value: f64 = secs.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value))
}

/// An HTTP `Retry-After` header: delta-seconds (HTTP dates are not used by Google's front end).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{describe_foreign_body, parse_error_body, parse_proto_duration};

    #[test]
    fn proto_durations() {
        assert_eq!(parse_proto_duration("26s"), Some(Duration::from_secs(26)));
        assert_eq!(parse_proto_duration("34.4s"), Some(Duration::from_secs_f64(34.4)));
        assert_eq!(parse_proto_duration("0.300s"), Some(Duration::from_millis(300)));
        assert_eq!(parse_proto_duration("soon"), None);
        assert_eq!(parse_proto_duration("-1s"), None);
    }

    #[test]
    fn non_status_bodies_are_none() {
        assert!(parse_error_body(b"<html>502 Bad Gateway</html>").is_none());
        assert!(parse_error_body(b"").is_none());
    }

    #[test]
    fn foreign_bodies_are_summed_up_by_their_title_or_first_text() {
        let nginx = b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(describe_foreign_body(Some("text/html"), nginx), "504 Gateway Time-out");
        let cloudflare =
            b"<!DOCTYPE html><html><head><title>example.com | 524: A timeout occurred</title></head></html>";
        assert_eq!(describe_foreign_body(None, cloudflare), "example.com | 524: A timeout occurred");
        let untitled = b"<html><body><h1>413 Request Entity &amp; Too Large</h1></body></html>";
        assert_eq!(describe_foreign_body(Some("text/html"), untitled), "413 Request Entity & Too Large");
        assert_eq!(describe_foreign_body(Some("text/html"), b"<p>just\n  text</p>"), "just text");
        let json = br#"{"message": "Endpoint request timed out"}"#;
        assert_eq!(
            describe_foreign_body(Some("application/json"), json),
            r#"{"message": "Endpoint request timed out"}"#
        );
        assert_eq!(describe_foreign_body(None, b""), "(empty body)");
    }
}
