//! The Batch API lane of the dispatcher (`--mode batch|auto`): group ready tasks per model into
//! small jobs, create them (inline, or a JSONL file uploaded through the Files API), watch them
//! across restarts, and feed each result line (joined by key, never by position) through the
//! same verification, storage and journal path as an interactive response.
//!
//! Crash safety: a job's intent (display name and task ids) is journaled before it is created,
//! and its name as soon as it is known; a restarted run looks intents up by display name and
//! reattaches to submitted jobs instead of submitting again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::request::{RequestConfig, UserTurn, build_body};
use super::retry::classify;
use super::unit::{UnitContext, UnitInput, UnitResult, process};
use crate::api::batch::{Operation, http_status_of_grpc, parse_result_line};
use crate::api::status::RpcStatus;
use crate::api::{ApiError, BatchApi};
use crate::catalog::Tier;
use crate::plan::{TaskIndex, TaskView};

/// How big a job may get. Many small jobs rather than one huge one: large image batches have
/// been reported to succeed and then be impossible to download.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_requests: usize,
    /// Expected size of a job's results (the images, base64) at most.
    pub max_result_bytes: u64,
    /// Up to this many requests and this many bytes a job is sent inline; beyond, as a file.
    pub max_inline_requests: usize,
    pub max_inline_bytes: usize,
    /// First poll delay; grows ×1.5 up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_requests: 50,
            max_result_bytes: 400 << 20,
            max_inline_requests: 16,
            max_inline_bytes: 8 << 20,
            first_poll: Duration::from_secs(1),
            max_poll: Duration::from_secs(30),
        }
    }
}

/// Which tasks the lane takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// Every task.
    All,
    /// Tasks ready when the run starts (the bulk); tasks that become ready later (their inputs
    /// came back) run interactively, so that chains finish without another batch round.
    FirstWave,
}

/// A job the lane knows about.
#[derive(Debug, Clone)]
pub(super) struct OpenJob {
    pub model: String,
    pub name: Option<String>,
    pub tasks: Vec<(TaskIndex, u32)>,
}

pub(super) enum BatchEvent {
    /// The job exists (or could not be created).
    Created { display: String, result: Result<String, ApiError> },
    /// The job reached a terminal state; results were processed.
    Finished {
        display: String,
        name: String,
        state: String,
        error: Option<String>,
        results: Vec<(TaskIndex, u32, UnitResult)>,
    },
}

pub(super) struct BatchLane {
    pub api: Arc<dyn BatchApi>,
    pub base_url: String,
    pub mode: BatchMode,
    pub limits: BatchLimits,
    pub fallback: bool,
    /// Tasks waiting to be grouped into jobs, per model slot.
    pub queue: Vec<Vec<TaskIndex>>,
    pub queued_since: Option<Instant>,
    pub ops: JoinSet<BatchEvent>,
    pub open: HashMap<String, OpenJob>,
    pub run_tag: String,
    pub seq: u64,
    pub state_dir: PathBuf,
}

impl BatchLane {
    pub fn new(
        api: Arc<dyn BatchApi>,
        base_url: String,
        mode: BatchMode,
        limits: BatchLimits,
        fallback: bool,
        slots: usize,
        state_dir: PathBuf,
    ) -> BatchLane {
        let run_tag = format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
        );
        BatchLane {
            api,
            base_url,
            mode,
            limits,
            fallback,
            queue: vec![Vec::new(); slots],
            queued_since: None,
            ops: JoinSet::new(),
            open: HashMap::new(),
            run_tag,
            seq: 0,
            state_dir,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.ops.is_empty() && self.open.is_empty() && self.queue.iter().all(Vec::is_empty)
    }

    pub fn queued(&self) -> usize {
        self.queue.iter().map(Vec::len).sum()
    }

    pub fn next_display_name(&mut self) -> String {
        self.seq += 1;
        format!("nanobatch-{}-{}", self.run_tag, self.seq)
    }

