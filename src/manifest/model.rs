//! The validated manifest: every value checked, every default applied, every file found.
//! Nothing here can be wrong in a way the planner has to report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::locate::LocationIndex;
use super::template::{Template, Templates};
use super::vars::Rows;
use crate::api::http::AuthMode;
use crate::catalog::{Catalog, Usd};
use crate::media::ImageKind;

#[derive(Debug)]
pub struct Manifest {
    /// The manifest file as the user named it.
    pub file: PathBuf,
    /// Its directory: relative paths in the manifest start here.
    pub dir: PathBuf,
    /// SHA-256 of the manifest text.
    pub hash: String,
    pub name: String,
    pub description: Option<String>,
    pub output_dir: Option<PathBuf>,
    pub endpoint: EndpointSpec,
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub catalog: Catalog,
    pub templates: Templates,
    pub jobs: Vec<Job>,
    pub warnings: Diagnostics,
    /// The manifest text and where its keys are, for diagnostics found after validation
    /// (output-name collisions found by the planner).
    pub source: Arc<SourceMap>,
}

#[derive(Debug)]
pub struct SourceMap {
    pub text: String,
    pub index: LocationIndex,
}

impl Manifest {
    /// An error pointing at the value at `path` in the manifest.
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.file, message)
            .with_context(path.to_owned())
            .at(self.source.index.value(path), &self.source.text)
    }
}

#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    pub base_url: Option<String>,
    pub auth: Option<AuthMode>,
    pub api_version: Option<String>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub concurrency: Option<u32>,
    pub rates: BTreeMap<String, Rate>,
    pub max_cost: Option<Usd>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub rpm: Option<u32>,
    pub ipm: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per task in total, the first included.
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub on_no_image: bool,
    pub on_unknown_outcome: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(120),
            on_no_image: false,
            on_unknown_outcome: true,
        }
    }
}

#[derive(Debug)]
pub struct Job {
    pub name: String,
    pub rows: Arc<Rows>,
    pub body: JobBody,
    /// Reference sets (an axis); a job without refs has one empty set.
    pub ref_sets: Vec<RefSet>,
    /// Sizes (an axis).
    pub sizes: Vec<SizeChoice>,
    /// Models (an axis).
    pub models: Vec<String>,
    pub repeat: u32,
    pub excludes: Vec<Exclude>,
    pub generation: GenSettings,
    pub output: Template,
    /// Key path of the output template (for collision diagnostics).
    pub output_path: String,
}

/// A single request per combination (with a prompts axis), or a conversation of steps.
#[derive(Debug)]
pub enum JobBody {
    Single { prompts: Vec<NamedTemplate> },
    Conversation { steps: Vec<Step> },
}

impl JobBody {
    pub fn step_count(&self) -> usize {
        match self {
            JobBody::Single { .. } => 1,
            JobBody::Conversation { steps } => steps.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NamedTemplate {
    pub name: String,
    pub template: Template,
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub prompt: Template,
    /// A later step may change the output size; `None` keeps the previous one.
    pub size: Option<SizeChoice>,
    /// Images added to this turn.
    pub refs: RefSet,
}

/// `16:9@2K`; `size: None` means the model's default size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SizeChoice {
    pub ratio: String,
    pub size: Option<String>,
}

impl SizeChoice {
    /// The size name for `model` (its default when none was given).
    pub fn size_for<'a>(&'a self, default: &'a str) -> &'a str {
        self.size.as_deref().unwrap_or(default)
    }

    pub fn label(&self) -> String {
        match &self.size {
            Some(s) => format!("{}@{s}", self.ratio),
            None => self.ratio.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RefSet {
    pub name: String,
    pub items: Vec<RefItem>,
    /// Files resolved per row (index = row); shared when the set has no per-row template.
    pub files: Vec<Arc<[Arc<RefFile>]>>,
}

#[derive(Debug, Clone)]
pub enum RefItem {
    Files { template: Template, kind: RefKind, path: String },
    From(FromRef),
}

/// An image edge to another job's output for the same row.
#[derive(Debug, Clone)]
pub struct FromRef {
    pub job: usize,
    pub size: Option<SizeChoice>,
    pub model: Option<String>,
    /// 0-based step index.
    pub step: Option<usize>,
    pub prompt: Option<usize>,
    pub ref_set: Option<usize>,
    /// 1-based.
    pub variant: Option<u32>,
    pub kind: RefKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Object,
    Person,
}

/// A reference image on disk, checked at load time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefFile {
    /// As found (manifest dir joined with the rendered path).
    pub path: PathBuf,
    /// As the user wrote it (after rendering), for reports.
    pub shown: String,
    pub image: ImageKind,
    pub kind: RefKind,
    pub bytes: u64,
    /// SHA-256 of the file's bytes: part of every fingerprint that uses it.
    pub sha256: [u8; 32],
}

/// Leave out combinations that match every given key.
#[derive(Debug, Clone)]
pub struct Exclude {
    pub conditions: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct GenSettings {
    /// `["TEXT", "IMAGE"]` or `["IMAGE"]`.
    pub modalities: Vec<&'static str>,
    pub thinking_level: Option<String>,
    pub include_thoughts: Option<bool>,
    pub grounding_web: bool,
    pub grounding_image: bool,
    pub system: Option<Template>,
    pub temperature: Option<f64>,
    pub seed: Option<i64>,
    /// `maxOutputTokens`: the most text and thinking tokens an answer may carry.
    pub max_output_tokens: Option<u32>,
}

impl GenSettings {
    pub fn wants_text(&self) -> bool {
        self.modalities.contains(&"TEXT")
    }
}
