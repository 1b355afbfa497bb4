//! `POST /v1beta/models/{model}:generateContent`: auth, validation, quotas, faults, latency, and
//! a response with a real image, assembled from cached base64 without copying it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{StreamExt, stream};
use rand::Rng;
use serde_json::{Value, json};

use super::faults::{Directives, request_rng};
use super::hostile::{self, Client};
use super::images::{ImageKey, style_for, tail_b64};
use super::request::{self, Request};
use super::signature;
use super::stats::{RequestEvent, RequestLog, Stats, UsageTotals};
use super::{MockState, batch};
use crate::catalog::ModelSpec;
use crate::plan::fingerprint::sha256;

/// `GET /_stats`
pub(crate) async fn stats(State(state): State<Arc<MockState>>) -> Json<Stats> {
    Json(state.stats().clone())
}

/// `POST /_stats/reset`
pub(crate) async fn reset_stats(State(state): State<Arc<MockState>>) -> StatusCode {
    let mut stats = state.stats();
    *stats = Stats { started_unix_ms: stats.started_unix_ms, ..Stats::default() };
    StatusCode::NO_CONTENT
}

/// `POST /{version}/models/{model}:{action}`
pub(crate) async fn model_action(
    State(state): State<Arc<MockState>>,
    Path((version, model_action)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = Client::of(&headers, &query);
    if let Err(resp) = check_auth(&state, &headers, &query) {
        count_rejected(&state, resp.status().as_u16());
        return *resp;
    }
    let (model, action) = model_action.split_once(':').unwrap_or((&model_action, ""));
    let model = model.strip_prefix("models/").unwrap_or(model);
    if version != "v1beta" && version != "v1" {
        return error(404, "NOT_FOUND", &format!("API version {version} is not found"), None);
    }
    let Some(spec) = state.config.catalog.model(model).cloned() else {
        let message = format!(
            "models/{model} is not found for API version {version}, or is not supported for {action}. Call ListModels to see the list of available models and their supported methods."
        );
        count_rejected(&state, 404);
        return error(404, "NOT_FOUND", &message, None);
    };
    match action {
        "generateContent" => generate_content(state, spec, body, client).await,
        "batchGenerateContent" => batch::create(state, spec, body).await,
        other => error(404, "NOT_FOUND", &format!("method {other} is not supported by the emulator"), None),
    }
}

/// Counts a request refused before it reached a model (auth, unknown model).
fn count_rejected(state: &MockState, status: u16) {
    let mut stats = state.stats();
    stats.requests += 1;
    *stats.by_status.entry(status.to_string()).or_default() += 1;
}

fn check_auth(
    state: &MockState,
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> Result<(), Box<Response>> {
    let header_key =
        headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned).filter(|k| !k.is_empty());
    let query_key = query.get("key").cloned().filter(|k| !k.is_empty());
    {
        let mut stats = state.stats();
        if header_key.is_some() {
            stats.auth_header += 1;
        } else if query_key.is_some() {
            stats.auth_query += 1;
        }
    }
    let key = header_key.or(query_key);
    let Some(key) = key else {
        return Err(Box::new(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        )));
    };
    let valid = match &state.config.api_keys {
        Some(keys) => keys.contains(&key),

        None => true,
    };
    if valid {
        Ok(())
    } else {
        let body = json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
            }]
        }});
        Err(Box::new((StatusCode::BAD_REQUEST, Json(body)).into_response()))
    }
}

/// Auth for the batch and files routes: the error response when the key is wrong.
pub(crate) fn check_auth_pub(
    state: &MockState,
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> Result<(), Box<Response>> {
    check_auth(state, headers, query)
}

/// An error response with the real body shape.
pub(crate) fn error(code: u16, status: &str, message: &str, details: Option<Value>) -> Response {
    let mut err = json!({"code": code, "message": message, "status": status});
    if let Some(d) = details {
        err["details"] = d;
    }
    let status_code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status_code, Json(json!({"error": err}))).into_response()
}

pub(crate) struct Call {
    prompt: String,
    fingerprint: [u8; 32],
    pub fp_hex: String,
    pub nth: u32,
    arrived_ms: f64,
    model: String,
}

