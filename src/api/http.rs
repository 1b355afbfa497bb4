//! The reqwest implementation of [`ImageApi`]: URL and auth, per-request timeout, a bounded body
//! read, and the mapping of transport failures to what they mean for billing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};

use super::body::ReplyBody;
use super::status::{RpcStatus, describe_foreign_body, parse_error_body, parse_retry_after};
use super::{ApiError, ImageApi, RawReply};
use crate::redact::{Secret, redact_text, redact_url};

/// How the key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// `x-goog-api-key: KEY` (what the SDKs send).
    #[default]
    Header,
    /// `?key=KEY` (what some proxies need).
    Query,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://generativelanguage.googleapis.com`, a proxy, or the emulator.
    pub base_url: String,
    /// `v1beta`: the image docs and proxies use it; new SDKs default to `v1`.
    pub api_version: String,
    pub auth: AuthMode,
    pub key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Per attempt, including reading the body. Image generation takes 10–120 s; 4K with
    /// thinking longer; the server gives up at 10 minutes.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest response body accepted (a 4K image is ~40 MB of base64).
    pub max_body: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { timeout: Duration::from_secs(600), connect_timeout: Duration::from_secs(15), max_body: 128 << 20 }
    }
}

/// The shortest per-request timeout accepted. No image request is answered faster, and each
/// timeout comes after the request was sent, so it may be billed: `--timeout 1ms` would pay for
/// every request and keep none.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a per-request timeout is refused, if it is.
pub fn check_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout < MIN_TIMEOUT {
        return Err(format!(
            "{} is below the minimum of {}: every request would time out after it was sent, and each may be billed (image generation takes 10 s to 2 min; the default is {})",
            humantime::format_duration(timeout),
            humantime::format_duration(MIN_TIMEOUT),
            humantime::format_duration(HttpOptions::default().timeout),
        ));
    }
    Ok(timeout)
}

/// Largest error body we read: errors are small; a proxy's HTML page is cut.
const MAX_ERROR_BODY: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct HttpApi {
    client: Client,
    /// For images given by URL on other hosts: never carries the key, follows a few redirects.
    downloads: Client,
    endpoint: Endpoint,
    options: HttpOptions,
}

impl HttpApi {
    pub fn new(endpoint: Endpoint, options: HttpOptions) -> Result<HttpApi, ApiError> {
        let client = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            // A redirect would carry `?key=` to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nanobatch/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ApiError::Connect(describe(&e)))?;
        let downloads = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("nanobatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Connect(describe(&e)))?;
        Ok(HttpApi { client, downloads, endpoint, options })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn url(&self, path: &str) -> String {
        let base = self.endpoint.base_url.trim_end_matches('/');
        format!("{base}/{}/{}", self.endpoint.api_version, path.trim_start_matches('/'))
    }

    pub(crate) fn root_url(&self, path: &str) -> String {
        let base = self.endpoint.base_url.trim_end_matches('/');
        format!("{base}/{}", path.trim_start_matches('/'))
    }

    /// Adds the key the configured way.
    pub(crate) fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match (&self.endpoint.key, self.endpoint.auth) {
            (None, _) => request,
            (Some(key), AuthMode::Header) => request.header("x-goog-api-key", key.expose()),
            (Some(key), AuthMode::Query) => request.query(&[("key", key.expose())]),
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a request and reads a 200 body, or maps the failure.
    pub(crate) async fn exchange(&self, request: RequestBuilder, max_body: u64) -> Result<RawReply, ApiError> {
        let started = Instant::now();
        let response = self.authorize(request).send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.status_error(response).await);
        }
        let body = read_limited(response, max_body, self.options.timeout).await?;
        Ok(RawReply { body, latency: started.elapsed() })
    }

    /// Sends a request; on a 200, the body to be read as it arrives.
    pub(crate) async fn exchange_streaming(
        &self,
        request: RequestBuilder,
        max_body: u64,
    ) -> Result<ReplyBody, ApiError> {
        let response = self.authorize(request).send().await.map_err(|e| self.transport_error(&e))?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(response).await);
        }
        ReplyBody::http(response, max_body, self.options.timeout)
    }

    async fn status_error(&self, response: reqwest::Response) -> ApiError {
        let http_status = response.status().as_u16();
        let header = |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
        let retry_after = header(RETRY_AFTER).as_deref().and_then(parse_retry_after);
        let content_type = header(CONTENT_TYPE);
        let location = header(LOCATION);
        let body = read_limited(response, MAX_ERROR_BODY, self.options.timeout).await.unwrap_or_default();
        let status = parse_error_body(&body).unwrap_or_else(|| RpcStatus {
            code: Some(i64::from(http_status)),
            message: foreign_message(http_status, content_type.as_deref(), location.as_deref(), &body),
            ..RpcStatus::default()
        });
        ApiError::Status {
            http_status,
            status: Box::new(RpcStatus { message: redact_text(&status.message), ..status }),
            retry_after,
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> ApiError {
        classify_transport(error, self.options.timeout)
    }
}

/// The message of an error answer that is not the API's own: where a redirect points (never
/// followed: it would carry the key elsewhere), or what a gateway's page says.
fn foreign_message(http_status: u16, content_type: Option<&str>, location: Option<&str>, body: &[u8]) -> String {
    if (300..400).contains(&http_status) {
        let target = location.map_or_else(|| "an address it did not give".to_owned(), redact_url);
        return format!(
            "redirected to {target} (nanobatch does not follow redirects: the key would go along; if that address is the right one, make it the base URL)"
        );
    }
    format!("{} (not the API's own error: a gateway or proxy answered)", describe_foreign_body(content_type, body))
}

fn classify_transport(error: &reqwest::Error, timeout: Duration) -> ApiError {
    let text = describe(error);
    if error.is_connect() {
        ApiError::Connect(text)
    } else if error.is_timeout() {
        ApiError::Timeout(timeout)
    } else if error.is_builder() {
        ApiError::Connect(text)
    } else {
        ApiError::ConnectionLost(text)
    }
}

/// The error and its causes on one line, without the URL (which may carry `?key=`).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut current: Option<&dyn std::error::Error> = Some(error);
    let mut first = true;
    while let Some(e) = current {
        let piece = if first {
            // `without_url` needs ownership; render and strip the URL part instead.
            strip_url(&e.to_string(), error.url().map(reqwest::Url::as_str))
        } else {
            e.to_string()
        };
        if !piece.is_empty() && !text.contains(&piece) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&piece);
        }
        first = false;
        current = e.source();
    }
    redact_text(&text)
}

