//! Failure classes and backoff: pure functions, tested without a network or a clock.
//!
//! Classes decide money: a request that never left or that the server refused (4xx, 5xx) was
//! not billed; one whose outcome is unknown (timeout or connection lost after sending,
//! truncated or unreadable body) may have been; a 200 without an image is its own outcome.

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
    /// 408, 500, 502, 503, 504: retry with backoff. Not billed.
    ServerError,
    /// Connection refused, DNS, TLS: the request never left. Not billed.
    Unreachable,
    /// The key was rejected (400 API_KEY_INVALID, 401, 403): every request would fail.
    Auth,
    /// Other 4xx: the request is wrong; retrying cannot help. Not billed.
    Permanent,
    /// Timeout, connection lost, truncated or unreadable body: possibly billed.
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
        ApiError::Status { http_status: 408 | 500..=599, .. } => FailureClass::ServerError,
        ApiError::Status { .. } => FailureClass::Permanent,
        ApiError::Connect(_) => FailureClass::Unreachable,
        ApiError::Timeout(_) | ApiError::ConnectionLost(_) | ApiError::Malformed(_) => FailureClass::Unknown,
        ApiError::BodyTooLarge { .. } => FailureClass::TooLarge,
    }
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

    fn status(code: u16) -> ApiError {
        ApiError::Status { http_status: code, status: Box::default(), retry_after: None }
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