async fn generate_content(state: Arc<MockState>, spec: ModelSpec, body: Bytes, client: Client) -> Response {
    let arrived = Instant::now();
    let fingerprint = sha256(&body);
    let nth = {
        let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
        let n = seen.entry(fingerprint).or_insert(0);
        *n += 1;
        *n - 1
    };
    let mut call = Call {
        prompt: String::new(),
        fingerprint,
        fp_hex: hex::encode(&fingerprint[..16]),
        nth,
        arrived_ms: state.elapsed_ms(),
        model: spec.id.clone(),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let resp = error(400, "INVALID_ARGUMENT", &format!("Invalid JSON payload received. {e}"), None);
            record(&state, &call, 400, "invalid", None, None);
            return resp;
        }
    };
    let req = match request::validate(&value, &spec, &state.secret) {
        Ok(r) => r,
        Err(invalid) => {
            record(&state, &call, 400, "invalid", None, None);
            return error(400, "INVALID_ARGUMENT", &invalid.0, None);
        }
    };
    call.prompt = req.last_user_text.chars().take(120).collect();
    let directives = Directives::parse(&req.last_user_text);
    let mut rng = request_rng(state.config.seed, &fingerprint, nth);

    if let Some(resp) = quota_check(&state, &spec, &directives, &call) {
        return resp;
    }
    if let Some(resp) = injected_error(&state, &directives, &call, &mut rng) {
        return resp;
    }
    if let Some(resp) = hostile::before_model(&state, &directives.hostile, &call, &client) {
        return resp;
    }
    let delay = directives.delay.unwrap_or_else(|| state.config.latency.sample(&mut rng));
    let wait = delay.saturating_sub(arrived.elapsed());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let answer = answer(&state, &spec, &req, &directives, &call.fp_hex, nth, &mut rng);
    let answer = match hostile::after_model(&state, &directives.hostile, &call, answer, &client, &mut rng) {
        Ok(answer) => answer,
        Err(response) => return *response,
    };
    deliver(&state, &call, answer, &directives, &mut rng)
}

/// Rate limit (sliding minute), daily quota, and the daily-quota directive.
fn quota_check(state: &MockState, spec: &ModelSpec, directives: &Directives, call: &Call) -> Option<Response> {
    let per_day = |value: u32| {
        json!([{
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
                "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
                "quotaDimensions": {"location": "global", "model": spec.id},
                "quotaValue": value.to_string()
            }]
        }])
    };
    if directives.daily_quota {
        record(state, call, 429, "daily-quota", None, None);
        return Some(error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            Some(per_day(0)),
        ));
    }
    if let Some(rpd) = state.config.rpd {
        let mut daily = state.daily.lock().unwrap_or_else(|e| e.into_inner());
        let used = daily.entry(spec.id.clone()).or_insert(0);
        if *used >= rpd {
            drop(daily);
            record(state, call, 429, "daily-quota", None, None);
            return Some(error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                Some(per_day(rpd)),
            ));
        }
        *used += 1;
    }
    let rpm = state.config.rpm?;
    let now = Instant::now();
    let mut windows = state.windows.lock().unwrap_or_else(|e| e.into_inner());
    let window = windows.entry(spec.id.clone()).or_default();
    while window.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
        window.pop_front();
    }
    if window.len() < rpm as usize {
        window.push_back(now);
        return None;
    }
    let oldest = *window.front()?;
    drop(windows);
    let wait = Duration::from_secs(60).saturating_sub(now.duration_since(oldest));
    // Rounded up to 10 ms, as a protobuf Duration string.
    let wait_ms = (wait.as_secs_f64() * 1000.0 / 10.0).ceil() * 10.0;
    let details = json!([
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                "quotaDimensions": {"location": "global", "model": spec.id},
                "quotaValue": rpm.to_string()
            }]
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{:.2}s", wait_ms / 1000.0)}
    ]);
    record(state, call, 429, "rate-limited", Some(wait_ms), None);
    Some(error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        Some(details),
    ))
}