fn strip_url(message: &str, url: Option<&str>) -> String {
    match url {
        Some(url) => message.replace(&format!(" for url ({url})"), "").replace(url, "<url>"),
        None => message.to_owned(),
    }
}

/// Reads a body into one buffer, refusing more than `limit` bytes and giving up at `timeout`.
async fn read_limited(response: reqwest::Response, limit: u64, timeout: Duration) -> Result<Bytes, ApiError> {
    ReplyBody::http(response, limit, timeout)?.collect().await
}

impl ImageApi for HttpApi {
    fn fetch<'a>(&'a self, uri: &'a str) -> BoxFuture<'a, Result<ReplyBody, ApiError>> {
        Box::pin(async move {
            // The key goes only to the API's own address (its Files API); anywhere else the
            // download is anonymous, and may follow a few redirects (a signed storage URL).
            let own = reqwest::Url::parse(uri)
                .ok()
                .zip(reqwest::Url::parse(&self.endpoint.base_url).ok())
                .is_some_and(|(target, base)| target.origin() == base.origin());
            let request = if own { self.authorize(self.client.get(uri)) } else { self.downloads.get(uri) };
            let response = request
                .header(ACCEPT_ENCODING, HeaderValue::from_static("identity"))
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            if response.status() != StatusCode::OK {
                return Err(self.status_error(response).await);
            }
            ReplyBody::http(response, self.options.max_body, self.options.timeout)
        })
    }

    fn generate<'a>(&'a self, model: &'a str, body: Bytes) -> BoxFuture<'a, Result<ReplyBody, ApiError>> {
        Box::pin(async move {
            let url = self.url(&format!("models/{model}:generateContent"));
            let request = self
                .client
                .post(url)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                // Not asked for: an image's base64 shrinks by a quarter at most, and inflating it
                // would cost more CPU than the rest of receiving it. A gateway that compresses
                // anyway is decoded (gzip, br).
                .header(ACCEPT_ENCODING, HeaderValue::from_static("identity"))
                .header("x-server-timeout", self.options.timeout.as_secs().max(1).to_string())
                .body(body);
            self.exchange_streaming(request, self.options.max_body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::strip_url;

    #[test]
    fn url_is_removed_from_messages() {
        let m = "error sending request for url (http://h/x?key=SECRET)";
        assert_eq!(strip_url(m, Some("http://h/x?key=SECRET")), "error sending request");
    }
}
