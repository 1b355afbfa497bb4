//! Wire types of `generateContent`: the request we send and the response we read, with the
//! real field names (camelCase out; both camelCase and `null`s tolerated in).
//!
//! Responses are parsed borrowing from the body: an image response is one base64 string of
//! 1–13 MB, and [`Blob::data`] points into the body instead of copying it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    pub contents: Vec<RequestContent<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    pub generation_config: GenerationConfig,
}

/// A turn of the conversation: one we build, or a model turn replayed byte for byte as the API
/// returned it (thought signatures must come back unchanged, on the same part, in the same place).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RequestContent<'a> {
    Built(Content<'a>),
    Verbatim(&'a RawValue),
}

#[derive(Debug, Serialize)]
pub struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    pub parts: Vec<RequestPart<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestPart<'a> {
    Text(Cow<'a, str>),
    InlineData(InlineData<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineData<'a> {
    pub mime_type: &'a str,
    pub data: Cow<'a, str>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    pub response_modalities: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_config: Option<ImageConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub google_search: GoogleSearch,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoogleSearch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_types: Option<SearchTypes>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SearchTypes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_search: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_search: Option<Empty>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Empty {}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse<'a> {
    #[serde(borrow, default)]
    pub candidates: Option<Vec<Candidate<'a>>>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
    /// A proxy may answer 200 with an error object (or a stream may carry one).
    #[serde(default)]
    pub error: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<ResponseContent<'a>>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub finish_message: Option<String>,
    #[serde(default)]
    pub grounding_metadata: Option<GroundingMetadata>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseContent<'a> {
    #[serde(borrow, default)]
    pub parts: Option<Vec<ResponsePart<'a>>>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponsePart<'a> {
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, alias = "inline_data")]
    pub inline_data: Option<Blob<'a>>,
    /// An image by reference (some gateways answer with a URL instead of the bytes).
    #[serde(default, alias = "file_data")]
    pub file_data: Option<FileData>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(borrow, default, alias = "thought_signature")]
    pub thought_signature: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    #[serde(default, alias = "mime_type")]
    pub mime_type: Option<String>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, alias = "mime_type")]
    pub mime_type: Option<String>,
    #[serde(default, alias = "file_uri")]
    pub file_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
    #[serde(default)]
    pub block_reason_message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: Option<u64>,
    #[serde(default)]
    pub candidates_token_count: Option<u64>,
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    #[serde(default)]
    pub total_token_count: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<Vec<ModalityTokens>>,
    #[serde(default)]
    pub candidates_tokens_details: Option<Vec<ModalityTokens>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModalityTokens {
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub token_count: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroundingMetadata {
    #[serde(default)]
    pub web_search_queries: Option<Vec<String>>,
    #[serde(default)]
    pub image_search_queries: Option<Vec<String>>,
    #[serde(default)]
    pub grounding_chunks: Option<Vec<GroundingChunk>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GroundingChunk {
    #[serde(default)]
    pub web: Option<WebChunk>,
    #[serde(default)]
    pub image: Option<ImageChunk>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebChunk {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageChunk {
    #[serde(default)]
    pub source_uri: Option<String>,
    #[serde(default)]
    pub image_uri: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

/// Only the first candidate's `content`, kept as raw JSON so that a later turn can replay it
/// exactly as returned.
#[derive(Debug, Deserialize)]
pub struct RawFirstContent<'a> {
    #[serde(borrow, default)]
    pub candidates: Option<Vec<RawCandidate<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct RawCandidate<'a> {
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
}
