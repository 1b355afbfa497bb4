//! Reading a `generateContent` response: which part is the image, why there is none, what was
//! used. A 200 is not a success: a text refusal on STOP, `NO_IMAGE`, `IMAGE_SAFETY` or a blocked
//! prompt all arrive with HTTP 200 (gemini-api.md §3.1, §11.3).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::value::RawValue;

use std::borrow::Cow;

use super::wire::{FileData, GenerateContentResponse, RawFirstContent, ResponsePart, UsageMetadata};
use crate::catalog::TokenCounts;

/// A parsed response, borrowing the image's base64 from the body.
#[derive(Debug)]
pub struct Reply<'a> {
    pub finish_reason: Option<String>,
    pub finish_message: Option<String>,
    pub block_reason: Option<String>,
    /// The final image: the last non-thought image part, else the last image of any kind
    /// (one project saw the only image arrive marked as a thought).
    pub image: Option<ImagePart<'a>>,
    /// Interim "thought images" (not billed, not saved).
    pub thought_images: usize,
    /// The model's visible text, joined.
    pub text: String,
    /// The model's thought summaries, joined.
    pub thoughts: String,
    pub usage: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
    pub grounding: Vec<GroundingSource>,
    /// The number of parts that carried a thought signature.
    pub signatures: usize,
}

#[derive(Debug)]
pub struct ImagePart<'a> {
    pub declared_mime: Option<String>,
    pub source: ImageSource<'a>,
}

/// Where an image part's bytes are.
#[derive(Debug)]
pub enum ImageSource<'a> {
    /// Base64 in the body: borrowed, or unescaped when the JSON string had escapes (a gateway
    /// that writes `/` as `\/` or `\u002F`; base64 never needs them).
    Inline(Cow<'a, str>),
    /// `fileData.fileUri`: to be downloaded.
    Uri(String),
}

