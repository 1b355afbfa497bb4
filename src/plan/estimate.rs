//! Token and cost estimates, before anything is sent.
//!
//! Output image tokens come exactly from the catalogue's resolution tables. Input tokens follow
//! the catalogue's stated rules: text is `ceil(UTF-8 bytes / 4)` per text part, every input
//! image costs the model's `input_image_tokens`. Thinking tokens are the catalogue's typical
//! figure for the thinking level; caption tokens are added when TEXT is a response modality.
//! These assumptions are printed by `plan` and compared with the API's usage in the report.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{ModelSpec, Tier, TokenCounts, Usd};

/// Tokens of one text part.
pub fn text_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// What a request carries, for estimation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestShape {
    /// Tokens of every text part sent (prompts, system instruction, replayed model text).
    pub input_text: u64,
    /// Every input image: references, images from upstream jobs, images in the history.
    pub input_images: u64,
    /// Output tokens of the requested image size.
    pub output_image: u64,
    pub wants_text: bool,
}

pub fn estimate(spec: &ModelSpec, shape: RequestShape, thinking_level: Option<&str>) -> TokenCounts {
    TokenCounts {
        input_text: shape.input_text,
        input_image: shape.input_images * u64::from(spec.input_image_tokens),
        output_image: shape.output_image,
        output_text: if shape.wants_text { u64::from(spec.estimates.text_output_tokens) } else { 0 },
        thinking: u64::from(spec.thinking_estimate(thinking_level)),
    }
}

/// The most a request whose estimate is `estimate` can be billed: what the budget reserves
/// before sending it.
///
/// - input text: four times the estimate (the estimate is a quarter of the bytes, and a token
///   covers at least one byte);
/// - input images and the output image: as estimated (both are counted from the catalogue's
///   tables, not guessed);
/// - text and thinking output: `output_cap` tokens, the model's output limit (or a lower
///   `max_output_tokens` the request sends), priced at the text-output rate like both.
pub fn worst_case(estimate: &TokenCounts, output_cap: u64) -> TokenCounts {
    TokenCounts {
        input_text: estimate.input_text.saturating_mul(4),
        input_image: estimate.input_image,
        output_image: estimate.output_image,
        output_text: 0,
        thinking: output_cap.max(estimate.output_text + estimate.thinking),
    }
}

/// One line of the plan's cost table.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostLine {
    pub job: String,
    pub model: String,
    pub size: String,
    pub tasks: u64,
    /// Tasks already done (not to be sent again).
    pub done: u64,
    pub tokens: TokenCounts,
    pub interactive_usd: Usd,
    pub batch_usd: Usd,
    /// Cost of what is still to run.
    pub remaining_interactive_usd: Usd,
    pub remaining_batch_usd: Usd,
}

/// Cost of a plan, by job × model × size, with totals.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostSummary {
    pub lines: Vec<CostLine>,
    pub tasks: u64,
    pub done: u64,
    pub tokens: TokenCounts,
    pub interactive_usd: Usd,
    pub batch_usd: Usd,
    pub remaining_interactive_usd: Usd,
    pub remaining_batch_usd: Usd,
    /// If every attempt allowed by the retry policy were billed (only outcome-unknown failures
    /// can be; 4xx/5xx are not billed).
    pub worst_case_usd: Usd,
    pub attempts_per_task: u32,
}

#[derive(Default)]
pub struct CostBuilder {
    lines: BTreeMap<(usize, String, String), CostLine>,
}

impl CostBuilder {
    pub fn add(&mut self, job_index: usize, job: &str, spec: &ModelSpec, size: &str, tokens: &TokenCounts, done: bool) {
        let line = self.lines.entry((job_index, spec.id.clone(), size.to_owned())).or_insert_with(|| CostLine {
            job: job.to_owned(),
            model: spec.id.clone(),
            size: size.to_owned(),
            ..CostLine::default()
        });
        let interactive = spec.cost(tokens, Tier::Interactive);
        let batch = spec.cost(tokens, Tier::Batch);
        line.tasks += 1;
        line.tokens.add(tokens);
        line.interactive_usd += interactive;
        line.batch_usd += batch;
        if done {
            line.done += 1;
        } else {
            line.remaining_interactive_usd += interactive;
            line.remaining_batch_usd += batch;
        }
    }

    pub fn finish(self, attempts_per_task: u32) -> CostSummary {
        let mut summary = CostSummary { attempts_per_task, ..CostSummary::default() };
        for line in self.lines.into_values() {
            summary.tasks += line.tasks;
            summary.done += line.done;
            summary.tokens.add(&line.tokens);
            summary.interactive_usd += line.interactive_usd;
            summary.batch_usd += line.batch_usd;
            summary.remaining_interactive_usd += line.remaining_interactive_usd;
            summary.remaining_batch_usd += line.remaining_batch_usd;
            summary.lines.push(line);
        }
        summary.worst_case_usd =
            Usd::from_pico(summary.remaining_interactive_usd.pico().saturating_mul(i64::from(attempts_per_task)));
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::{RequestShape, estimate, text_tokens, worst_case};
    use crate::catalog::Catalog;

    #[test]
    fn text_is_a_quarter_of_its_bytes_rounded_up() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
    }

    #[test]
    fn estimates_use_the_catalogue() {
        let spec = Catalog::embedded().model("gemini-3.1-flash-image-preview").unwrap();
        let shape = RequestShape { input_text: 10, input_images: 2, output_image: 1680, wants_text: false };
        let t = estimate(spec, shape, Some("high"));
        assert_eq!((t.input_text, t.input_image, t.output_image, t.output_text, t.thinking), (10, 2240, 1680, 0, 900));
    }

    #[test]
    fn the_worst_case_bounds_every_part_of_the_estimate() {
        let spec = Catalog::embedded().model("gemini-3.1-flash-image-preview").unwrap();
        let shape = RequestShape { input_text: 10, input_images: 1, output_image: 747, wants_text: true };
        let t = estimate(spec, shape, None);
        let w = worst_case(&t, u64::from(spec.max_output_tokens));
        assert_eq!(
            (w.input_text, w.input_image, w.output_image, w.output_text, w.thinking),
            (40, 1120, 747, 0, 32_768)
        );
        // 40 × $0.50/M + 1120 × $0.50/M + 747 × $60/M + 32,768 × $3/M
        assert_eq!(
            spec.cost(&w, crate::catalog::Tier::Interactive).pico(),
            20_000_000 + 560_000_000 + 44_820_000_000 + 98_304_000_000
        );
        assert!(spec.cost(&w, crate::catalog::Tier::Interactive) > spec.cost(&t, crate::catalog::Tier::Interactive));
    }
}