/// Errors asked for by a directive or drawn from the configured rates.
fn injected_error(
    state: &MockState,
    directives: &Directives,
    call: &Call,
    rng: &mut rand::rngs::StdRng,
) -> Option<Response> {
    let directed = directives.fail.filter(|(_, n)| call.nth < *n).map(|(status, _)| status);
    let rates = &state.config.faults;
    let random = if directed.is_some() {
        None
    } else {
        let roll: f64 = rng.random();
        if roll < rates.error_429 {
            Some(429)
        } else if roll < rates.error_429 + rates.error_500 {
            Some(500)
        } else if roll < rates.error_429 + rates.error_500 + rates.error_503 {
            Some(503)
        } else {
            None
        }
    };
    let status = directed.or(random)?;
    let retry = directives.retry.filter(|_| directed.is_some());
    let (name, message) = match status {
        429 => ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500 => (
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ),
        502 => ("UNAVAILABLE", "Bad Gateway"),
        503 => ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504 => ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "Requested entity was not found."),
        _ => ("UNKNOWN", "Injected failure."),
    };
    let retry_ms = retry.map(|d| d.as_secs_f64() * 1000.0);
    let details = match (status, retry) {
        (429, Some(d)) => Some(
            json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{:.3}s", d.as_secs_f64())}]),
        ),
        _ => None,
    };
    record(state, call, status, "injected-error", retry_ms, None);
    let mut resp = error(status, name, message, details);
    if status != 429
        && let Some(d) = retry
    {
        // Retry-After is whole seconds.
        let secs = d.as_secs_f64().ceil() as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(log) = state.stats().fingerprints.get_mut(&call.fp_hex)
            && let Some(last) = log.events.last_mut()
        {
            last.retry_after_ms = Some(secs as f64 * 1000.0);
        }
    }
    Some(resp)
}

/// A 200 answer, before delivery: JSON around the image's base64.
pub(crate) struct Answer {
    pub head: String,
    pub image_b64: Option<(Bytes, String)>,
    pub rest: String,
    pub has_image: bool,
    pub usage: UsageTotals,
    pub outcome: &'static str,
    /// The cached image the answer carries (to draw it again for a `fileData` download).
    pub image_key: Option<ImageKey>,
}

impl Answer {
    pub fn len(&self) -> usize {
        self.head.len() + self.image_b64.as_ref().map_or(0, |(h, t)| h.len() + t.len()) + self.rest.len()
    }

    /// The whole body in one buffer (batch results).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(self.head.as_bytes());
        if let Some((h, t)) = &self.image_b64 {
            out.extend_from_slice(h);
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(self.rest.as_bytes());
        out
    }
}

