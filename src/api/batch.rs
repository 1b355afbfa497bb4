//! The Gemini Batch API and Files API (gemini-api.md §6): create a batch job from inline
//! requests or an uploaded JSONL file, poll it, cancel it, and fetch its results (inline in the
//! operation, or a responses file downloaded to disk without holding it in memory).

use std::path::Path;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::http::HttpApi;
use super::status::{RpcStatus, parse_status_value};
use super::{ApiError, RawReply};

/// Largest operation body read (inline results carry images).
const MAX_OPERATION_BODY: u64 = 512 << 20;

/// A batch job as `batches.get` returns it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub name: String,
    pub display_name: Option<String>,
    /// `BATCH_STATE_*` (or the SDK's `JOB_STATE_*`, normalised to `BATCH_STATE_*`).
    pub state: String,
    pub done: bool,
    pub error: Option<RpcStatus>,
    pub responses_file: Option<String>,
    /// Inline results: (key, response JSON or error).
    pub inline: Vec<(String, Result<Box<serde_json::value::RawValue>, RpcStatus>)>,
}

impl Operation {
    pub fn is_terminal(&self) -> bool {
        self.done
            || matches!(
                self.state.as_str(),
                "BATCH_STATE_SUCCEEDED" | "BATCH_STATE_FAILED" | "BATCH_STATE_CANCELLED" | "BATCH_STATE_EXPIRED"
            )
    }

    pub fn succeeded(&self) -> bool {
        self.state == "BATCH_STATE_SUCCEEDED"
    }
}

#[derive(Deserialize)]
struct RawOperation {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct InlineItem {
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    response: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    error: Option<Value>,
}

/// Parses an operation body.
pub fn parse_operation(body: &[u8]) -> Result<Operation, ApiError> {
    let raw: RawOperation =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(format!("batch operation: {e}")))?;
    let meta = raw.metadata.unwrap_or(Value::Null);
    let state = meta.get("state").and_then(Value::as_str).unwrap_or("BATCH_STATE_UNSPECIFIED");
    let state = state.replace("JOB_STATE_", "BATCH_STATE_");
    let output = meta.get("output").or(raw.response.as_ref()).cloned().unwrap_or(Value::Null);
    let responses_file = output.get("responsesFile").and_then(Value::as_str).map(str::to_owned);
    let mut inline = Vec::new();
    if let Some(items) = output.pointer("/inlinedResponses/inlinedResponses").and_then(Value::as_array) {
        for (i, item) in items.iter().enumerate() {
            let item: InlineItem =
                serde_json::from_value(item.clone()).map_err(|e| ApiError::Malformed(e.to_string()))?;
            let key = item
                .metadata
                .as_ref()
                .and_then(|m| m.get("key"))
                .and_then(Value::as_str)
                .map_or_else(|| i.to_string(), str::to_owned);
            let entry = match (item.response, item.error) {
                (Some(r), None) => Ok(r),
                (_, Some(e)) => Err(parse_status_value(&e).unwrap_or_default()),
                (None, None) => Err(RpcStatus { message: "no response and no error".into(), ..RpcStatus::default() }),
            };
            inline.push((key, entry));
        }
    }
    Ok(Operation {
        name: raw.name.or_else(|| meta.get("name").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default(),
        display_name: meta.get("displayName").and_then(Value::as_str).map(str::to_owned),
        state,
        done: raw.done.unwrap_or(false),
        error: raw.error.as_ref().and_then(parse_status_value),
        responses_file,
        inline,
    })
}

/// One line of a responses file: `{"key": …, "response": {…}}` or `{"key": …, "error": {…}}`.
#[derive(Debug)]
pub struct ResultLine {
    pub key: String,
    pub result: Result<Bytes, RpcStatus>,
}

pub fn parse_result_line(line: &[u8]) -> Result<ResultLine, String> {
    #[derive(Deserialize)]
    struct Line<'a> {
        key: String,
        #[serde(borrow, default)]
        response: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        error: Option<Value>,
    }
    let parsed: Line<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let result = match (parsed.response, parsed.error) {
        (Some(r), None) => Ok(Bytes::copy_from_slice(r.get().as_bytes())),
        (_, Some(e)) => Err(parse_status_value(&e).unwrap_or_default()),
        (None, None) => Err(RpcStatus { message: "no response and no error".into(), ..RpcStatus::default() }),
    };
    Ok(ResultLine { key: parsed.key, result })
}

