//! A 200 body as it arrives: chunk by chunk, never more than the size limit, and exactly the
//! declared length (a body cut short is a lost connection, not a smaller image).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_LENGTH;

use super::ApiError;

#[derive(Debug)]
pub struct ReplyBody {
    source: Source,
    limit: u64,
    received: u64,
    declared: Option<u64>,
    timeout: Duration,
}

#[derive(Debug)]
enum Source {
    Http(reqwest::Response),
    Memory(Option<Bytes>),
}

impl ReplyBody {
    /// A body already in memory (tests, other transports).
    pub fn from_bytes(bytes: Bytes) -> ReplyBody {
        let len = bytes.len() as u64;
        ReplyBody {
            source: Source::Memory(Some(bytes)),
            limit: u64::MAX,
            received: 0,
            declared: Some(len),
            timeout: Duration::ZERO,
        }
    }

    pub(crate) fn http(response: reqwest::Response, limit: u64, timeout: Duration) -> Result<ReplyBody, ApiError> {
        let declared =
            response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ApiError::BodyTooLarge { limit });
        }
        Ok(ReplyBody { source: Source::Http(response), limit, received: 0, declared, timeout })
    }

    /// The length the server announced, if it did.
    pub fn declared_len(&self) -> Option<u64> {
        self.declared
    }

    /// The next piece of the body; `None` at its (complete) end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        let next = match &mut self.source {
            Source::Memory(bytes) => bytes.take(),
            Source::Http(response) => match response.chunk().await {
                Ok(chunk) => chunk,
                Err(e) if e.is_timeout() => return Err(ApiError::Timeout(self.timeout)),
                Err(e) => return Err(ApiError::ConnectionLost(super::http::describe(&e))),
            },
        };
        match next {
            Some(chunk) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    return Err(ApiError::BodyTooLarge { limit: self.limit });
                }
                Ok(Some(chunk))
            }
            None => match self.declared {
                Some(n) if n != self.received => {
                    Err(ApiError::ConnectionLost(format!("body ended after {} of {n} bytes", self.received)))
                }
                _ => Ok(None),
            },
        }
    }

    /// The whole body in one buffer (small bodies; batch results; conversation turns).
    pub async fn collect(mut self) -> Result<Bytes, ApiError> {
        let capacity = self.declared.unwrap_or(64 << 10).min(self.limit) as usize;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if buf.is_empty() && self.declared == Some(chunk.len() as u64) {
                // The whole body in one frame: keep it as it is.
                return match self.chunk().await? {
                    None => Ok(chunk),
                    Some(_) => Err(ApiError::BodyTooLarge { limit: self.limit }),
                };
            }
            if buf.is_empty() {
                buf.reserve(capacity);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }
}
