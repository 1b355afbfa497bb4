//! The Batch API and Files API of the emulator: `models/{m}:batchGenerateContent` (inline or
//! file input), `batches/{id}` with states that advance over time (`BATCH_STATE_*` on the wire),
//! `:cancel`, delete and list; the resumable upload protocol and both download URL forms.
//!
//! Faults: every Nth job fails or expires (configurable), results come back in a shuffled order
//! (join by key, never by position), and a line can carry an error instead of a response.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::MockState;
use super::faults::{Directives, request_rng};
use super::generate::{answer, check_auth_pub as check_auth, error};
use super::request;
use super::stats::{RequestEvent, RequestLog};
use crate::catalog::ModelSpec;
use crate::plan::fingerprint::sha256;

type QueryMap = HashMap<String, String>;

#[derive(Debug, Default)]
pub struct BatchStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Jobs created so far (fault injection counts jobs, not uploads).
    jobs_created: u64,
    jobs: BTreeMap<String, Job>,
    files: HashMap<String, StoredFile>,
    uploads: HashMap<String, Upload>,
}

#[derive(Debug)]
struct Job {
    id: String,
    number: u64,
    model: String,
    display_name: String,
    created: Instant,
    created_at: String,
    input: Input,
    cancelled: bool,
    result: Option<Completed>,
}

#[derive(Debug, Clone)]
enum Input {
    Inline(Vec<(String, Value)>),
    File(String),
}

#[derive(Debug, Clone)]
struct Completed {
    state: &'static str,
    output: Option<Value>,
    error: Option<Value>,
    succeeded: u64,
    failed: u64,
    count: u64,
}

#[derive(Debug, Clone)]
struct StoredFile {
    display_name: String,
    mime: String,
    bytes: Bytes,
}

#[derive(Debug)]
struct Upload {
    display_name: String,
    mime: String,
    data: Vec<u8>,
}

impl BatchStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// `POST models/{m}:batchGenerateContent`
pub(crate) async fn create(state: Arc<MockState>, spec: ModelSpec, body: Bytes) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", None);
    };
    let batch = value.get("batch").unwrap_or(&Value::Null);
    let input_config = batch.get("inputConfig").or_else(|| batch.get("input_config"));
    let Some(input_config) = input_config else {
        return error(400, "INVALID_ARGUMENT", "* batch.input_config: input config is required", None);
    };
    let file = input_config.get("fileName").or_else(|| input_config.get("file_name")).and_then(Value::as_str);
    let inline = input_config.get("requests").and_then(|r| r.get("requests")).and_then(Value::as_array);
    let input = match (file, inline) {
        (Some(name), None) => {
            if !state.batch.lock().files.contains_key(name) {
                return error(404, "NOT_FOUND", &format!("File {name} not found."), None);
            }
            Input::File(name.to_owned())
        }
        (None, Some(list)) => {
            let mut lines = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                let key =
                    item.pointer("/metadata/key").and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_owned);
                lines.push((key, item.get("request").cloned().unwrap_or(Value::Null)));
            }
            Input::Inline(lines)
        }
        _ => {
            return error(
                400,
                "INVALID_ARGUMENT",
                "Exactly one of input_config.file_name or input_config.requests must be set.",
                None,
            );
        }
    };
    let display_name =
        batch.get("displayName").or_else(|| batch.get("display_name")).and_then(Value::as_str).unwrap_or("").to_owned();
    let job_json = {
        let mut inner = state.batch.lock();
        inner.next_id += 1;
        inner.jobs_created += 1;
        let number = inner.jobs_created;
        let id = format!("mock{:06}", inner.next_id);
        let job = Job {
            id: id.clone(),
            number,
            model: spec.id.clone(),
            display_name,
            created: Instant::now(),
            created_at: now_rfc3339(),
            input,
            cancelled: false,
            result: None,
        };
        let v = operation_json(&job, "BATCH_STATE_PENDING", None);
        inner.jobs.insert(id, job);
        v
    };
    state.stats().batches_created += 1;
    Json(job_json).into_response()
}

