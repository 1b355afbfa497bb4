//! The manifest as written: raw serde types that mirror the YAML one to one and hold no logic.
//!
//! These are the only `Deserialize` types of the manifest. Unknown keys are not rejected by serde
//! (that would stop at the first); `load` collects every one of them with `serde_ignored` and
//! reports them all. Fields that accept two shapes (`"16:9@2K"` or a map, a CSV path or inline
//! rows) use hand-written visitors (`serde_untagged`) with a message that names both shapes,
//! never `#[serde(untagged)]`. The JSON Schema in `schemas/manifest.schema.json` is generated
//! from these types.

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_untagged::UntaggedEnumVisitor;

/// A nanobatch manifest (version 1).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Manifest", title = "nanobatch manifest")]
pub struct RawManifest {
    /// Format version of this file. Always `1`.
    pub version: u32,
    /// Name of the batch; the default output directory is `out/<name>` next to the manifest.
    /// Defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text, shown in the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Where images, sidecars and reports go, relative to the manifest's directory. `-o` overrides.
    #[serde(default)]
    pub output_dir: Option<String>,
    /// Where requests go and how the key is sent. `--base-url` and `GOOGLE_GEMINI_BASE_URL` override.
    #[serde(default)]
    pub endpoint: Option<RawEndpoint>,
    /// Settings every job inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// Concurrency, rate limits and the budget.
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// Retry policy for transient failures.
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// Catalogue rows to add, or fields to override for a known model (new ids, new prices).
    #[serde(default)]
    pub models: Option<Vec<RawModel>>,
    /// Folders outside the manifest's folder that reference images named by a variable or a
    /// glob may lead into through a symlink (e.g. a shared asset drive `refs/` links to).
    /// Relative to the manifest's folder. By default they must stay inside it.
    #[serde(default)]
    pub reference_roots: Option<Vec<String>>,
    /// The jobs, by name. Each job is a matrix of tasks.
    pub jobs: IndexMap<String, RawJob>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Base URL, e.g. `https://generativelanguage.googleapis.com` or a proxy's.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `header` sends `x-goog-api-key`; `query` sends `?key=` (for proxies that need it).
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// API version path segment. Default `v1beta`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Per-request timeout, e.g. `10m`. Default 10 minutes (the server's own limit).
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawAuth {
    Header,
    Query,
}

/// Defaults for every job.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawDefaults {
    /// Model id, e.g. `gemini-3.1-flash-image-preview`.
    #[serde(default)]
    pub model: Option<String>,
    /// Several models: an axis of the matrix.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Aspect ratio @ image size, e.g. `["1:1@2K", "16:9@1K"]`.
    #[serde(default)]
    pub sizes: Option<Vec<RawSize>>,
    /// `responseModalities`: `[image]` or `[text, image]` (the default).
    #[serde(default)]
    pub modalities: Option<Vec<RawModality>>,
    /// Thinking level (`minimal`, `high`) or `{level, include_thoughts}`.
    #[serde(default)]
    pub thinking: Option<RawThinking>,
    /// Google Search grounding: `web`, `image`, `[web, image]` or `false`.
    #[serde(default)]
    pub grounding: Option<RawGrounding>,
    /// System instruction (a template).
    #[serde(default)]
    pub system: Option<String>,
    /// Sampling temperature, 0–2. Google advises 1.0 for Gemini 3.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Sampling seed (narrows, does not fix, the result).
    #[serde(default)]
    pub seed: Option<i64>,
    /// The most text and thinking tokens an answer may carry, sent as `maxOutputTokens`. The
    /// budget reserves this many for each request instead of the model's output limit (32,768).
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Output path template, without extension (the extension follows the returned image type).
    #[serde(default)]
    pub output: Option<String>,
    /// Variants per combination.
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Must stay 1: image models refuse more; use `repeat` for variants.
    #[serde(default)]
    pub candidate_count: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests in flight at once (`-j` overrides). Default 8.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Per-model rate limits.
    #[serde(default)]
    pub rate: Option<IndexMap<String, RawRate>>,
    /// Stop before a request could take the spend over this many US dollars.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRate {
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Images per minute.
    #[serde(default)]
    pub ipm: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts per task in total, the first included. Default 6.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// First backoff delay, e.g. `2s`. Default 2s.
    #[serde(default)]
    pub initial: Option<String>,
    /// Longest backoff delay, e.g. `120s`. Default 120s.
    #[serde(default)]
    pub max: Option<String>,
    /// Retry a 200 that carried no image (safety filter, text-only reply). Default false:
    /// the same prompt usually gets the same refusal.
    #[serde(default)]
    pub on_no_image: Option<bool>,
    /// Retry when the outcome is unknown (timeout or connection lost after sending), accepting
    /// that the lost attempt may have been billed. Default true; the budget still applies.
    #[serde(default)]
    pub on_unknown_outcome: Option<bool>,
}

