//! The journal's record types (JSON Lines, format version [`FORMAT_VERSION`]).
//!
//! Compatibility rule: a reader refuses a journal with a newer format version; new optional
//! fields may be added without a version change (readers ignore unknown fields, writers omit
//! empty ones).

use serde::{Deserialize, Serialize};

use crate::catalog::{Tier, TokenCounts, Usd};

pub const FORMAT_NAME: &str = "nanobatch-journal";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub tool: String,
    pub created: String,
}

/// One line of the journal (after the header).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    Run(RunRecord),
    /// Written (and fsynced) before a request is sent: if no outcome follows, the request may
    /// have been billed.
    Sent(SentRecord),
    // Boxed: a journal holds one of each per task beside many small records, and a 400-byte
    // enum would make every `Sent` as big as a `Task` (resume and reports hold them all).
    Attempt(Box<AttemptRecord>),
    Task(Box<TaskRecord>),
    /// Written before a batch job is created: if the process dies before `BatchSubmitted`, the
    /// next run looks the job up by its display name instead of creating it again.
    BatchIntent(BatchIntent),
    BatchSubmitted(BatchSubmitted),
    BatchFinished(BatchFinished),
    /// A paid output moved out of the way of a new one (see `checkpoint::superseded`).
    Superseded(SupersededRecord),
    End(EndRecord),
}

impl Record {
    pub fn task(record: TaskRecord) -> Record {
        Record::Task(Box::new(record))
    }

    pub fn attempt(record: AttemptRecord) -> Record {
        Record::Attempt(Box::new(record))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub at: String,
    pub pid: u32,
    pub host: String,
    pub manifest: String,
    pub manifest_sha256: String,
    pub tasks: u64,
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentRecord {
    pub id: String,
    pub fp: String,
    /// 1-based attempt number.
    pub n: u32,
    /// The task's estimate: what an unanswered request may have cost.
    pub estimate_usd: Usd,
    pub at: String,
}

/// An attempt that did not finish its task (a retry follows, or the run stopped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    pub id: String,
    pub fp: String,
    /// 1-based attempt number.
    pub n: u32,
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<u16>,
    pub message: String,
    /// The estimate of a request whose outcome is unknown: it may have been billed.
    #[serde(default, skip_serializing_if = "usd_is_zero")]
    pub possibly_billed_usd: Usd,
    /// A request that was billed but whose image was lost (e.g. the disk was full).
    #[serde(default, skip_serializing_if = "usd_is_zero")]
    pub billed_usd: Usd,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    pub latency_ms: u64,
    pub at: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Succeeded,
    /// HTTP 200 without an image (safety filter, text-only reply, blocked prompt).
    NoImage,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::NoImage => "no_image",
            TaskStatus::Failed => "failed",
        }
    }
}

/// A task's final outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub fp: String,
    /// Part hashes, to say why a task must run again.
    pub parts: String,
    pub status: TaskStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputRecord>,
    /// Conversation state for the next step (`.nanobatch/turns/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<String>,
    #[serde(default)]
    pub usage: TokenCounts,
    #[serde(default)]
    pub cost_usd: Usd,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Pixel size differs from the catalogue (width, height actually returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mismatch: Option<(u32, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grounding: Vec<GroundingRecord>,
    /// Usage the server reported beyond what any request can use: `usage` and `cost_usd` are
    /// then the task's estimate, and this keeps what was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_reported: Option<TokenCounts>,
    pub latency_ms: u64,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputRecord {
    /// Relative to the output directory, `/`-separated.
    pub path: String,
    pub sidecar: String,
    /// The image's BLAKE3 (hex); empty in records from before BLAKE3, which carry `sha256`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub bytes: u64,
    /// Modification time (ns since the epoch) when written: a cheap "unchanged" check on resume.
    pub mtime_ns: u64,
    pub mime: String,
    pub width: u32,
    pub height: u32,
}

impl OutputRecord {
    /// The recorded content hash and how to check it.
    pub fn content_hash(&self) -> (crate::digest::Algorithm, &str) {
        if self.blake3.is_empty() {
            (crate::digest::Algorithm::Sha256, &self.sha256)
        } else {
            (crate::digest::Algorithm::Blake3, &self.blake3)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorRecord {
    pub class: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroundingRecord {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_uri: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchIntent {
    /// Unique per job: `nanobatch-<run>-<n>`.
    pub display_name: String,
    pub model: String,
    pub ids: Vec<String>,
    #[serde(default)]
    pub fps: Vec<String>,

    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchSubmitted {
    /// `batches/…`
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    /// Where the job lives (no key), so that `nanobatch cancel DIR` can reach it.
    #[serde(default)]
    pub base_url: String,

    pub model: String,
    /// Task ids in the job (each line's key is the task id).
    pub ids: Vec<String>,
    /// Their fingerprints, in the same order.
    #[serde(default)]
    pub fps: Vec<String>,
    /// Uploaded input file, when the job used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchFinished {
    pub name: String,
    /// `BATCH_STATE_SUCCEEDED`, `…_FAILED`, `…_EXPIRED`, `…_CANCELLED`.
    pub state: String,
    pub at: String,
}

/// An image (and its sidecar) that a new output would have replaced, moved (renamed, directories
/// synced) to `.nanobatch/superseded/<fp>/<original path>` before the new one landed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SupersededRecord {
    /// The task whose output it was (from its sidecar; else the task now writing there).
    pub id: String,
    /// The fingerprint it was made for (empty when nothing recorded it).
    pub fp: String,
    /// Where the image and its sidecar are now (relative to the output directory).
    pub outputs: Vec<OutputRecord>,
    /// Where each of `outputs` was (the image's path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// `changed` (the task's fingerprint changed), `rerun` (the same task ran again: a retry or a
    /// re-roll), `modified` (the file had been edited since it was written), `unrecorded` (no
    /// sidecar said where it came from), `found` (moved by a run that stopped before journaling it).
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndRecord {
    pub at: String,
    /// `completed`, `interrupted`, `budget`, `quota`, `fatal`.
    pub status: String,
}

pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn usd_is_zero(v: &Usd) -> bool {
    v.is_zero()
}