/// `GET batches/{id}`
pub(crate) async fn get_batch(
    State(state): State<Arc<MockState>>,
    Path((_version, id)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    match current(&state, &id) {
        Some(v) => Json(v).into_response(),
        None => error(404, "NOT_FOUND", &format!("Batch batches/{id} not found."), None),
    }
}

/// `GET batches`
pub(crate) async fn list_batches(
    State(state): State<Arc<MockState>>,
    Path(_version): Path<String>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    let ids: Vec<String> = state.batch.lock().jobs.keys().cloned().collect();
    let ops: Vec<Value> = ids.iter().filter_map(|id| current(&state, id)).collect();
    Json(json!({"operations": ops})).into_response()
}

/// `POST batches/{id}:cancel`
pub(crate) async fn post_batch(
    State(state): State<Arc<MockState>>,
    Path((_version, action)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    let Some(id) = action.strip_suffix(":cancel") else {
        return error(404, "NOT_FOUND", "unknown batch method", None);
    };
    {
        let mut inner = state.batch.lock();
        let Some(job) = inner.jobs.get_mut(id) else {
            return error(404, "NOT_FOUND", &format!("Batch batches/{id} not found."), None);
        };
        if job.result.is_none() {
            job.cancelled = true;
        }
    }
    Json(json!({})).into_response()
}

/// `DELETE batches/{id}`
pub(crate) async fn delete_batch(
    State(state): State<Arc<MockState>>,
    Path((_version, id)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    match state.batch.lock().jobs.remove(&id) {
        Some(_) => Json(json!({})).into_response(),
        None => error(404, "NOT_FOUND", &format!("Batch batches/{id} not found."), None),
    }
}

/// The job's operation as of now; completes it (once) when its time has come.
fn current(state: &MockState, id: &str) -> Option<Value> {
    let (elapsed, cancelled, done, number) = {
        let inner = state.batch.lock();
        let job = inner.jobs.get(id)?;
        (job.created.elapsed(), job.cancelled, job.result.clone(), job.number)
    };
    if let Some(result) = done {
        let inner = state.batch.lock();
        let job = inner.jobs.get(id)?;
        return Some(operation_json(job, result.state, Some(&result)));
    }
    let cfg = &state.config;
    let phase = if cancelled {
        Some("BATCH_STATE_CANCELLED")
    } else if elapsed < cfg.batch_pending {
        Some("BATCH_STATE_PENDING")
    } else if elapsed < cfg.batch_pending + cfg.batch_running {
        Some("BATCH_STATE_RUNNING")
    } else {
        None
    };
    if let Some(phase) = phase {
        if phase == "BATCH_STATE_CANCELLED" {
            let completed = Completed { state: phase, output: None, error: None, succeeded: 0, failed: 0, count: 0 };
            let mut inner = state.batch.lock();
            let job = inner.jobs.get_mut(id)?;
            job.result = Some(completed.clone());
            return Some(operation_json(job, phase, Some(&completed)));
        }
        let inner = state.batch.lock();
        return Some(operation_json(inner.jobs.get(id)?, phase, None));
    }
    let completed = if cfg.batch_fail_every > 0 && number % u64::from(cfg.batch_fail_every) == 0 {
        Completed {
            state: "BATCH_STATE_FAILED",
            output: None,
            error: Some(json!({"code": 13, "message": "internal error while running the batch"})),
            succeeded: 0,
            failed: 0,
            count: 0,
        }
    } else if cfg.batch_expire_every > 0 && number % u64::from(cfg.batch_expire_every) == 0 {
        Completed { state: "BATCH_STATE_EXPIRED", output: None, error: None, succeeded: 0, failed: 0, count: 0 }
    } else {
        run_job(state, id)?
    };
    let mut inner = state.batch.lock();
    let job = inner.jobs.get_mut(id)?;
    if job.result.is_none() {
        job.result = Some(completed);
    }
    let result = job.result.clone()?;
    Some(operation_json(job, result.state, Some(&result)))
}

/// Answers every line of a job, shuffles the order, and stores the output.
fn run_job(state: &MockState, id: &str) -> Option<Completed> {
    let (model, input) = {
        let inner = state.batch.lock();
        let job = inner.jobs.get(id)?;
        (job.model.clone(), job.input.clone())
    };
    let spec = state.config.catalog.model(&model)?.clone();
    let (lines, from_file) = match input {
        Input::Inline(lines) => (lines, false),
        Input::File(name) => {
            let bytes = state.batch.lock().files.get(&name)?.bytes.clone();
            let mut lines = Vec::new();
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                let key = value.get("key").and_then(Value::as_str).map_or_else(|| i.to_string(), str::to_owned);
                lines.push((key, value.get("request").cloned().unwrap_or(Value::Null)));
            }
            (lines, true)
        }
    };
    let mut results: Vec<(String, Result<Vec<u8>, Value>)> =
        lines.iter().map(|(key, req)| (key.clone(), answer_line(state, &spec, req))).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(state.config.seed ^ id.len() as u64 ^ 0x5eed);
    results.shuffle(&mut rng);
    let succeeded = results.iter().filter(|(_, r)| r.is_ok()).count() as u64;
    let count = results.len() as u64;
    {
        let mut stats = state.stats();
        stats.batch_requests += count;
    }
    let output = if from_file {
        let mut jsonl = Vec::new();
        for (key, result) in &results {
            jsonl.extend_from_slice(b"{\"key\":");
            jsonl.extend_from_slice(json!(key).to_string().as_bytes());
            match result {
                Ok(body) => {
                    jsonl.extend_from_slice(b",\"response\":");
                    jsonl.extend_from_slice(body);
                }
                Err(err) => {
                    jsonl.extend_from_slice(b",\"error\":");
                    jsonl.extend_from_slice(err.to_string().as_bytes());
                }
            }
            jsonl.extend_from_slice(b"}\n");
        }
        let name = format!("files/batch-{id}");
        state.batch.lock().files.insert(
            name.clone(),
            StoredFile {
                display_name: format!("batch-{id}"),
                mime: "application/jsonl".into(),
                bytes: Bytes::from(jsonl),
            },
        );
        json!({"responsesFile": name})
    } else {
        let items: Vec<Value> = results
            .iter()
            .map(|(key, result)| match result {
                Ok(body) => json!({"metadata": {"key": key}, "response": serde_json::from_slice::<Value>(body).unwrap_or(Value::Null)}),
                Err(err) => json!({"metadata": {"key": key}, "error": err}),
            })
            .collect();
        json!({"inlinedResponses": {"inlinedResponses": items}})
    };
    Some(Completed {
        state: "BATCH_STATE_SUCCEEDED",
        output: Some(output),
        error: None,
        succeeded,
        failed: count - succeeded,
        count,
    })
}

/// One batch line: a response body, or a per-line Status error (gRPC code, no status string).
fn answer_line(state: &MockState, spec: &ModelSpec, req: &Value) -> Result<Vec<u8>, Value> {
    let text = req.to_string();
    let fingerprint = sha256(text.as_bytes());
    let fp_hex = hex::encode(&fingerprint[..16]);
    let nth = {
        let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(fingerprint).or_insert(0);
        *n += 1;
        *n - 1
    };
    let parsed_prompt: String = request::validate(req, spec, &state.secret)
        .map(|r| r.last_user_text.chars().take(120).collect())
        .unwrap_or_default();
    let log = |outcome: &str, usage: Option<&super::stats::UsageTotals>| {
        let mut stats = state.stats();
        if outcome == "image" {
            stats.images += 1;
        }
        if let Some(u) = usage {
            stats.usage.add(u);
        }
        let at_ms = state.elapsed_ms();
        let entry = stats.fingerprints.entry(fp_hex.clone()).or_insert_with(|| RequestLog {
            model: spec.id.clone(),
            prompt: parsed_prompt.clone(),
            ..RequestLog::default()
        });
        entry.count += 1;
        if outcome == "image" {
            entry.successes += 1;
        }
        entry.events.push(RequestEvent {
            at_ms,
            status: 200,
            outcome: format!("batch-{outcome}"),
            retry_after_ms: None,
        });
    };
    let parsed = match request::validate(req, spec, &state.secret) {
        Ok(p) => p,
        Err(invalid) => {
            log("invalid", None);
            return Err(json!({"code": 3, "message": invalid.0}));
        }
    };
    let directives = Directives::parse(&parsed.last_user_text);
    if let Some((status, n)) = directives.fail
        && nth < n
    {
        log("error", None);
        let code = match status {
            400 => 3,
            429 => 8,
            503 => 14,
            504 => 4,
            _ => 13,
        };
        return Err(json!({"code": code, "message": format!("Injected per-line failure ({status}).")}));
    }
    let mut rng = request_rng(state.config.seed, &fingerprint, nth);
    let a = answer(state, spec, &parsed, &directives, &fp_hex, nth, &mut rng);
    log(if a.has_image { "image" } else { "no-image" }, Some(&a.usage));
    Ok(a.to_bytes())
}

fn operation_json(job: &Job, state: &str, result: Option<&Completed>) -> Value {
    let count = match &job.input {
        Input::Inline(lines) => lines.len() as u64,
        Input::File(_) => result.map_or(0, |r| r.count),
    };
    let mut stats = json!({"requestCount": count.to_string()});
    match result {
        Some(r) if r.state == "BATCH_STATE_SUCCEEDED" => {
            stats["successfulRequestCount"] = json!(r.succeeded.to_string());
            stats["failedRequestCount"] = json!(r.failed.to_string());
        }
        Some(_) => {}
        None => stats["pendingRequestCount"] = json!(count.to_string()),
    }
    let name = format!("batches/{}", job.id);
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "model": format!("models/{}", job.model),
        "displayName": job.display_name,
        "createTime": job.created_at,
        "updateTime": now_rfc3339(),
        "batchStats": stats,
        "state": state,
        "name": name,
    });
    let mut op = json!({"name": name, "metadata": Value::Null});
    let done = result.is_some();
    if done {
        metadata["endTime"] = json!(now_rfc3339());
        op["done"] = json!(true);
    }
    if let Some(r) = result {
        if let Some(output) = &r.output {
            metadata["output"] = output.clone();
            let mut response = output.clone();
            response["@type"] =
                json!("type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput");
            op["response"] = response;
        }
        if let Some(err) = &r.error {
            op["error"] = err.clone();
        }
    }
    op["metadata"] = metadata;
    op
}