/// A catalogue row to add, or fields to override on a known model.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    /// For a new id: the catalogue row to start from.
    #[serde(default)]
    pub like: Option<String>,
    #[serde(default)]
    pub aspect_ratios: Option<Vec<String>>,
    #[serde(default)]
    pub default_size: Option<String>,
    #[serde(default)]
    pub sizes: Option<Vec<RawModelSize>>,
    #[serde(default)]
    pub max_reference_images: Option<u32>,
    #[serde(default)]
    pub input_image_tokens: Option<u32>,
    #[serde(default)]
    pub thinking_levels: Option<Vec<String>>,
    /// The model's output token limit (text and thinking of one answer): what `--max-cost`
    /// reserves for them before a request is sent.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub grounding: Option<RawGrounding>,
    /// USD per 1M tokens.
    #[serde(default)]
    pub prices: Option<RawPrices>,
    #[serde(default)]
    pub batch_discount: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawModelSize {
    pub name: String,
    /// Sent as `imageSize`; omit to send nothing.
    #[serde(default)]
    pub wire: Option<String>,
    pub output_tokens: u32,
    /// Pixel size per ratio, e.g. `{"1:1": [1024, 1024]}`.
    pub pixels: IndexMap<String, [u32; 2]>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPrices {
    #[serde(default)]
    pub input: Option<f64>,
    #[serde(default)]
    pub output_text: Option<f64>,
    #[serde(default)]
    pub output_image: Option<f64>,
}

/// One job: a matrix of prompts × rows × reference sets × sizes × models × repeat, or a
/// multi-turn conversation (`steps`) per instance.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawJob {
    /// Free text, shown in the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Variable rows: a CSV file or a spreadsheet (`.xlsx`, `.xls`, `.ods`; relative to the
    /// manifest), or a list of maps.
    #[serde(default)]
    pub vars: Option<RawVars>,
    /// The CSV file's delimiter: `","`, `";"`, `"\t"` (or `tab`), `"|"`; default: detected from
    /// the header line.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The spreadsheet's sheet, by name; default: the first.
    #[serde(default)]
    pub sheet: Option<String>,
    /// Column that names each row (unique); used in output names, ids and `from:` matching.
    #[serde(default)]
    pub key: Option<String>,
    /// Prompt template (minijinja).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Several prompt templates: an axis, by name (map) or position (list).
    #[serde(default)]
    pub prompts: Option<RawPrompts>,
    /// Reference images: paths or globs (templated per row) or `{from: job}` image edges.
    #[serde(default)]
    pub refs: Option<Vec<RawRef>>,
    /// Several reference sets: an axis, by name.
    #[serde(default)]
    pub ref_sets: Option<IndexMap<String, Vec<RawRef>>>,
    /// Multi-turn conversation, one per instance: step k carries the whole history.
    #[serde(default)]
    pub steps: Option<Vec<RawStep>>,
    /// Combinations to leave out, e.g. `[{model: gemini-2.5-flash-image, size: 4K}]`.
    #[serde(default)]
    pub exclude: Option<Vec<IndexMap<String, String>>>,
    // The settings below override `defaults`.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub sizes: Option<Vec<RawSize>>,
    #[serde(default)]
    pub modalities: Option<Vec<RawModality>>,
    #[serde(default)]
    pub thinking: Option<RawThinking>,
    #[serde(default)]
    pub grounding: Option<RawGrounding>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub candidate_count: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawStep {
    /// The user's turn (a template).
    pub prompt: String,
    /// Output size of this turn (`"16:9@2K"`); the first step may list several (an axis).
    #[serde(default)]
    pub sizes: Option<Vec<RawSize>>,
    /// Reference images added to this turn.
    #[serde(default)]
    pub refs: Option<Vec<RawRef>>,
    /// Short name used in output names and ids (default `s1`, `s2`, …).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawModality {
    Text,
    Image,
}

// ---------------------------------------------------------------------------------------------
// Fields with two shapes.

/// `"16:9@2K"`, `"16:9"` (the model's default size), or `{ratio: "16:9", size: 2K}`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawSize {
    Text(String),
    Map { ratio: String, size: Option<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeMap {
    ratio: String,
    #[serde(default)]
    size: Option<String>,
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("a size like \"16:9@2K\" or a map {ratio: \"16:9\", size: 2K}")
            .string(|s| Ok(RawSize::Text(s.to_owned())))
            .map(|map| map.deserialize::<SizeMap>().map(|m| RawSize::Map { ratio: m.ratio, size: m.size }))
            .deserialize(d)
    }
}

impl JsonSchema for RawSize {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Aspect ratio @ image size, e.g. \"16:9@2K\"; \"16:9\" uses the model's default size. Sizes: 512 (also 512px, 0.5K), 1K, 2K, 4K; a lowercase k is read as K.",
            "oneOf": [
                {"type": "string", "pattern": "^\\s*\\d+:\\d+\\s*(@\\s*\\S+)?\\s*$"},
                {"type": "object", "additionalProperties": false, "required": ["ratio"],
                 "properties": {"ratio": {"type": "string"}, "size": {"type": "string"}}}
            ]
        })
    }
}