    /// When queued tasks should be flushed into jobs (a short wait gathers a round).
    pub fn flush_at(&self) -> Option<Instant> {
        let since = self.queued_since?;
        Some(since + Duration::from_millis(300))
    }
}

/// Splits a model's queued tasks into jobs of at most `max_requests` and `max_result_bytes`.
pub(super) fn chunk(ctx: &UnitContext, tasks: &[TaskIndex], limits: &BatchLimits) -> Vec<Vec<TaskIndex>> {
    let mut out: Vec<Vec<TaskIndex>> = Vec::new();
    let mut current: Vec<TaskIndex> = Vec::new();
    let mut bytes = 0u64;
    for &t in tasks {
        let (w, h) = ctx.plan.tasks[t as usize].pixels;
        // A generous guess at a PNG's base64: 2 bytes per pixel.
        let size = u64::from(w) * u64::from(h) * 2;
        if !current.is_empty() && (current.len() >= limits.max_requests || bytes + size > limits.max_result_bytes) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(t);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Builds every request of a job and creates it.
pub(super) async fn submit(
    ctx: Arc<UnitContext>,
    api: Arc<dyn BatchApi>,
    display: String,
    model: String,
    inputs: Vec<UnitInput>,
    limits: BatchLimits,
) -> BatchEvent {
    let built = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            inputs
                .iter()
                .map(|input| {
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
                    build_body(&config, &input.past, &current).map(|body| (task.id.to_string(), body))
                })
                .collect::<Result<Vec<(String, Bytes)>, _>>()
        })
        .await
    };
    let requests = match built {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return BatchEvent::Created {
                display,
                result: Err(ApiError::Malformed(format!("cannot build a request: {e}"))),
            };
        }
        Err(e) => return BatchEvent::Created { display, result: Err(ApiError::Malformed(e.to_string())) },
    };
    let total: usize = requests.iter().map(|(_, b)| b.len()).sum();
    let result = if requests.len() <= limits.max_inline_requests && total <= limits.max_inline_bytes {
        api.create_inline(&model, &display, &requests).await
    } else {
        let mut jsonl = Vec::with_capacity(total + requests.len() * 48);
        for (key, body) in &requests {
            jsonl.extend_from_slice(b"{\"key\":");
            jsonl.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
            jsonl.extend_from_slice(b",\"request\":");
            jsonl.extend_from_slice(body);
            jsonl.extend_from_slice(b"}\n");
        }
        drop(requests);
        match api.upload(&display, Bytes::from(jsonl)).await {
            Ok(file) => api.create_from_file(&model, &display, &file).await,
            Err(e) => Err(e),
        }
    };
    BatchEvent::Created { display, result: result.map(|op| op.name) }
}

/// Finds a job created just before a crash by its display name.
pub(super) async fn find_by_display_name(api: Arc<dyn BatchApi>, display: String) -> BatchEvent {
    let result = match api.list().await {
        Ok(ops) => ops
            .into_iter()
            .find(|op| op.display_name.as_deref() == Some(display.as_str()))
            .map(|op| op.name)
            .ok_or_else(|| ApiError::Status {
                http_status: 404,
                status: Box::new(RpcStatus { message: "the job was never created".into(), ..RpcStatus::default() }),
                retry_after: None,
            }),
        Err(e) => Err(e),
    };
    BatchEvent::Created { display, result }
}