/// The HTTP status a per-line gRPC code stands for, so the same failure classes apply.
pub fn http_status_of_grpc(code: Option<i64>) -> u16 {
    match code {
        Some(3) | Some(9) | Some(11) => 400,
        Some(16) => 401,
        Some(7) => 403,
        Some(5) => 404,
        Some(8) => 429,
        Some(4) => 504,
        Some(14) => 503,
        Some(c) if (100..600).contains(&c) => c as u16,
        _ => 500,
    }
}

impl HttpApi {
    /// `POST models/{model}:batchGenerateContent` with inline requests (`key`, request JSON).
    pub async fn batch_create_inline(
        &self,
        model: &str,
        display_name: &str,
        requests: &[(String, Bytes)],
    ) -> Result<Operation, ApiError> {
        let mut body = Vec::with_capacity(requests.iter().map(|(_, r)| r.len() + 64).sum::<usize>() + 128);
        body.extend_from_slice(b"{\"batch\":{\"displayName\":");
        body.extend_from_slice(serde_json::to_string(display_name).unwrap_or_default().as_bytes());
        body.extend_from_slice(b",\"inputConfig\":{\"requests\":{\"requests\":[");
        for (i, (key, request)) in requests.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"request\":");
            body.extend_from_slice(request);
            body.extend_from_slice(b",\"metadata\":{\"key\":");
            body.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
            body.extend_from_slice(b"}}");
        }
        body.extend_from_slice(b"]}}}}");
        self.batch_create(model, Bytes::from(body)).await
    }

    /// `POST models/{model}:batchGenerateContent` with an uploaded JSONL file.
    pub async fn batch_create_from_file(
        &self,
        model: &str,
        display_name: &str,
        file_name: &str,
    ) -> Result<Operation, ApiError> {
        let body = serde_json::json!({"batch": {"displayName": display_name, "inputConfig": {"fileName": file_name}}});
        self.batch_create(model, Bytes::from(body.to_string())).await
    }

    async fn batch_create(&self, model: &str, body: Bytes) -> Result<Operation, ApiError> {
        let url = self.url(&format!("models/{model}:batchGenerateContent"));
        let request =
            self.client().post(url).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        let reply = self.exchange(request, MAX_OPERATION_BODY).await?;
        parse_operation(&reply.body)
    }

    /// `GET batches/{id}`
    pub async fn batch_get(&self, name: &str) -> Result<Operation, ApiError> {
        let url = self.url(name);
        let reply = self.exchange(self.client().get(url), MAX_OPERATION_BODY).await?;
        parse_operation(&reply.body)
    }

    /// `GET batches` (all pages), to find a job created just before a crash by its display name.
    pub async fn batch_list(&self) -> Result<Vec<Operation>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..100 {
            let mut url = self.url("batches?pageSize=100");
            if let Some(t) = &token {
                url.push_str("&pageToken=");
                url.push_str(t);
            }
            let reply = self.exchange(self.client().get(url), MAX_OPERATION_BODY).await?;
            let value: Value = serde_json::from_slice(&reply.body).map_err(|e| ApiError::Malformed(e.to_string()))?;
            for op in
                value.get("operations").or_else(|| value.get("batches")).and_then(Value::as_array).into_iter().flatten()
            {
                out.push(parse_operation(op.to_string().as_bytes())?);
            }
            token = value.get("nextPageToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// `POST batches/{id}:cancel`
    pub async fn batch_cancel(&self, name: &str) -> Result<(), ApiError> {
        let url = self.url(&format!("{name}:cancel"));
        let request =
            self.client().post(url).header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body("{}");
        self.exchange(request, 1 << 20).await.map(|_: RawReply| ())
    }

    /// Files API resumable upload; returns the file's name (`files/…`).
    pub async fn upload_file(&self, display_name: &str, mime: &str, bytes: Bytes) -> Result<String, ApiError> {
        let start = self
            .client()
            .post(self.root_url(&format!("upload/{}/files", self.endpoint().api_version)))
            .header("x-goog-upload-protocol", "resumable")
            .header("x-goog-upload-command", "start")
            .header("x-goog-upload-header-content-length", bytes.len().to_string())
            .header("x-goog-upload-header-content-type", mime)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(serde_json::json!({"file": {"display_name": display_name}}).to_string());
        let response = self
            .authorize(start)
            .send()
            .await
            .map_err(|e| ApiError::Connect(crate::redact::redact_text(&e.without_url().to_string())))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(ApiError::Status { http_status: status, status: Box::default(), retry_after: None });
        }
        let upload_url = response
            .headers()
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .map(|u| self.rebase(u))
            .ok_or_else(|| ApiError::Malformed("upload start returned no X-Goog-Upload-URL".into()))?;
        let upload = self
            .client()
            .post(upload_url)
            .header("x-goog-upload-command", "upload, finalize")
            .header("x-goog-upload-offset", "0")
            .header(CONTENT_LENGTH, bytes.len().to_string())
            .body(bytes);
        let reply = self.exchange(upload, 1 << 20).await?;
        let value: Value = serde_json::from_slice(&reply.body).map_err(|e| ApiError::Malformed(e.to_string()))?;
        value
            .pointer("/file/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Malformed("upload returned no file name".into()))
    }

    /// Downloads a file (`files/…`) to `path`, streaming, without holding it in memory.
    pub async fn download_file(&self, file_name: &str, path: &Path) -> Result<u64, ApiError> {
        let url = format!("{}?alt=media", self.url(&format!("{file_name}:download")));
        let mut response = self
            .authorize(self.client().get(url))
            .send()
            .await
            .map_err(|e| ApiError::ConnectionLost(crate::redact::redact_text(&e.without_url().to_string())))?;
        if !response.status().is_success() {
            return Err(ApiError::Status {
                http_status: response.status().as_u16(),
                status: Box::default(),
                retry_after: None,
            });
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| ApiError::ConnectionLost(format!("cannot write {}: {e}", path.display())))?;
        let mut written = 0u64;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    written += chunk.len() as u64;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| ApiError::ConnectionLost(format!("cannot write {}: {e}", path.display())))?;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(ApiError::ConnectionLost(crate::redact::redact_text(&e.without_url().to_string())));
                }
            }
        }
        file.sync_all().await.map_err(|e| ApiError::ConnectionLost(e.to_string()))?;
        Ok(written)
    }

    /// The SDK rewrites the upload URL's scheme and host to the configured base, so that
    /// proxies and emulators keep working; so do we.
    fn rebase(&self, url: &str) -> String {
        let Some(rest) = url.split_once("://").map(|(_, r)| r) else { return url.to_owned() };
        let path = rest.find('/').map_or("/", |i| &rest[i..]);
        format!("{}{}", self.endpoint().base_url.trim_end_matches('/'), path)
    }
}

