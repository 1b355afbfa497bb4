//! Fault injection for the emulator: random rates (seeded, so a run is reproducible), a latency
//! distribution, and per-prompt directives (`[[mock:fail=503x2]]`) that let a test aim a fault
//! at one task.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long the emulator takes to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    Zero,
    Fixed(Duration),
    /// Uniform between two bounds.
    Uniform(Duration, Duration),
    /// Log-normal with the given median and σ of the underlying normal.
    LogNormal {
        median: Duration,
        sigma: f64,
    },
}

impl Latency {
    /// `0`, `200ms`, `100ms..2s`, `lognormal:2s:0.5`.
    pub fn parse(text: &str) -> Result<Latency, String> {
        let text = text.trim();
        if text == "0" || text.is_empty() {
            return Ok(Latency::Zero);
        }
        let dur = |t: &str| humantime::parse_duration(t.trim()).map_err(|e| format!("`{t}`: {e}"));
        if let Some(rest) = text.strip_prefix("lognormal:") {
            let (median, sigma) = rest.split_once(':').ok_or("lognormal:MEDIAN:SIGMA, e.g. lognormal:2s:0.5")?;
            let sigma: f64 = sigma.trim().parse().map_err(|_| format!("sigma `{sigma}` is not a number"))?;
            return Ok(Latency::LogNormal { median: dur(median)?, sigma });
        }
        if let Some((a, b)) = text.split_once("..") {
            return Ok(Latency::Uniform(dur(a)?, dur(b)?));
        }
        Ok(Latency::Fixed(dur(text)?))
    }

    pub fn sample(&self, rng: &mut StdRng) -> Duration {
        match self {
            Latency::Zero => Duration::ZERO,
            Latency::Fixed(d) => *d,
            Latency::Uniform(a, b) if b > a => *a + (*b - *a).mul_f64(rng.random::<f64>()),
            Latency::Uniform(a, _) => *a,
            Latency::LogNormal { median, sigma } => {
                // Box–Muller for a standard normal.
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                median.mul_f64((sigma * z).exp().min(1e4))
            }
        }
    }

    /// The mean, for benchmark expectations.
    pub fn mean(&self) -> Duration {
        match self {
            Latency::Zero => Duration::ZERO,
            Latency::Fixed(d) => *d,
            Latency::Uniform(a, b) => (*a + *b) / 2,
            Latency::LogNormal { median, sigma } => median.mul_f64((sigma * sigma / 2.0).exp()),
        }
    }
}

/// Random fault rates, each a probability per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRates {
    pub error_500: f64,
    pub error_503: f64,
    pub error_429: f64,
    /// Close the connection after the headers (the request was processed: possibly billed).
    pub drop: f64,
    /// Send half the body, then close.
    pub truncate: f64,
    pub image_safety: f64,
    pub text_only: f64,
    /// A gateway's HTML 504 after the model generated (and billed) the image.
    pub gateway_timeout: f64,
    /// A well-formed 200 whose image is cut in half (billed).
    pub broken_image: f64,
}

/// What a directive in the prompt asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives {
    /// `fail=503x2`: answer this status to the first N requests of this fingerprint.
    pub fail: Option<(u16, u32)>,
    /// `retry=3s`: the delay advertised with a directed 429/503.
    pub retry: Option<Duration>,
    pub daily_quota: bool,
    /// `safety`, `safety=1`: IMAGE_SAFETY (every time, or the first N times).
    pub safety: Option<u32>,
    pub text_only: Option<u32>,
    pub no_image: bool,
    pub blocked: bool,
    pub drop: Option<u32>,
    pub truncate: Option<u32>,
    pub delay: Option<Duration>,
    pub wrong_size: bool,
    pub jpeg: bool,
    /// Declare `image/png` over JPEG bytes (as 3-pro once did).
    pub mislabel: bool,
    /// Stream a body that never ends.
    pub endless: bool,
    /// Answer with grounding sources.
    pub grounding: bool,
    /// Grounding sources with hostile links and titles (`javascript:`, markup).
    pub evil_grounding: bool,
    /// Declare a 500 MB body.
    pub huge: bool,
    /// `thinking=N`: report (and bill) N thinking tokens per answer, whatever the level.
    pub thinking: Option<u64>,
    /// Gateways, escapes, broken images and the rest of [`super::hostile`].
    pub hostile: super::hostile::Hostile,
}