/// Polls a job until it ends, then reads and processes its results.
pub(super) async fn watch(
    ctx: Arc<UnitContext>,
    api: Arc<dyn BatchApi>,
    display: String,
    name: String,
    inputs: Vec<UnitInput>,
    limits: BatchLimits,
    state_dir: PathBuf,
) -> BatchEvent {
    let mut delay = limits.first_poll;
    let op = loop {
        tokio::time::sleep(delay).await;
        delay = delay.mul_f64(1.5).min(limits.max_poll);
        match api.get(&name).await {
            Ok(op) if op.is_terminal() => break op,
            Ok(_) => {}
            // Transient polling failures are retried; the job lives on the server.
            Err(e)
                if !matches!(
                    classify(&e),
                    super::retry::FailureClass::Permanent | super::retry::FailureClass::Auth
                ) => {}
            Err(e) => {
                return BatchEvent::Finished {
                    display,
                    name,
                    state: "UNREACHABLE".into(),
                    error: Some(e.to_string()),
                    results: Vec::new(),
                };
            }
        }
    };
    let error = op.error.as_ref().map(|e| e.message.clone());
    let results =
        if op.succeeded() { collect_results(ctx, api, &op, inputs, &state_dir).await } else { Ok(Vec::new()) };
    match results {
        Ok(results) => BatchEvent::Finished { display, name, state: op.state, error, results },
        Err(e) => {
            BatchEvent::Finished { display, name, state: "DOWNLOAD_FAILED".into(), error: Some(e), results: Vec::new() }
        }
    }
}

async fn collect_results(
    ctx: Arc<UnitContext>,
    api: Arc<dyn BatchApi>,
    op: &Operation,
    inputs: Vec<UnitInput>,
    state_dir: &std::path::Path,
) -> Result<Vec<(TaskIndex, u32, UnitResult)>, String> {
    let by_key: HashMap<String, UnitInput> =
        inputs.into_iter().map(|i| (ctx.plan.tasks[i.index as usize].id.to_string(), i)).collect();
    if let Some(file) = &op.responses_file {
        let _ = crate::fsutil::create_dir_all(state_dir);
        let path = state_dir.join(format!("{}.jsonl", op.name.replace('/', "-")));
        api.download(file, &path).await.map_err(|e| format!("cannot download {file}: {e}"))?;
        let results = tokio::task::spawn_blocking(move || {
            let out = results_from_file(&ctx, &path, &by_key);
            let _ = std::fs::remove_file(&path);
            out
        })
        .await
        .map_err(|e| e.to_string())?;
        return results;
    }
    let inline: Vec<(String, Result<Bytes, RpcStatus>)> = op
        .inline
        .iter()
        .map(|(k, r)| {
            (k.clone(), r.as_ref().map(|raw| Bytes::copy_from_slice(raw.get().as_bytes())).map_err(Clone::clone))
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        Ok(inline.into_iter().filter_map(|(k, r)| result_for(&ctx, &by_key, &k, r)).collect())
    })
    .await
    .map_err(|e| e.to_string())?
}

fn results_from_file(
    ctx: &UnitContext,
    path: &std::path::Path,
    by_key: &HashMap<String, UnitInput>,
) -> Result<Vec<(TaskIndex, u32, UnitResult)>, String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(parsed) = parse_result_line(&line) else { continue };
        if let Some(r) = result_for(ctx, by_key, &parsed.key, parsed.result) {
            out.push(r);
        }
    }
    Ok(out)
}

/// One result line → the unit result of its task (joined by key).
fn result_for(
    ctx: &UnitContext,
    by_key: &HashMap<String, UnitInput>,
    key: &str,
    result: Result<Bytes, RpcStatus>,
) -> Option<(TaskIndex, u32, UnitResult)> {
    let input = by_key.get(key)?;
    let unit = match result {
        Ok(body) => match process(ctx, input, &body, Tier::Batch) {
            super::unit::UnitResult::Fetch(fetch) => super::unit::fetch_not_supported(ctx, input, &fetch),
            unit => unit,
        },
        Err(status) => {
            let error = ApiError::Status {
                http_status: http_status_of_grpc(status.code),
                status: Box::new(status),
                retry_after: None,
            };
            UnitResult::Failed { class: classify(&error), error }
        }
    };
    Some((input.index, input.attempt, unit))
}