/// Builds the response to a valid request.
pub(crate) fn answer(
    state: &MockState,
    spec: &ModelSpec,
    req: &Request,
    directives: &Directives,
    label: &str,
    nth: u32,
    rng: &mut rand::rngs::StdRng,
) -> Answer {
    let rates = &state.config.faults;
    let gemini3 = spec.is_gemini3();
    let thinking = if gemini3 { u64::from(spec.thinking_estimate(req.thinking_level.as_deref())) } else { 0 };
    let thinking = directives.thinking.unwrap_or(thinking);
    // `maxOutputTokens` bounds the thinking (the caption is short and counted apart here).
    let thinking = req.max_output_tokens.map_or(thinking, |cap| thinking.min(cap));
    let prompt_image = req.input_images * u64::from(spec.input_image_tokens);
    let mut usage = UsageTotals {
        prompt: req.text_tokens + prompt_image,
        input_text: req.text_tokens,
        input_image: prompt_image,
        thoughts: thinking,
        ..UsageTotals::default()
    };
    let prompt_details = json!([
        {"modality": "TEXT", "tokenCount": req.text_tokens},
        {"modality": "IMAGE", "tokenCount": prompt_image}
    ]);
    let response_id = format!("mock-{label}-{nth}");

    // Outcomes without an image.
    let limited = |n: Option<u32>| n.is_some_and(|n| nth < n);
    if directives.blocked {
        let body = json!({
            "promptFeedback": {"blockReason": "OTHER"},
            "usageMetadata": usage_json(&usage, &prompt_details, None),
            "modelVersion": spec.id, "responseId": response_id
        });
        return no_image_answer(body, usage);
    }
    let roll: f64 = rng.random();
    if limited(directives.safety) || directives.no_image || (directives.safety.is_none() && roll < rates.image_safety) {
        let reason = if directives.no_image { "NO_IMAGE" } else { "IMAGE_SAFETY" };
        let mut candidate = json!({"content": {"role": "model"}, "finishReason": reason, "index": 0});
        if reason == "IMAGE_SAFETY" {
            candidate["finishMessage"] = json!(
                "Unable to show the generated image. The image was filtered out because it violated Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. Try rephrasing the prompt."
            );
        }
        let body = json!({
            "candidates": [candidate],
            "usageMetadata": usage_json(&usage, &prompt_details, None),
            "modelVersion": spec.id, "responseId": response_id
        });
        return no_image_answer(body, usage);
    }
    let text_only_roll: f64 = rng.random();
    if limited(directives.text_only) || (directives.text_only.is_none() && text_only_roll < rates.text_only) {
        let text = "I can't generate that image. Try describing the scene differently.";
        let tokens = (text.len() as u64).div_ceil(4);
        usage.candidates = tokens;
        usage.output_text = tokens;
        let mut part = json!({"text": text});
        if gemini3 {
            part["thoughtSignature"] = json!(signature::sign(&state.secret, text.as_bytes()));
        }
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage_json(&usage, &prompt_details, Some(&json!([{"modality": "TEXT", "tokenCount": tokens}]))),
            "modelVersion": spec.id, "responseId": response_id
        });
        return no_image_answer(body, usage);
    }

    // The image.
    let ratio = req.aspect_ratio.clone().unwrap_or_else(|| default_ratio(spec, req.first_image));
    let size_name = req.image_size.clone().unwrap_or_else(|| spec.default_size.clone());
    let size = spec.size(&size_name).or_else(|| spec.sizes.first());
    let output_tokens = size.map_or(0, |s| u64::from(s.output_tokens));
    let (mut width, mut height) = spec.pixels(&ratio, &size_name).unwrap_or((1024, 1024));
    if directives.wrong_size {
        (width, height) = (width / 2, height / 2);
    }
    let jpeg_roll: f64 = rng.random();
    let jpeg = directives.jpeg || jpeg_roll < state.config.jpeg_rate;
    let pad_to = if state.config.pad_per_megapixel > 0 {
        let mp = f64::from(width) * f64::from(height) / 1_048_576.0;
        let want = (mp * state.config.pad_per_megapixel as f64) as usize;
        if state.config.pad_cap > 0 { want.min(state.config.pad_cap) } else { want }
    } else {
        0
    };
    let style = style_for(&sha256(req.last_user_text.as_bytes()));
    let image_key = ImageKey { width, height, style, jpeg, pad_to };
    let cached = state.images.get(image_key);
    let tail = tail_b64(&cached, &format!("{label}-{nth}"));
    let mime = if jpeg && !directives.mislabel { "image/jpeg" } else { "image/png" };

    let mut parts = Vec::new();
    if req.include_thoughts {
        let summary = text_of_tokens(
            "**Composing the scene**\nI'm planning the layout, the light and the palette before drawing. ",
            u64::from(spec.estimates.thought_summary_tokens),
        );
        parts.push(json!({"text": summary, "thought": true}));
    }
    let mut caption_tokens = 0;
    if req.wants_text {
        caption_tokens = u64::from(spec.estimates.text_output_tokens);
        let caption = text_of_tokens("Here is the image you asked for, composed as described. ", caption_tokens);
        let mut part = json!({"text": caption});
        if gemini3 {
            part["thoughtSignature"] = json!(signature::sign(&state.secret, caption.as_bytes()));
        }
        parts.push(part);
    }
    usage.candidates = output_tokens + caption_tokens;
    usage.output_image = output_tokens;
    usage.output_text = caption_tokens;
    let signature = if gemini3 {
        let head_part = &cached.head_b64[..cached.head_b64.len().min(signature::HEAD)];
        let mut last = cached.head_b64[cached.head_b64.len().saturating_sub(signature::TAIL)..].to_vec();
        last.extend_from_slice(tail.as_bytes());
        let last = &last[last.len().saturating_sub(signature::TAIL)..];
        Some(signature::sign_sampled(&state.secret, cached.head_b64.len() + tail.len(), head_part, last))
    } else {
        None
    };
    let candidate_details = json!([
        {"modality": "IMAGE", "tokenCount": output_tokens},
        {"modality": "TEXT", "tokenCount": caption_tokens}
    ]);
    let parts_json: Vec<String> = parts.iter().map(Value::to_string).collect();
    let mut head = String::from("{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[");
    for p in &parts_json {
        head.push_str(p);
        head.push(',');
    }
    head.push_str("{\"inlineData\":{\"mimeType\":\"");
    head.push_str(mime);
    head.push_str("\",\"data\":\"");
    let mut rest = String::from("\"}");
    if let Some(sig) = signature {
        rest.push_str(",\"thoughtSignature\":\"");
        rest.push_str(&sig);
        rest.push('"');
    }
    rest.push_str("}]},\"finishReason\":\"STOP\",\"index\":0");
    if directives.evil_grounding {
        let hostile = json!({"groundingChunks": [
            {"web": {"uri": "javascript:alert(document.domain)", "title": "<script>alert(1)</script>"}},
            {"web": {"uri": "https://example.com/ok?q=<b>", "title": "<img src=x onerror=alert(2)>"}}
        ]});
        rest.push_str(",\"groundingMetadata\":");
        rest.push_str(&hostile.to_string());
    } else if req.web_search || req.image_search || directives.grounding {
        rest.push_str(",\"groundingMetadata\":");
        rest.push_str(&grounding_json(req.image_search).to_string());
    }
    rest.push_str("}],\"usageMetadata\":");
    rest.push_str(&usage_json(&usage, &prompt_details, Some(&candidate_details)).to_string());
    rest.push_str(",\"modelVersion\":\"");
    rest.push_str(&spec.id);
    rest.push_str("\",\"responseId\":\"");
    rest.push_str(&response_id);
    rest.push_str("\"}");
    Answer {
        head,
        image_b64: Some((cached.head_b64.clone(), tail)),
        rest,
        has_image: true,
        usage,
        outcome: "image",
        image_key: Some(image_key),
    }
}

