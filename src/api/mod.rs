//! The Gemini API: the [`ImageApi`] trait the executor depends on, its reqwest implementation
//! ([`http::HttpApi`]), the wire types and the typed errors.
//!
//! Only this module knows reqwest. Errors are classified here into what the executor needs to
//! decide on money: was the request ever sent, could it have been billed, did the server ask for
//! a delay.

pub mod batch;
pub mod body;
pub mod http;
pub mod response;
pub mod splitter;
pub mod status;
pub mod wire;

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use status::RpcStatus;

/// A successful HTTP exchange: status 200 and the whole body.
#[derive(Debug)]
pub struct RawReply {
    pub body: Bytes,
    pub latency: Duration,
}

/// Why a call did not produce a 200 body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status (`google.rpc.Status` body when it has one).
    #[error("HTTP {http_status}: {}", status.message)]
    Status { http_status: u16, status: Box<RpcStatus>, retry_after: Option<Duration> },
    /// The request never left: connection refused, DNS, TLS handshake. Not billed.
    #[error("could not connect: {0}")]
    Connect(String),
    /// No complete answer within the per-request timeout, after the request was sent.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request was sent, or the body ended early.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The body was larger than the configured limit; reading stopped.
    #[error("response body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// A 200 whose body is not a response we can read.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl ApiError {
    /// The outcome is unknown: the server may have generated (and billed) an image.
    pub fn possibly_billed(&self) -> bool {
        matches!(
            self,
            ApiError::Timeout(_) | ApiError::ConnectionLost(_) | ApiError::BodyTooLarge { .. } | ApiError::Malformed(_)
        )
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            ApiError::Status { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    /// The delay the server asked for: `RetryInfo.retryDelay`, else `Retry-After`.
    pub fn server_delay(&self) -> Option<Duration> {
        match self {
            ApiError::Status { status, retry_after, .. } => status.retry_delay.or(*retry_after),
            _ => None,
        }
    }

    pub fn is_daily_quota(&self) -> bool {
        matches!(self, ApiError::Status { http_status: 429, status, .. } if status.is_daily_quota())
    }
}

/// What the executor needs from the API. Implemented over HTTP by [`http::HttpApi`]; tests can
/// substitute anything.
pub trait ImageApi: Send + Sync {
    /// `POST models/{model}:generateContent` with a ready JSON body; on a 200, the body to read
    /// as it arrives.
    fn generate<'a>(&'a self, model: &'a str, body: Bytes) -> BoxFuture<'a, Result<body::ReplyBody, ApiError>>;

    /// `GET uri`: an image a response gave by URL (`fileData.fileUri`); on a 200, the body to
    /// read as it arrives.
    fn fetch<'a>(&'a self, uri: &'a str) -> BoxFuture<'a, Result<body::ReplyBody, ApiError>> {
        let _ = uri;
        Box::pin(async { Err(ApiError::Connect("this API cannot download images by URL".into())) })
    }
}

/// The Batch and Files APIs, for `--mode batch|auto`.
pub trait BatchApi: Send + Sync {
    fn create_inline<'a>(
        &'a self,
        model: &'a str,
        display_name: &'a str,
        requests: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<batch::Operation, ApiError>>;
    fn upload<'a>(&'a self, display_name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<String, ApiError>>;
    fn create_from_file<'a>(
        &'a self,
        model: &'a str,
        display_name: &'a str,
        file_name: &'a str,
    ) -> BoxFuture<'a, Result<batch::Operation, ApiError>>;
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<batch::Operation, ApiError>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<batch::Operation>, ApiError>>;
    fn cancel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ApiError>>;
    fn download<'a>(&'a self, file_name: &'a str, path: &'a std::path::Path) -> BoxFuture<'a, Result<u64, ApiError>>;
}

impl BatchApi for http::HttpApi {
    fn create_inline<'a>(
        &'a self,
        model: &'a str,
        display_name: &'a str,
        requests: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<batch::Operation, ApiError>> {
        Box::pin(self.batch_create_inline(model, display_name, requests))
    }
    fn upload<'a>(&'a self, display_name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(self.upload_file(display_name, "application/jsonl", bytes))
    }
    fn create_from_file<'a>(
        &'a self,
        model: &'a str,
        display_name: &'a str,
        file_name: &'a str,
    ) -> BoxFuture<'a, Result<batch::Operation, ApiError>> {
        Box::pin(self.batch_create_from_file(model, display_name, file_name))
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<batch::Operation, ApiError>> {
        Box::pin(self.batch_get(name))
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<batch::Operation>, ApiError>> {
        Box::pin(self.batch_list())
    }
    fn cancel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.batch_cancel(name))
    }
    fn download<'a>(&'a self, file_name: &'a str, path: &'a std::path::Path) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(self.download_file(file_name, path))
    }
}
