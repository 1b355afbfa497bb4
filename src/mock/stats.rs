//! The emulator's counters, served at `GET /_stats`: what was asked, what was answered, what
//! was (or might have been) billed, and for every distinct request body (its fingerprint) when
//! it arrived and what it got, so a test can prove that nothing was requested twice and that no
//! retry came before the advertised delay.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// When the emulator started (milliseconds since the Unix epoch): `at_ms` values are relative
    /// to it.
    pub started_unix_ms: f64,
    pub requests: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_model: BTreeMap<String, u64>,
    /// 200 responses that carried an image and were delivered whole.
    pub images: u64,
    /// 200 responses without an image (safety, text only, blocked).
    pub no_image: u64,
    /// Image responses cut off after generation: the client cannot know, the server billed.
    pub dropped: u64,
    pub truncated: u64,
    /// Usage of every delivered 200 response.
    pub usage: UsageTotals,
    /// Usage of responses generated but not delivered (dropped, truncated).
    pub undelivered_usage: UsageTotals,
    pub fingerprints: BTreeMap<String, RequestLog>,
    /// Requests authenticated by `x-goog-api-key` and by `?key=`.
    pub auth_header: u64,
    pub auth_query: u64,
    /// Batch API counters.
    pub batches_created: u64,
    pub files_uploaded: u64,
    pub batch_requests: u64,
    /// Images generated (and billed) whose answer a gateway replaced with its error page.
    #[serde(default)]
    pub gateway_billed: u64,
    /// 200s that carried a truncated or corrupt image (billed).
    #[serde(default)]
    pub broken_images: u64,
    /// Images handed over as a `fileData` URL (billed), and the downloads of those URLs.
    #[serde(default)]
    pub file_images: u64,
    #[serde(default)]
    pub file_downloads: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageTotals {
    pub prompt: u64,
    pub input_text: u64,
    pub input_image: u64,
    pub candidates: u64,
    pub output_image: u64,
    pub output_text: u64,
    pub thoughts: u64,
}

impl UsageTotals {
    pub fn add(&mut self, other: &UsageTotals) {
        self.prompt += other.prompt;
        self.input_text += other.input_text;
        self.input_image += other.input_image;
        self.candidates += other.candidates;
        self.output_image += other.output_image;
        self.output_text += other.output_text;
        self.thoughts += other.thoughts;
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestLog {
    pub model: String,
    /// The start of the request's last user turn, to tell requests apart in tests.
    pub prompt: String,
    pub count: u64,
    /// Delivered 200s with an image.
    pub successes: u64,
    pub events: Vec<RequestEvent>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestEvent {
    /// Milliseconds since the emulator started.
    pub at_ms: f64,
    /// HTTP status, or 0 for a dropped connection.
    pub status: u16,
    /// What happened: `image`, `no-image`, `dropped`, `truncated`, `rate-limited`, …
    pub outcome: String,
    /// The delay the response asked for, if any.
    pub retry_after_ms: Option<f64>,
}

impl Stats {
    /// Fingerprints that were requested again after a delivered success.
    pub fn repeated_successes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (fp, log) in &self.fingerprints {
            let first_success = log.events.iter().position(|e| e.outcome == "image");
            if let Some(i) = first_success
                && i + 1 < log.events.len()
            {
                out.push(fp.clone());
            }
        }
        out
    }

    /// Requests that came sooner than the previous response's advertised delay:
    /// (fingerprint, earliest allowed ms, actual ms).
    pub fn early_retries(&self) -> Vec<(String, f64, f64)> {
        let mut out = Vec::new();
        for (fp, log) in &self.fingerprints {
            for pair in log.events.windows(2) {
                if let Some(delay) = pair[0].retry_after_ms {
                    let earliest = pair[0].at_ms + delay;
                    // 1 ms of slack for clock granularity.
                    if pair[1].at_ms + 1.0 < earliest {
                        out.push((fp.clone(), earliest, pair[1].at_ms));
                    }
                }
            }
        }
        out
    }
}