fn no_image_answer(body: Value, usage: UsageTotals) -> Answer {
    Answer {
        head: body.to_string(),
        image_b64: None,
        rest: String::new(),
        has_image: false,
        usage,
        outcome: "no-image",
        image_key: None,
    }
}

fn usage_json(usage: &UsageTotals, prompt_details: &Value, candidate_details: Option<&Value>) -> Value {
    let mut v = json!({
        "promptTokenCount": usage.prompt,
        "totalTokenCount": usage.prompt + usage.candidates + usage.thoughts,
        "promptTokensDetails": prompt_details,
    });
    if usage.candidates > 0 {
        v["candidatesTokenCount"] = json!(usage.candidates);
    }
    if usage.thoughts > 0 {
        v["thoughtsTokenCount"] = json!(usage.thoughts);
    }
    if let Some(d) = candidate_details {
        v["candidatesTokensDetails"] = d.clone();
    }
    v
}

fn grounding_json(image_search: bool) -> Value {
    let mut chunks = vec![
        json!({"web": {"uri": "https://example.com/weather/today", "title": "example.com"}}),
        json!({"web": {"uri": "https://example.org/reference", "title": "example.org"}}),
    ];
    if image_search {
        chunks.push(json!({"image": {"sourceUri": "https://example.net/gallery/page", "imageUri": "https://example.net/gallery/photo.jpg", "title": "Photo", "domain": "example.net"}}));
    }
    json!({
        "webSearchQueries": ["reference images"],
        "groundingChunks": chunks,
        "searchEntryPoint": {"renderedContent": "<div class=\"chip\">reference images</div>"}
    })
}

/// A text of exactly `tokens` tokens by the `ceil(bytes / 4)` rule, repeating `base`.
fn text_of_tokens(base: &str, tokens: u64) -> String {
    let want = (tokens * 4) as usize;

    let mut s = String::with_capacity(want);
    while s.len() < want {
        s.push_str(base);
    }
    s.truncate(want);
    s
}