const EVERY_TIME: u32 = u32::MAX;

impl Directives {
    /// Reads every `[[mock:a,b=c]]` in `text`.
    pub fn parse(text: &str) -> Directives {
        let mut d = Directives::default();
        let mut rest = text;
        while let Some(start) = rest.find("[[mock:") {
            let after = &rest[start + 7..];
            let Some(end) = after.find("]]") else { break };
            for item in after[..end].split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
                d.apply(item);
            }
            rest = &after[end + 2..];
        }
        d
    }

    fn apply(&mut self, item: &str) {
        let (name, value) = item.split_once('=').map_or((item, None), |(n, v)| (n, Some(v)));
        let count = || value.and_then(|v| v.parse::<u32>().ok()).unwrap_or(EVERY_TIME);
        match name {
            "fail" => {
                if let Some(v) = value {
                    let (status, n) = v.split_once('x').unwrap_or((v, "1"));
                    if let (Ok(s), Ok(n)) = (status.parse(), n.parse()) {
                        self.fail = Some((s, n));
                    }
                }
            }
            "retry" => self.retry = value.and_then(|v| humantime::parse_duration(v).ok()),
            "daily-quota" => self.daily_quota = true,
            "safety" => self.safety = Some(count()),
            "text-only" => self.text_only = Some(count()),
            "no-image" => self.no_image = true,
            "blocked" => self.blocked = true,
            "drop" => self.drop = Some(value.and_then(|v| v.parse().ok()).unwrap_or(1)),
            "truncate" => self.truncate = Some(value.and_then(|v| v.parse().ok()).unwrap_or(1)),
            "delay" => self.delay = value.and_then(|v| humantime::parse_duration(v).ok()),
            "wrong-size" => self.wrong_size = true,
            "jpeg" => self.jpeg = true,
            "mislabel" => {
                self.jpeg = true;
                self.mislabel = true;
            }
            "endless" => self.endless = true,
            "grounding" => self.grounding = true,
            "evil-grounding" => self.evil_grounding = true,
            "huge" => self.huge = true,
            "thinking" => self.thinking = value.and_then(|v| v.parse().ok()),
            _ => {
                self.hostile.apply(name, value);
            }
        }
    }
}

/// A deterministic random source for one request: the same seed, request and attempt number
/// always draw the same faults, whatever the order requests arrive in.
pub fn request_rng(seed: u64, fingerprint: &[u8; 32], nth: u32) -> StdRng {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(fingerprint);
    for (i, b) in seed.to_le_bytes().iter().chain(nth.to_le_bytes().iter()).enumerate() {
        bytes[i] ^= *b;
    }
    StdRng::from_seed(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Directives, Latency};

    #[test]
    fn directives_parse() {
        let d = Directives::parse("a red mug [[mock:fail=503x2, retry=3s]] and [[mock:safety=1]]");
        assert_eq!(d.fail, Some((503, 2)));
        assert_eq!(d.retry, Some(Duration::from_secs(3)));
        assert_eq!(d.safety, Some(1));
        assert!(Directives::parse("plain").fail.is_none());
    }

    #[test]
    fn latency_parses() {
        assert_eq!(Latency::parse("0").unwrap(), Latency::Zero);
        assert_eq!(Latency::parse("200ms").unwrap(), Latency::Fixed(Duration::from_millis(200)));
        assert!(matches!(Latency::parse("lognormal:2s:0.5").unwrap(), Latency::LogNormal { .. }));
        assert!(matches!(Latency::parse("1s..2s").unwrap(), Latency::Uniform(..)));
        assert!(Latency::parse("soon").is_err());
    }
}