/// Base64 as the API sends it; padding tolerated either way.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl ImagePart<'_> {
    /// The base64 text of an inline image.
    pub fn base64(&self) -> Option<&str> {
        match &self.source {
            ImageSource::Inline(text) => Some(text),
            ImageSource::Uri(_) => None,
        }
    }

    /// The image's bytes, decoded once into a buffer of the exact size (an image given by URI
    /// has none here). A SIMD decoder does the work (several times faster than a scalar one on
    /// megabytes); the scalar decoder, which tolerates missing or extra padding, takes what the
    /// strict one refuses.
    pub fn decode(&self) -> Result<Vec<u8>, base64::DecodeError> {
        let text = self.base64().unwrap_or_default();
        match base64_simd::STANDARD.decode_to_vec(text.as_bytes()) {
            Ok(bytes) => Ok(bytes),
            Err(_) => BASE64.decode(text.as_bytes()),
        }
    }

    /// The scalar decoder alone (for comparison in benchmarks).
    pub fn decode_scalar(&self) -> Result<Vec<u8>, base64::DecodeError> {
        BASE64.decode(self.base64().unwrap_or_default().as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundingSource {
    pub uri: String,
    pub title: Option<String>,
    /// For image-search grounding: the image's own URL (the `uri` is the page that holds it).
    pub image_uri: Option<String>,
}

/// Why a 200 carried no image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoImage {
    /// `IMAGE_SAFETY`, `IMAGE_PROHIBITED_CONTENT`, `SAFETY`, `PROHIBITED_CONTENT`, …
    Filtered(String),
    /// `NO_IMAGE`, `IMAGE_OTHER`, `MAX_TOKENS`, `RECITATION`, … or an unknown finish reason.
    NotProduced(String),
    /// `promptFeedback.blockReason`: the prompt was refused before generation.
    PromptBlocked(String),
    /// STOP with text only: a refusal written as prose.
    TextOnly,
    /// No candidates, no block reason.
    Empty,
}

impl NoImage {
    pub fn reason(&self) -> String {
        match self {
            NoImage::Filtered(r) | NoImage::NotProduced(r) => r.clone(),
            NoImage::PromptBlocked(r) => format!("prompt blocked: {r}"),
            NoImage::TextOnly => "text only (no image part)".to_owned(),
            NoImage::Empty => "empty response".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("response body is not a GenerateContentResponse: {0}")]
pub struct MalformedResponse(pub String);

/// Parses a 200 body.
pub fn parse_reply(body: &[u8]) -> Result<Reply<'_>, MalformedResponse> {
    let response: GenerateContentResponse<'_> =
        serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    if let Some(error) = &response.error {
        return Err(MalformedResponse(format!("error object in a 200 body: {}", truncate(error.get(), 300))));
    }
    Ok(reply_from(response))
}

fn reply_from(response: GenerateContentResponse<'_>) -> Reply<'_> {
    let mut reply = Reply {
        finish_reason: None,
        finish_message: None,
        block_reason: response.prompt_feedback.as_ref().and_then(|p| p.block_reason.clone()),
        image: None,
        thought_images: 0,
        text: String::new(),
        thoughts: String::new(),
        usage: response.usage_metadata,
        model_version: response.model_version,
        response_id: response.response_id,
        grounding: Vec::new(),
        signatures: 0,
    };
    let Some(candidate) = response.candidates.into_iter().flatten().next() else {
        return reply;
    };
    reply.finish_reason = candidate.finish_reason;
    reply.finish_message = candidate.finish_message;
    if let Some(meta) = candidate.grounding_metadata {
        reply.grounding = grounding_sources(meta);
    }
    let parts = candidate.content.and_then(|c| c.parts).unwrap_or_default();
    let mut last_any_image: Option<ImagePart<'_>> = None;
    for part in parts {
        read_part(part, &mut reply, &mut last_any_image);
    }
    if reply.image.is_none()
        && let Some(img) = last_any_image
    {
        reply.thought_images = reply.thought_images.saturating_sub(1);
        reply.image = Some(img);
    }
    reply
}

fn read_part<'a>(part: ResponsePart<'a>, reply: &mut Reply<'a>, last_any_image: &mut Option<ImagePart<'a>>) {
    let thought = part.thought.unwrap_or(false);
    if part.thought_signature.as_deref().is_some_and(|s| !s.is_empty()) {
        reply.signatures += 1;
    }
    if let Some(text) = part.text {
        let target = if thought { &mut reply.thoughts } else { &mut reply.text };
        if !target.is_empty() {
            target.push('\n');
        }
        target.push_str(&text);
    }
    let image = match (part.inline_data, part.file_data) {
        (Some(blob), _) => Some(ImagePart { declared_mime: blob.mime_type, source: ImageSource::Inline(blob.data) }),
        (None, Some(FileData { mime_type, file_uri: Some(uri) }))
            if mime_type.as_deref().is_none_or(|m| m.starts_with("image/")) =>
        {
            Some(ImagePart { declared_mime: mime_type, source: ImageSource::Uri(uri) })
        }
        _ => None,
    };
    if let Some(image) = image {
        if thought {
            reply.thought_images += 1;
            *last_any_image = Some(image);
        } else {
            reply.image = Some(image);
        }
    }
}

fn grounding_sources(meta: super::wire::GroundingMetadata) -> Vec<GroundingSource> {
    let mut out = Vec::new();
    for chunk in meta.grounding_chunks.unwrap_or_default() {
        if let Some(web) = chunk.web
            && let Some(uri) = web.uri
        {
            out.push(GroundingSource { uri, title: web.title, image_uri: None });
        }
        if let Some(image) = chunk.image
            && let Some(uri) = image.source_uri
        {
            out.push(GroundingSource { uri, title: image.title.or(image.domain), image_uri: image.image_uri });
        }
    }
    out
}

impl Reply<'_> {
    /// `Ok` when the reply carries an image, else why not.
    pub fn no_image(&self) -> Option<NoImage> {
        if self.image.is_some() {
            return None;
        }
        if let Some(block) = &self.block_reason {
            return Some(NoImage::PromptBlocked(block.clone()));
        }
        Some(match self.finish_reason.as_deref() {
            None if self.text.is_empty() => NoImage::Empty,
            None | Some("STOP") => NoImage::TextOnly,
            Some(
                r @ ("IMAGE_SAFETY"
                | "IMAGE_PROHIBITED_CONTENT"
                | "SAFETY"
                | "PROHIBITED_CONTENT"
                | "BLOCKLIST"
                | "SPII"),
            ) => NoImage::Filtered(r.to_owned()),
            Some(other) => NoImage::NotProduced(other.to_owned()),
        })
    }

    /// Usage split the way it is billed: image output tokens come from
    /// `candidatesTokensDetails[IMAGE]` (the candidates total can exceed it), the rest of the
    /// candidates count is text. Some responses (batch results, proxies) omit the details; then
    /// the catalogue's `expected_image_tokens` of the candidates count are taken as the image.
    pub fn tokens(&self, expected_image_tokens: u64) -> TokenCounts {
        let Some(usage) = &self.usage else { return TokenCounts::default() };
        let mut tokens = tokens_from_usage(usage);
        let has_image_detail = usage
            .candidates_tokens_details
            .iter()
            .flatten()
            .any(|d| d.modality.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("IMAGE")));
        if self.image.is_some() && !has_image_detail {
            let image = tokens.output_text.min(expected_image_tokens);
            tokens.output_image = tokens.output_image.saturating_add(image);
            tokens.output_text -= image;
        }
        tokens
    }
}

pub fn tokens_from_usage(usage: &UsageMetadata) -> TokenCounts {
    let modality = |details: &Option<Vec<super::wire::ModalityTokens>>, name: &str| -> Option<u64> {
        let details = details.as_ref()?;
        let found: Vec<u64> = details
            .iter()
            .filter(|d| d.modality.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(name)))
            .filter_map(|d| d.token_count)
            .collect();
        (!found.is_empty()).then(|| found.iter().fold(0u64, |sum, n| sum.saturating_add(*n)))
    };
    // Saturating: a hostile server's figures must not overflow (they are flagged as
    // implausible by the caller).
    let prompt = usage.prompt_token_count.unwrap_or(0).saturating_add(usage.tool_use_prompt_token_count.unwrap_or(0));
    let input_image = modality(&usage.prompt_tokens_details, "IMAGE").unwrap_or(0).min(prompt);
    let candidates = usage.candidates_token_count.unwrap_or(0);
    let output_image = match modality(&usage.candidates_tokens_details, "IMAGE") {
        Some(image) => image.min(candidates),
        None => 0,
    };
    TokenCounts {
        input_text: prompt - input_image,
        input_image,
        output_image,
        output_text: candidates - output_image,
        thinking: usage.thoughts_token_count.unwrap_or(0),
    }
}

/// The first candidate's `content` as raw JSON, for replay in the next turn of a conversation.
pub fn raw_model_content(body: &[u8]) -> Option<Box<RawValue>> {
    let raw: RawFirstContent<'_> = serde_json::from_slice(body).ok()?;
    let content = raw.candidates?.into_iter().next()?.content?;
    Some(content.to_owned())
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests;