// ---------------------------------------------------------------------------------------------
// Files API

/// `POST /upload/v1beta/files` with `X-Goog-Upload-Command: start`.
pub(crate) async fn upload_start(
    State(state): State<Arc<MockState>>,
    Path(version): Path<String>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    let command = headers.get("x-goog-upload-command").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !command.contains("start") {
        return error(400, "INVALID_ARGUMENT", "expected X-Goog-Upload-Command: start", None);
    }
    let meta: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let display_name = meta
        .pointer("/file/display_name")
        .or_else(|| meta.pointer("/file/displayName"))
        .and_then(Value::as_str)
        .unwrap_or("upload")
        .to_owned();
    let mime = headers
        .get("x-goog-upload-header-content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let upload_id = {
        let mut inner = state.batch.lock();
        inner.next_id += 1;
        let id = format!("up{:06}", inner.next_id);
        inner.uploads.insert(id.clone(), Upload { display_name, mime, data: Vec::new() });
        id
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let url =
        format!("http://{host}/upload/{version}/files/{upload_id}?upload_id={upload_id}&upload_protocol=resumable");
    Response::builder()
        .status(200)
        .header("x-goog-upload-url", url)
        .header("x-goog-upload-status", "active")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST <upload url>` with `X-Goog-Upload-Command: upload[, finalize]`.
pub(crate) async fn upload_data(
    State(state): State<Arc<MockState>>,
    Path((_version, upload_id)): Path<(String, String)>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    let command = headers.get("x-goog-upload-command").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let offset: usize =
        headers.get("x-goog-upload-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut inner = state.batch.lock();
    let Some(upload) = inner.uploads.get_mut(&upload_id) else {
        return error(404, "NOT_FOUND", "upload session not found", None);
    };
    if offset != upload.data.len() {
        return error(
            400,
            "INVALID_ARGUMENT",
            &format!("upload offset {offset} does not match {} bytes received", upload.data.len()),
            None,
        );
    }
    upload.data.extend_from_slice(&body);
    if !command.contains("finalize") {
        return Response::builder()
            .status(200)
            .header("x-goog-upload-status", "active")
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let Some(upload) = inner.uploads.remove(&upload_id) else {
        return error(404, "NOT_FOUND", "upload session not found", None);
    };
    let name = format!("files/{upload_id}");
    let size = upload.data.len();
    let file = StoredFile { display_name: upload.display_name, mime: upload.mime, bytes: Bytes::from(upload.data) };
    let file_json = json!({"file": {
        "name": name,
        "displayName": file.display_name,
        "mimeType": file.mime,
        "sizeBytes": size.to_string(),
        "state": "ACTIVE",
        "uri": format!("https://generativelanguage.googleapis.com/v1beta/{name}"),
    }});
    inner.files.insert(name, file);
    drop(inner);
    state.stats().files_uploaded += 1;
    Response::builder()
        .status(200)
        .header("x-goog-upload-status", "final")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(file_json.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `GET /v1beta/files/{id}:download?alt=media` and `GET /download/v1beta/files/{id}:download`.
pub(crate) async fn download(
    State(state): State<Arc<MockState>>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<QueryMap>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&state, &headers, &query) {
        return *r;
    }
    let action = params.get("file_action").cloned().unwrap_or_default();
    let id = action.strip_suffix(":download").unwrap_or(&action);
    let name = format!("files/{id}");
    let file = state.batch.lock().files.get(&name).cloned();
    match file {
        Some(f) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, f.mime)
            .header(header::CONTENT_LENGTH, f.bytes.len())
            .body(Body::from(f.bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        None => error(404, "NOT_FOUND", &format!("File {} not found.", name), None),
    }
}
