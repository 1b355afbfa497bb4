//! One attempt of one task: build the request, send it, read the answer, verify the image, and
//! make the image, its sidecar (and, mid-conversation, the model's turn) durable. The outcome
//! goes back to the dispatcher as data; a unit never touches run state or the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::request::{ImageFile, PastTurn, RequestConfig, UserTurn, build_body};
use super::retry::{FailureClass, classify};
use crate::api::response::{Reply, parse_reply, raw_model_content};
use crate::api::{ApiError, ImageApi};
use crate::catalog::{Tier, TokenCounts, Usd};
use crate::checkpoint::RunDir;
use crate::checkpoint::records::GroundingRecord;
use crate::checkpoint::store::{OutputStore, StoreError, Written};
use crate::manifest::Manifest;
use crate::manifest::model::RefKind;
use crate::media;
use crate::plan::fingerprint::sha256_hex;
use crate::plan::{Plan, TaskIndex, TaskView};
use crate::report::sidecar::{Sidecar, SidecarRef, SidecarSource};

/// Base64 as the API sends it; padding tolerated either way.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Longest model text kept in the journal and sidecar.
const MAX_TEXT: usize = 2_000;

/// What every unit of a run shares.
pub struct UnitContext {
    pub manifest: Arc<Manifest>,
    pub plan: Arc<Plan>,
    pub api: Arc<dyn ImageApi>,
    pub store: Arc<OutputStore>,
    pub tier: Tier,
    pub strict: bool,
    /// Tasks whose model turn a later step replays.
    pub keep_turn: Vec<bool>,
}

/// What the dispatcher hands a unit besides the task.
#[derive(Debug, Clone)]
pub struct UnitInput {
    pub index: TaskIndex,
    pub attempt: u32,
    pub past: Vec<PastTurn>,
    /// Images from upstream tasks for this turn, with their task ids.
    pub images: Vec<(ImageFile, String)>,
}

#[derive(Debug)]
pub enum UnitResult {
    Image(Box<ImageDone>),
    NoImage(Box<NoImageDone>),
    Failed {
        class: FailureClass,
        error: ApiError,
    },
    /// An input file could not be read (deleted since planning): the task cannot be sent.
    Input(String),
    /// The image was billed but could not be stored (disk full, read-only): fatal for the run.
    Store {
        error: StoreError,
        usage: TokenCounts,
        cost: Usd,
    },
}

#[derive(Debug)]
pub struct ImageDone {
    pub written: Written,
    pub sha256: String,
    pub mime: &'static str,
    pub width: u32,
    pub height: u32,
    pub usage: TokenCounts,
    pub cost: Usd,
    pub tier: Tier,
    pub finish_reason: Option<String>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub text: Option<String>,
    pub size_mismatch: Option<(u32, u32)>,
    pub grounding: Vec<GroundingRecord>,
    pub turn: Option<String>,
}

#[derive(Debug)]
pub struct NoImageDone {
    pub tier: Tier,
    pub reason: String,
    pub finish_reason: Option<String>,
    pub message: Option<String>,
    pub text: Option<String>,
    pub usage: TokenCounts,
    pub cost: Usd,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
}

/// Runs one attempt; returns its result and how long the request took.
pub async fn run(ctx: Arc<UnitContext>, input: UnitInput) -> (UnitResult, Duration) {
    let started = Instant::now();
    let body = {
        let ctx = ctx.clone();
        let input = input.clone();
        match tokio::task::spawn_blocking(move || prepare_body(&ctx, &input)).await {
            Ok(Ok(body)) => body,
            Ok(Err(message)) => return (UnitResult::Input(message), started.elapsed()),
            Err(e) => return (UnitResult::Input(format!("request builder failed: {e}")), started.elapsed()),
        }
    };
    let model = {
        let task = &ctx.plan.tasks[input.index as usize];
        TaskView::new(&ctx.manifest, task).model.id.clone()
    };
    let reply = match ctx.api.generate(&model, body).await {
        Ok(reply) => reply,
        Err(error) => return (UnitResult::Failed { class: classify(&error), error }, started.elapsed()),
    };
    let latency = started.elapsed();
    let tier = ctx.tier;
    let result = tokio::task::spawn_blocking(move || process(&ctx, &input, &reply.body, tier)).await;
    match result {
        Ok(r) => (r, latency),
        Err(e) => {
            (UnitResult::Failed { class: FailureClass::Unknown, error: ApiError::Malformed(e.to_string()) }, latency)
        }
    }
}

fn prepare_body(ctx: &UnitContext, input: &UnitInput) -> Result<bytes::Bytes, String> {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let config = RequestConfig {
        generation: &view.job.generation,
        ratio: &task.ratio,
        wire_size: view.wire_size(),
        system: task.system_text.as_deref(),
    };
    let current = UserTurn {
        prompt: task.prompt_text.clone(),
        refs: task.refs.clone(),
        images: input.images.iter().map(|(f, _)| f.clone()).collect(),
    };
    build_body(&config, &input.past, &current).map_err(|e| e.to_string())
}

