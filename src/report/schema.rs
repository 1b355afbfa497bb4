//! `report.json`, version [`REPORT_VERSION`]: the types that define it (documented field by
//! field in `docs/report.md`, with a JSON Schema in `schemas/report.schema.json`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::{TokenCounts, Usd};

pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Report {
    pub report_version: u32,
    pub run: RunInfo,
    pub totals: Breakdown,
    pub by_model: BTreeMap<String, Breakdown>,
    pub by_job: BTreeMap<String, Breakdown>,
    /// Keyed `ratio@size`, e.g. `16:9@2K`.
    pub by_size: BTreeMap<String, Breakdown>,
    /// Where the API's image tokens differ from the catalogue's table.
    pub drift: Vec<Drift>,
    /// Review marks (`nanobatch review`, `nanobatch mark`); present once anything was marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewCounts>,
    pub tasks: Vec<TaskEntry>,
    /// Spend on tasks the manifest no longer has (a removed row or job, an edited prompt's
    /// earlier version): counted in `totals` and as the group [`REMOVED_GROUP`] of `by_model`,
    /// `by_job` and `by_size`, and listed here with their files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_longer_in_manifest: Vec<RemovedTaskEntry>,
    /// Earlier images moved aside by newer ones and still kept under `.nanobatch/superseded/`
    /// (`nanobatch prune DIR` deletes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededEntry>,
}

/// The key of the group of tasks no longer in the manifest in `by_model`, `by_job`, `by_size`.
pub const REMOVED_GROUP: &str = "(no longer in the manifest)";

/// A task the journal knows and the manifest no longer has.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RemovedTaskEntry {
    pub id: String,
    /// Its fingerprint.
    pub fp: String,
    /// `true` when the manifest still has a task of this id, with other inputs: this is an
    /// earlier version of it.
    pub earlier_version: bool,
    /// `succeeded`, `failed`, `no_image`, or `pending` (attempts without an outcome).
    pub status: String,
    pub attempts: u32,
    /// Its images where they are now (moved under `.nanobatch/superseded/` when a newer image
    /// took their place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// From `usageMetadata` of every billed response.
    pub tokens: TokenCountsSchema,
    /// Billed, from the API's reported usage.
    #[schemars(with = "f64")]
    pub cost_usd: Usd,
    /// Estimates of attempts whose outcome is unknown.
    #[schemars(with = "f64")]
    pub possibly_billed_usd: Usd,
}

/// An earlier image kept under `.nanobatch/superseded/`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SupersededEntry {
    /// The task it was made for.
    pub id: String,
    /// The fingerprint it was made for (empty when unknown).
    pub fp: String,
    /// Where it is now, relative to the output directory.
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sidecar: String,
    /// Where it was.
    pub original: String,
    /// `changed`, `rerun`, `modified`, `unrecorded` or `found` (see docs/report.md).
    pub reason: String,
    pub bytes: u64,
    /// When it was moved.
    pub at: String,
}

/// Tasks with an image, by their review mark.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct ReviewCounts {
    pub approved: u64,
    pub rejected: u64,
    /// Images nobody marked yet (or whose mark was cleared, or that were re-rolled since).
    pub pending: u64,
}

/// A task's review mark: the verdict on its current image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskReview {
    /// `approved` or `rejected`.
    pub mark: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was marked (RFC 3339).
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RunInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub manifest: String,
    pub manifest_sha256: String,
    pub tool_version: String,
    pub catalog_version: String,
    pub prices_date: String,
    pub prices_source: String,
    pub output_dir: String,
    /// First run start in this directory (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Last run end, if it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    pub generated: String,
    /// `completed`, `interrupted`, `budget`, `quota`, `fail_fast`, `fatal`, `aborted`, or
    /// `in_progress` (no end record yet).
    pub status: String,
    pub interrupted: bool,
    /// Number of `nanobatch run` invocations recorded in the journal.
    pub runs: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Breakdown {
    pub tasks: TaskCounts,
    /// Failed tasks by error class (`server_error`, `outcome_unknown`, `no_image`, …).
    pub failed_by_class: BTreeMap<String, u64>,
    /// HTTP requests sent (every attempt).
    pub requests: u64,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Attempts whose outcome is unknown (timeout, connection lost): they may have been billed.
    pub possibly_billed_attempts: u64,
    pub tokens: Tokens,
    pub cost_usd: Costs,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct TaskCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub no_image: u64,
    pub skipped: u64,
    pub pending: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Tokens {
    /// From the catalogue's tables and estimation rules, for every task of the plan.
    pub estimated: TokenCountsSchema,
    /// From `usageMetadata` of every billed response.
    pub actual: TokenCountsSchema,
}

/// Token counts split the way they are billed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct TokenCountsSchema {
    pub input_text: u64,
    pub input_image: u64,
    pub output_image: u64,
    pub output_text: u64,
    pub thinking: u64,
}

impl From<TokenCounts> for TokenCountsSchema {
    fn from(t: TokenCounts) -> Self {
        TokenCountsSchema {
            input_text: t.input_text,
            input_image: t.input_image,
            output_image: t.output_image,
            output_text: t.output_text,
            thinking: t.thinking,
        }
    }
}

impl TokenCountsSchema {
    pub fn add(&mut self, t: &TokenCounts) {
        self.input_text += t.input_text;
        self.input_image += t.input_image;
        self.output_image += t.output_image;
        self.output_text += t.output_text;
        self.thinking += t.thinking;
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Costs {
    /// The plan's estimate at the interactive price.
    #[schemars(with = "f64")]
    pub estimated: Usd,
    /// The plan's estimate at the Batch API price (50%).
    #[schemars(with = "f64")]
    pub estimated_batch: Usd,
    /// Billed, from the API's reported usage.
    #[schemars(with = "f64")]
    pub actual: Usd,
    /// Estimates of attempts whose outcome is unknown.
    #[schemars(with = "f64")]
    pub possibly_billed: Usd,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Drift {
    pub model: String,
    pub size: String,
    pub catalogue_image_tokens: u64,
    pub actual_image_tokens: Vec<u64>,
    pub tasks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskEntry {
    pub id: String,
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub key: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub variant: u32,
    pub model: String,
    pub ratio: String,
    pub size: String,
    /// `succeeded`, `failed`, `no_image`, `skipped`, `pending`.
    pub status: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    pub tokens: Tokens,
    pub cost_usd: Costs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mismatch: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grounding: Vec<String>,
    /// The review mark of the task's current image; absent: pending review (or no image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<TaskReview>,
    /// Usage the server reported beyond what any request can use; `tokens.actual` and
    /// `cost_usd.actual` count the estimate instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reported: Option<TokenCountsSchema>,
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}