/// A CSV or spreadsheet file path, or inline rows (a list of maps of strings).
#[derive(Debug, Clone, PartialEq)]
pub enum RawVars {
    File(String),
    Inline(Vec<IndexMap<String, String>>),
}

impl<'de> Deserialize<'de> for RawVars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("a CSV or spreadsheet file path, or a list of rows (maps of column: value)")
            .string(|s| Ok(RawVars::File(s.to_owned())))
            .seq(|seq| seq.deserialize().map(RawVars::Inline))
            .deserialize(d)
    }
}

impl JsonSchema for RawVars {
    fn schema_name() -> Cow<'static, str> {
        "Vars".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A CSV file or a spreadsheet (.xlsx, .xls, .ods), relative to the manifest, or inline rows.",
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}}
            ]
        })
    }
}

/// Prompt templates by name (map) or by position (list).
#[derive(Debug, Clone, PartialEq)]
pub enum RawPrompts {
    List(Vec<String>),
    Named(IndexMap<String, String>),
}

impl<'de> Deserialize<'de> for RawPrompts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("a list of prompt templates or a map of name: template")
            .seq(|seq| seq.deserialize().map(RawPrompts::List))
            .map(|map| map.deserialize().map(RawPrompts::Named))
            .deserialize(d)
    }
}

impl JsonSchema for RawPrompts {
    fn schema_name() -> Cow<'static, str> {
        "Prompts".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "object", "additionalProperties": {"type": "string"}}
            ]
        })
    }
}

/// A reference image: a path or glob (a template), `{path, kind}`, or `{from: job, …}`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawRef {
    Path(String),
    File { path: String, kind: Option<RawRefKind> },
    From(RawFrom),
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawRefKind {
    /// A product or thing to include at high fidelity (the default).
    Object,
    /// A person whose likeness must stay consistent.
    Person,
}

