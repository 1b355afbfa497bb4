//! The model catalogue: accepted ratios and sizes, pixel tables, tokens per image, reference
//! limits, thinking and grounding support, and prices, for every Gemini image model we know.
//!
//! The data lives in `models.yaml` (embedded at compile time) so that a price change is a data
//! change; a manifest's `models:` section can add rows or override fields (see
//! [`Catalog::apply_override`]). Money is kept in integer picodollars ([`Usd`]) so that a plan's
//! estimate is an exact sum, not a floating-point approximation.

mod money;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use money::Usd;

const EMBEDDED: &str = include_str!("models.yaml");

/// The whole table, as shipped or as overridden by a manifest.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub catalog_version: String,
    pub prices_date: String,
    pub prices_source: String,
    pub models: Vec<ModelSpec>,
}

/// One model's row.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub id: String,
    #[serde(default)]
    pub nickname: Option<String>,
    pub aspect_ratios: Vec<String>,
    pub default_size: String,
    pub sizes: Vec<SizeSpec>,
    pub references: ReferenceLimits,
    pub input_image_tokens: u32,
    pub thinking: ThinkingSupport,
    pub grounding: GroundingSupport,
    pub prices: Prices,
    pub batch_discount: f64,
    pub estimates: Estimates,
    /// The most text and thinking tokens one answer can carry (the model's output token
    /// limit): what the budget reserves for them before a request is sent.
    pub max_output_tokens: u32,
}

/// One output size of a model: its manifest name, what is sent on the wire, its output tokens
/// per image and its pixel dimensions per aspect ratio.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizeSpec {
    pub name: String,
    /// `None`: the model takes no `imageSize` and the field is not sent.
    pub wire: Option<String>,
    pub output_tokens: u32,
    pub pixels: BTreeMap<String, [u32; 2]>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReferenceLimits {
    pub max_total: u32,
    #[serde(default)]
    pub max_objects: Option<u32>,
    #[serde(default)]
    pub max_people: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThinkingSupport {
    /// Levels the model accepts in `thinkingConfig.thinkingLevel` (lowercase); empty when the
    /// level cannot be set.
    pub levels: Vec<String>,
    pub default_level: Option<String>,
    /// The model thinks whether asked or not (and bills for it).
    pub always_on: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroundingSupport {
    pub web: bool,
    pub image: bool,
}

/// USD per 1M tokens, interactive (standard) tier.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub output_text: f64,
    pub output_image: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Estimates {
    /// Thinking tokens per request by level (`default` when no level is set).
    pub thinking_tokens: BTreeMap<String, u32>,
    /// Caption tokens when TEXT is among the response modalities.
    pub text_output_tokens: u32,
    /// Tokens of the thought summary returned with `include_thoughts` (billed as thinking;
    /// replayed as input text in the next turn of a conversation).
    #[serde(default)]
    pub thought_summary_tokens: u32,
}

/// Token counts of one request, split the way they are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    pub input_text: u64,
    pub input_image: u64,
    pub output_image: u64,
    pub output_text: u64,
    pub thinking: u64,
}

/// No request takes or gives more tokens than this (2,097,152: the largest context window any
/// Gemini model has had). Usage reported beyond it is a broken or hostile server, not a bill.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 1 << 21;

impl TokenCounts {
    /// Whether these counts could come from a real request: their sum is within
    /// [`MAX_PLAUSIBLE_TOKENS`].
    pub fn is_plausible(&self) -> bool {
        [self.input_text, self.input_image, self.output_image, self.output_text, self.thinking]
            .iter()
            .try_fold(0u64, |sum, n| sum.checked_add(*n))
            .is_some_and(|sum| sum <= MAX_PLAUSIBLE_TOKENS)
    }

    pub fn add(&mut self, other: &TokenCounts) {
        self.input_text += other.input_text;
        self.input_image += other.input_image;
        self.output_image += other.output_image;
        self.output_text += other.output_text;
        self.thinking += other.thinking;
    }

    pub fn total(&self) -> u64 {
        self.input_text + self.input_image + self.output_image + self.output_text + self.thinking
    }

    pub fn input(&self) -> u64 {
        self.input_text + self.input_image
    }
}

/// Which price list applies to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Interactive,
    Batch,
}

impl Catalog {
    /// The catalogue shipped inside the binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            serde_saphyr::from_str(EMBEDDED)
                .unwrap_or_else(|e| panic!("embedded catalogue models.yaml is invalid: {e}"))
        })
    }

    pub fn model(&self, id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn model_ids(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.id.as_str()).collect()
    }

    /// Adds a new model row or replaces the row with the same id.
    pub fn upsert(&mut self, spec: ModelSpec) {
        match self.models.iter_mut().find(|m| m.id == spec.id) {
            Some(existing) => *existing = spec,
            None => self.models.push(spec),
        }
    }
}

impl ModelSpec {
    pub fn size(&self, name: &str) -> Option<&SizeSpec> {
        self.sizes.iter().find(|s| s.name == name)
    }

    pub fn size_names(&self) -> Vec<&str> {
        self.sizes.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn accepts_ratio(&self, ratio: &str) -> bool {
        self.aspect_ratios.iter().any(|r| r == ratio)
    }

    /// Pixel dimensions the model returns for `ratio` at `size`.
    pub fn pixels(&self, ratio: &str, size: &str) -> Option<(u32, u32)> {
        let [w, h] = *self.size(size)?.pixels.get(ratio)?;
        Some((w, h))
    }

    /// Expected thinking tokens for a request at `level` (or the model's default).
    pub fn thinking_estimate(&self, level: Option<&str>) -> u32 {
        let by_level = level.and_then(|l| self.estimates.thinking_tokens.get(l));
        by_level.or_else(|| self.estimates.thinking_tokens.get("default")).copied().unwrap_or(0)
    }

    pub fn is_gemini3(&self) -> bool {
        self.thinking.always_on || !self.thinking.levels.is_empty()
    }

    /// Price of `tokens` at `tier`, split the way the provider bills them: image output at the
    /// image rate, text and thinking output at the text rate, all input at the input rate.
    pub fn cost(&self, tokens: &TokenCounts, tier: Tier) -> Usd {
        let factor = match tier {
            Tier::Interactive => 1.0,
            Tier::Batch => self.batch_discount,
        };
        let input = Usd::per_million(self.prices.input * factor);
        let text = Usd::per_million(self.prices.output_text * factor);
        let image = Usd::per_million(self.prices.output_image * factor);
        input.times(tokens.input())
            + text.times(tokens.output_text + tokens.thinking)
            + image.times(tokens.output_image)
    }
}

/// The greatest common divisor, for reducing `W:H` ratios in checks.
pub fn ratio_of(ratio: &str) -> Option<(u32, u32)> {
    let (w, h) = ratio.split_once(':')?;
    let w: u32 = w.trim().parse().ok()?;
    let h: u32 = h.trim().parse().ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests;