/// Reads a 200 body (an interactive response, or one line of a batch's results): image or not,
/// verified, stored. `tier` is the price list the response was billed at.
pub fn process(ctx: &UnitContext, input: &UnitInput, body: &[u8], tier: Tier) -> UnitResult {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let reply = match parse_reply(body) {
        Ok(r) => r,
        Err(e) => return UnitResult::Failed { class: FailureClass::Unknown, error: ApiError::Malformed(e.0) },
    };
    let expected_tokens = view.model.size(&task.size).map_or(0, |s| u64::from(s.output_tokens));
    let usage = reply.tokens(expected_tokens);
    let cost = view.model.cost(&usage, tier);
    if let Some(kind) = reply.no_image() {
        return no_image(&reply, kind.reason(), usage, cost, tier);
    }
    let Some(part) = &reply.image else {
        return no_image(&reply, "no image part".into(), usage, cost, tier);
    };
    let bytes = match BASE64.decode(part.base64) {
        Ok(b) => b,
        Err(e) => return no_image(&reply, format!("image data is not valid base64: {e}"), usage, cost, tier),
    };
    let Some(kind) = media::sniff(&bytes) else {
        return no_image(&reply, "image data is not a known image format".into(), usage, cost, tier);
    };
    let (width, height) = media::dimensions(&bytes, kind).unwrap_or(task.pixels);
    let size_mismatch = ((width, height) != task.pixels).then_some((width, height));
    let sha256 = sha256_hex(&bytes);
    let sidecar = sidecar_json(ctx, input, &reply, kind, (width, height), &sha256, usage, cost, tier);
    let written = match ctx.store.write_image(&task.output, kind.extension(), &bytes, &sidecar) {
        Ok(w) => w,
        Err(error) => return UnitResult::Store { error, usage, cost },
    };
    drop(bytes);
    let mut turn = None;
    if ctx.keep_turn[input.index as usize]
        && let Some(raw) = raw_model_content(body)
    {
        let rel = RunDir::turn_rel(&task.fingerprint.to_hex());
        if let Err(error) = ctx.store.write_state(&rel, raw.get().as_bytes()) {
            return UnitResult::Store { error, usage, cost };
        }
        turn = Some(rel);
    }
    UnitResult::Image(Box::new(ImageDone {
        written,
        sha256,
        mime: kind.mime(),
        width,
        height,
        usage,
        cost,
        tier,
        finish_reason: reply.finish_reason.clone(),
        model_version: reply.model_version.clone(),
        response_id: reply.response_id.clone(),
        text: non_empty(&reply.text),
        size_mismatch,
        grounding: reply
            .grounding
            .iter()
            .map(|g| GroundingRecord { uri: g.uri.clone(), title: g.title.clone(), image_uri: g.image_uri.clone() })
            .collect(),
        turn,
    }))
}

fn no_image(reply: &Reply<'_>, reason: String, usage: TokenCounts, cost: Usd, tier: Tier) -> UnitResult {
    UnitResult::NoImage(Box::new(NoImageDone {
        tier,
        reason,
        finish_reason: reply.finish_reason.clone().or_else(|| reply.block_reason.clone()),
        message: reply.finish_message.clone(),
        text: non_empty(&reply.text),
        usage,
        cost,
        model_version: reply.model_version.clone(),
        response_id: reply.response_id.clone(),
    }))
}

fn non_empty(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.chars().take(MAX_TEXT).collect())
}

#[allow(clippy::too_many_arguments)]
fn sidecar_json(
    ctx: &UnitContext,
    input: &UnitInput,
    reply: &Reply<'_>,
    kind: media::ImageKind,
    pixels: (u32, u32),
    sha256: &str,
    usage: TokenCounts,
    cost: Usd,
    tier: Tier,
) -> Vec<u8> {
    let task = &ctx.plan.tasks[input.index as usize];
    let view = TaskView::new(&ctx.manifest, task);
    let row = &view.job.rows.rows[task.row as usize];
    let fp = task.fingerprint.to_hex();
    let declared = part_declared(reply);
    let mut references: Vec<SidecarRef<'_>> = task
        .refs
        .iter()
        .map(|r| SidecarRef {
            path: &r.shown,
            sha256: hex::encode(r.sha256),
            kind: if r.kind == RefKind::Person { "person" } else { "object" },
            task: None,
        })
        .collect();
    let image_paths: Vec<String> = input.images.iter().map(|(f, _)| f.path.display().to_string()).collect();
    for ((_, id), path) in input.images.iter().zip(&image_paths) {
        references.push(SidecarRef { path, sha256: String::new(), kind: "object", task: Some(id) });
    }
    let sidecar = Sidecar {
        sidecar_version: crate::report::sidecar::SIDECAR_VERSION,
        tool: env!("CARGO_PKG_VERSION"),
        task_id: &task.id,
        fingerprint: &fp,
        job: &view.job.name,
        key: &row.key,
        step: view.step_name(),
        variant: task.variant,
        prompt: &task.prompt_text,
        system: task.system_text.as_deref(),
        variables: view
            .job
            .rows
            .columns
            .iter()
            .zip(row.values.iter())
            .map(|(c, v)| (&**c, v.as_deref().unwrap_or("")))
            .collect(),
        model: &view.model.id,
        model_version: reply.model_version.as_deref(),
        aspect_ratio: &task.ratio,
        image_size: &task.size,
        expected_pixels: task.pixels,
        pixels,
        mime_type: kind.mime(),
        declared_mime_type: declared.filter(|d| *d != kind.mime()),
        sha256,
        references,
        usage,
        cost_usd: cost,
        tier,
        attempt: input.attempt,

        finish_reason: reply.finish_reason.as_deref(),
        response_id: reply.response_id.as_deref(),
        text: reply.text.trim(),
        grounding: reply
            .grounding
            .iter()
            .map(|g| SidecarSource { uri: &g.uri, title: g.title.as_deref(), image_uri: g.image_uri.as_deref() })
            .collect(),
        created: crate::checkpoint::records::now(),
    };
    serde_json::to_vec_pretty(&sidecar).unwrap_or_default()
}

fn part_declared<'a>(reply: &'a Reply<'_>) -> Option<&'a str> {
    reply.image.as_ref().and_then(|i| i.declared_mime.as_deref())
}