/// An image edge: the output of another job's task for the same row.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawFrom {
    /// The upstream job.
    pub from: String,
    /// Which of its sizes (required when it has several), e.g. `"1:1@2K"`.
    #[serde(default)]
    pub size: Option<RawSize>,
    /// Which of its models (required when it has several).
    #[serde(default)]
    pub model: Option<String>,
    /// Which of its steps (default: the last).
    #[serde(default)]
    pub step: Option<String>,
    /// Which of its prompts (required when it has several).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Which of its reference sets (required when it has several).
    #[serde(default)]
    pub ref_set: Option<String>,
    /// Which variant, 1-based (required when it repeats).
    #[serde(default)]
    pub variant: Option<u32>,
    #[serde(default)]
    pub kind: Option<RawRefKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefFileMap {
    path: String,
    #[serde(default)]
    kind: Option<RawRefKind>,
}

impl<'de> Deserialize<'de> for RawRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("a file path, {path: …, kind: person|object}, or {from: <job>, size: …}")
            .string(|s| Ok(RawRef::Path(s.to_owned())))
            .map(|map| {
                let value: serde_json::Value = map.deserialize()?;
                if value.get("from").is_some() {
                    serde_json::from_value(value).map(RawRef::From).map_err(serde::de::Error::custom)
                } else {
                    serde_json::from_value::<RefFileMap>(value)
                        .map(|f| RawRef::File { path: f.path, kind: f.kind })
                        .map_err(serde::de::Error::custom)
                }
            })
            .deserialize(d)
    }
}

impl JsonSchema for RawRef {
    fn schema_name() -> Cow<'static, str> {
        "Ref".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let from = generator.subschema_for::<RawFrom>();
        json_schema!({
            "oneOf": [
                {"type": "string", "description": "A path or glob relative to the manifest; may use {{ variables }}."},
                {"type": "object", "additionalProperties": false, "required": ["path"],
                 "properties": {"path": {"type": "string"}, "kind": {"enum": ["object", "person"]}}},
                from
            ]
        })
    }
}

/// `minimal`, `high`, or `{level, include_thoughts}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawThinking {
    pub level: Option<String>,
    pub include_thoughts: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThinkingMap {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    include_thoughts: Option<bool>,
}

impl<'de> Deserialize<'de> for RawThinking {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("a thinking level (minimal, high) or {level, include_thoughts}")
            .string(|s| Ok(RawThinking { level: Some(s.to_owned()), include_thoughts: None }))
            .map(|map| {
                map.deserialize::<ThinkingMap>()
                    .map(|m| RawThinking { level: m.level, include_thoughts: m.include_thoughts })
            })
            .deserialize(d)
    }
}

impl JsonSchema for RawThinking {
    fn schema_name() -> Cow<'static, str> {
        "Thinking".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "string", "enum": ["minimal", "high"]},
                {"type": "object", "additionalProperties": false,
                 "properties": {"level": {"type": "string"}, "include_thoughts": {"type": "boolean"}}}
            ]
        })
    }
}

/// `web`, `image`, a list of them, or `false`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawGrounding {
    Off,
    Kinds(Vec<String>),
}

impl<'de> Deserialize<'de> for RawGrounding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UntaggedEnumVisitor::new()
            .expecting("`web`, `image`, a list of them, or false")
            .bool(|b| if b { Ok(RawGrounding::Kinds(vec!["web".to_owned()])) } else { Ok(RawGrounding::Off) })
            .string(|s| Ok(RawGrounding::Kinds(vec![s.to_owned()])))
            .seq(|seq| seq.deserialize().map(RawGrounding::Kinds))
            .deserialize(d)
    }
}

impl JsonSchema for RawGrounding {
    fn schema_name() -> Cow<'static, str> {
        "Grounding".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "boolean"},
                {"type": "string", "enum": ["web", "image"]},
                {"type": "array", "items": {"type": "string", "enum": ["web", "image"]}}
            ]
        })
    }
}
