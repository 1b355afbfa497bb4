//! Failure classes and backoff: pure functions, tested without a network or a clock.
//!
//! Classes decide money, by what is known:
//! - a request that never left, or that the API itself refused (4xx; a 500 or 503 in its own
//!   `google.rpc.Status` shape, whose code is the HTTP status) was not billed;
//! - one whose outcome is unknown may have been, and counts against the budget: a timeout or a
//!   connection lost after sending, a truncated or unreadable body, and every 5xx that can come
//!   after the model ran: a gateway's 502/504/52x (an nginx or Cloudflare page that timed out
//!   while the model generated and billed the image), any 5xx with an HTML, foreign or
//!   unparseable body, and the API's own 504 `DEADLINE_EXCEEDED` (the deadline passed while the
//!   model was working; Google says failed requests are not charged, but a gateway in front may
//!   have sent it, and the safe side of a budget is to count it);
//! - a 200 without an image is its own outcome.

use std::time::Duration;

use rand::Rng;

use crate::api::ApiError;
use crate::manifest::model::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// 429: slow the model down for everyone, then retry.
    RateLimited,
    /// 429 with a per-day quota: stop dispatching until the reset.
    DailyQuota,
    /// 408, or a 5xx in the API's own error shape before the model ran (500 INTERNAL, 503
    /// UNAVAILABLE): retry with backoff. Not billed.
    ServerError,
    /// Connection refused, DNS, TLS: the request never left. Not billed.
    Unreachable,
    /// The key was rejected (400 API_KEY_INVALID, 401, 403): every request would fail.
    Auth,
    /// Other 4xx: the request is wrong; retrying cannot help. Not billed.
    Permanent,
    /// Timeout, connection lost, truncated or unreadable body, a gateway's 5xx: possibly billed.
    Unknown,
    /// A response larger than the limit (or endless): possibly billed, never retried.
    TooLarge,
}

impl FailureClass {
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::DailyQuota => "daily_quota",
            FailureClass::ServerError => "server_error",
            FailureClass::Unreachable => "unreachable",
            FailureClass::Auth => "auth",
            FailureClass::Permanent => "invalid_request",
            FailureClass::Unknown => "outcome_unknown",
            FailureClass::TooLarge => "response_too_large",
        }
    }

    pub fn possibly_billed(self) -> bool {
        matches!(self, FailureClass::Unknown | FailureClass::TooLarge)
    }

    /// Whether another attempt can succeed (given attempts left and the policy).
    pub fn retryable(self, policy: &RetryPolicy) -> bool {
        match self {
            FailureClass::RateLimited | FailureClass::ServerError | FailureClass::Unreachable => true,
            FailureClass::Unknown => policy.on_unknown_outcome,
            FailureClass::DailyQuota | FailureClass::Auth | FailureClass::Permanent | FailureClass::TooLarge => false,
        }
    }
}

pub fn classify(error: &ApiError) -> FailureClass {
    match error {
        ApiError::Status { http_status: 429, .. } if error.is_daily_quota() => FailureClass::DailyQuota,
        ApiError::Status { http_status: 429, .. } => FailureClass::RateLimited,
        ApiError::Status { http_status: 401 | 403, .. } => FailureClass::Auth,
        ApiError::Status { http_status: 400, status, .. } if status.reason.as_deref() == Some("API_KEY_INVALID") => {
            FailureClass::Auth
        }
        ApiError::Status { http_status, status, .. } if may_follow_the_model(*http_status, status) => {
            FailureClass::Unknown
        }
        ApiError::Status { http_status: 408 | 500..=599, .. } => FailureClass::ServerError,
        ApiError::Status { .. } => FailureClass::Permanent,
        ApiError::Connect(_) => FailureClass::Unreachable,
        ApiError::Timeout(_) | ApiError::ConnectionLost(_) | ApiError::Malformed(_) => FailureClass::Unknown,
        ApiError::BodyTooLarge { .. } => FailureClass::TooLarge,
    }
}