/// Without an aspect ratio, the output follows the first input image, or is 1:1.
fn default_ratio(spec: &ModelSpec, first_image: Option<(u32, u32)>) -> String {
    let Some((w, h)) = first_image else { return "1:1".to_owned() };
    let target = f64::from(w) / f64::from(h.max(1));
    spec.aspect_ratios
        .iter()
        .filter_map(|r| {
            crate::catalog::ratio_of(r).map(|(a, b)| (r, (f64::from(a) / f64::from(b) / target).ln().abs()))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or_else(|| "1:1".to_owned(), |(r, _)| r.clone())
}

/// Sends an answer, applying delivery faults (dropped connection, truncated or endless body).
fn deliver(
    state: &MockState,
    call: &Call,
    answer: Answer,
    directives: &Directives,
    rng: &mut rand::rngs::StdRng,
) -> Response {
    let rates = &state.config.faults;
    let drop_roll: f64 = rng.random();
    let trunc_roll: f64 = rng.random();
    // The random rates are of image responses (as their flags say): a dropped or cut answer then
    // always stands for a billed image, which is what the soak tests count.
    let image = answer.has_image;
    let drop =
        directives.drop.is_some_and(|n| call.nth < n) || (directives.drop.is_none() && image && drop_roll < rates.drop);
    let truncate = !drop
        && (directives.truncate.is_some_and(|n| call.nth < n)
            || (directives.truncate.is_none() && image && trunc_roll < rates.truncate));
    let total = answer.len();
    if directives.huge {
        record(state, call, 200, "huge", None, Some(&answer));
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let body = stream::repeat_with(move || Ok::<Bytes, std::io::Error>(chunk.clone())).take(8000);
        return Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
            .header(header::CONTENT_LENGTH, 8000u64 * (64 << 10))
            .body(Body::from_stream(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    if directives.endless {
        record(state, call, 200, "endless", None, Some(&answer));
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let body = stream::repeat_with(move || Ok::<Bytes, std::io::Error>(chunk.clone()));
        return Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
            .body(Body::from_stream(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let outcome = if drop {
        "dropped"
    } else if truncate {
        "truncated"
    } else {
        answer.outcome
    };
    record(state, call, if drop { 0 } else { 200 }, outcome, None, Some(&answer));
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = Vec::with_capacity(4);
    let broken = || Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "emulated connection loss"));
    if drop {
        chunks.push(broken());
    } else if truncate && answer.image_b64.is_none() {
        // No image to cut: the answer itself is cut (else it would arrive whole).
        let head = Bytes::from(answer.head);
        chunks.push(Ok(head.slice(..head.len() / 2)));
        chunks.push(broken());
    } else {
        chunks.push(Ok(Bytes::from(answer.head)));
        if let Some((head, tail)) = answer.image_b64 {
            if truncate {
                chunks.push(Ok(head.slice(..head.len() / 2)));
                chunks.push(broken());
            } else {
                chunks.push(Ok(head));
                chunks.push(Ok(Bytes::from(tail)));
            }
        }
        if !truncate {
            chunks.push(Ok(Bytes::from(answer.rest)));
        }
    }
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .header(header::CONTENT_LENGTH, total)
        .body(Body::from_stream(stream::iter(chunks)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(crate) fn record(
    state: &MockState,
    call: &Call,
    status: u16,
    outcome: &str,
    retry_after_ms: Option<f64>,
    answer: Option<&Answer>,
) {
    let mut stats = state.stats();
    stats.requests += 1;
    *stats.by_status.entry(if status == 0 { "dropped".into() } else { status.to_string() }).or_default() += 1;
    *stats.by_model.entry(call.model.clone()).or_default() += 1;
    match (outcome, answer) {
        ("image", Some(a)) => {
            stats.images += 1;
            stats.usage.add(&a.usage);
        }
        ("no-image", Some(a)) => {
            stats.no_image += 1;
            stats.usage.add(&a.usage);
        }
        ("dropped", Some(a)) => {
            stats.dropped += 1;
            stats.undelivered_usage.add(&a.usage);
        }
        ("truncated", Some(a)) => {
            stats.truncated += 1;
            stats.undelivered_usage.add(&a.usage);
        }
        (other, answer) => hostile::count(&mut stats, other, answer),
    }
    let log = stats.fingerprints.entry(call.fp_hex.clone()).or_insert_with(|| RequestLog {
        model: call.model.clone(),
        prompt: call.prompt.clone(),
        ..RequestLog::default()
    });
    log.count += 1;
    if outcome == "image" {
        log.successes += 1;
    }
    log.events.push(RequestEvent { at_ms: call.arrived_ms, status, outcome: outcome.to_owned(), retry_after_ms });
    let _ = call.fingerprint;
}