#[cfg(test)]
mod tests {
    use super::{http_status_of_grpc, parse_operation, parse_result_line};

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn operations_in_every_state() {
        let pending = parse_operation(&fixture("batch.create-or-get.pending.json")).unwrap();
        assert_eq!(
            (pending.name.as_str(), pending.state.as_str(), pending.is_terminal()),
            ("batches/abc123", "BATCH_STATE_PENDING", false)
        );
        let failed = parse_operation(&fixture("batch.get.failed.json")).unwrap();
        assert!(failed.is_terminal() && !failed.succeeded());
        assert_eq!(failed.error.unwrap().code, Some(13));
        let file = parse_operation(&fixture("batch.get.succeeded-file.json")).unwrap();
        assert_eq!(file.responses_file.as_deref(), Some("files/batch-abc123"));
        let inline = parse_operation(&fixture("batch.get.succeeded-inline.json")).unwrap();
        assert_eq!(inline.inline.len(), 2);
        assert_eq!(inline.inline[0].0, "k1");
        assert!(inline.inline[0].1.is_ok());
        assert_eq!(inline.inline[1].1.as_ref().unwrap_err().code, Some(3));
    }

    #[test]
    fn result_lines_join_by_key() {
        let text = String::from_utf8(fixture("batch.output.jsonl")).unwrap();
        let lines: Vec<_> = text.lines().map(|l| parse_result_line(l.as_bytes()).unwrap()).collect();
        assert_eq!(lines[0].key, "img-0001");
        assert!(lines[0].result.is_ok());
        assert_eq!(lines[1].result.as_ref().unwrap_err().message, "Invalid request");
        assert_eq!(http_status_of_grpc(Some(3)), 400);
        assert_eq!(http_status_of_grpc(Some(14)), 503);
    }
}