/// Whether a 5xx may have been sent after the model ran (and billed): the statuses gateways send
/// when their upstream timed out or failed (502, 504, Cloudflare's 520–527, 598/599), and any
/// 5xx whose body is not the API's own error for that status.
fn may_follow_the_model(http_status: u16, status: &crate::api::RpcStatus) -> bool {
    (500..=599).contains(&http_status)
        && (matches!(http_status, 502 | 504 | 520..=527 | 598 | 599) || !status.is_provider_error(http_status))
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial × 2^(n-1))]`, then at
/// least the server's requested delay. `attempt` is the 1-based number of the attempt that
/// failed.
pub fn backoff(policy: &RetryPolicy, attempt: u32, server_delay: Option<Duration>, rng: &mut impl Rng) -> Duration {
    let exp = policy.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max);
    let jittered = cap.mul_f64(rng.random::<f64>());
    match server_delay {
        // Honour the server exactly, plus a little jitter so that a crowd does not return at once.
        Some(d) => d.min(Duration::from_secs(3600)) + jittered.min(Duration::from_millis(250)).mul_f64(0.5),
        None => jittered,
    }
}

/// Extra attempts allowed for rate-limit (429) answers, which are expected under load and do
/// not count against `retry.attempts`.
pub const RATE_LIMIT_ATTEMPTS: u32 = 30;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::{FailureClass, backoff, classify};
    use crate::api::ApiError;
    use crate::api::status::{QuotaViolation, RpcStatus};
    use crate::manifest::model::RetryPolicy;

    /// An error in the API's own shape.
    fn status(code: u16) -> ApiError {
        let status = RpcStatus { code: Some(i64::from(code)), status: Some("X".into()), ..RpcStatus::default() };
        ApiError::Status { http_status: code, status: Box::new(status), retry_after: None }
    }

    /// An error whose body is something else (a gateway's page).
    fn foreign(code: u16) -> ApiError {
        let status = RpcStatus { code: Some(i64::from(code)), message: "<html>".into(), ..RpcStatus::default() };
        ApiError::Status { http_status: code, status: Box::new(status), retry_after: None }
    }

    #[test]
    fn a_5xx_that_may_follow_the_model_is_possibly_billed() {
        // The API's own errors before the model ran: not billed.
        assert_eq!(classify(&status(500)), FailureClass::ServerError);
        assert_eq!(classify(&status(503)), FailureClass::ServerError);
        assert_eq!(classify(&status(408)), FailureClass::ServerError);
        assert_eq!(classify(&foreign(408)), FailureClass::ServerError, "408: the request never got through");
        // Gateway statuses, whatever their body, and any 5xx page: the model may have run.
        for code in [502, 504, 520, 524, 527, 598, 599] {
            assert_eq!(classify(&status(code)), FailureClass::Unknown, "{code}");
            assert_eq!(classify(&foreign(code)), FailureClass::Unknown, "{code}");
        }
        assert_eq!(classify(&foreign(500)), FailureClass::Unknown);
        assert_eq!(classify(&foreign(503)), FailureClass::Unknown);
        // A Status whose code is not the HTTP status was written by someone else.
        let mismatched = ApiError::Status {
            http_status: 503,
            status: Box::new(RpcStatus { code: Some(500), status: Some("INTERNAL".into()), ..RpcStatus::default() }),
            retry_after: None,
        };
        assert_eq!(classify(&mismatched), FailureClass::Unknown);
        assert!(FailureClass::Unknown.possibly_billed());
        // 4xx pages stay permanent (a 413 from nginx never reached the model).
        assert_eq!(classify(&foreign(413)), FailureClass::Permanent);
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&status(429)), FailureClass::RateLimited);
        assert_eq!(classify(&status(503)), FailureClass::ServerError);
        assert_eq!(classify(&status(500)), FailureClass::ServerError);
        assert_eq!(classify(&status(404)), FailureClass::Permanent);
        assert_eq!(classify(&status(403)), FailureClass::Auth);
        let key = ApiError::Status {
            http_status: 400,
            status: Box::new(RpcStatus { reason: Some("API_KEY_INVALID".into()), ..RpcStatus::default() }),
            retry_after: None,
        };
        assert_eq!(classify(&key), FailureClass::Auth);
        let daily = ApiError::Status {
            http_status: 429,
            status: Box::new(RpcStatus {
                quota: vec![QuotaViolation {
                    quota_id: Some("GenerateRequestsPerDayPerProjectPerModel".into()),
                    ..Default::default()
                }],
                ..RpcStatus::default()
            }),
            retry_after: None,
        };
        assert_eq!(classify(&daily), FailureClass::DailyQuota);
        assert_eq!(classify(&ApiError::Connect("refused".into())), FailureClass::Unreachable);
        assert_eq!(classify(&ApiError::Timeout(Duration::from_secs(1))), FailureClass::Unknown);
        assert!(FailureClass::Unknown.possibly_billed());
        assert!(!FailureClass::ServerError.possibly_billed());
    }

    #[test]
    fn backoff_is_capped_jittered_and_honours_the_server() {
        let policy =
            RetryPolicy { initial: Duration::from_secs(2), max: Duration::from_secs(10), ..RetryPolicy::default() };
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 1..10 {
            let d = backoff(&policy, attempt, None, &mut rng);
            let cap = Duration::from_secs(2 * (1 << (attempt - 1))).min(Duration::from_secs(10));
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
        let d = backoff(&policy, 1, Some(Duration::from_secs(26)), &mut rng);
        assert!(d >= Duration::from_secs(26) && d <= Duration::from_millis(26_125));
    }
}
