//! Building a task's request body: the conversation so far (each earlier user turn rebuilt from
//! the plan, each model turn replayed byte for byte from its turn file, thought signatures and
//! all), the current user turn (prompt, reference images, images from upstream tasks), and the
//! generation config.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::value::RawValue;

use crate::api::wire::{
    Content, Empty, GenerateContentRequest, GenerationConfig, GoogleSearch, ImageConfig, InlineData, RequestContent,
    RequestPart, SearchTypes, ThinkingConfig, Tool,
};
use crate::manifest::model::{GenSettings, RefFile};

/// An image to send that is not a reference file (an upstream task's output).
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub path: PathBuf,
    pub mime: String,
}

/// One user turn.
#[derive(Debug, Clone)]
pub struct UserTurn {
    pub prompt: Arc<str>,
    pub refs: Arc<[Arc<RefFile>]>,
    pub images: Vec<ImageFile>,
}

/// An earlier exchange of the conversation.
#[derive(Debug, Clone)]
pub struct PastTurn {
    pub user: UserTurn,
    /// `.nanobatch/turns/<fp>.json`: the model's content as returned.
    pub model_turn: PathBuf,
}

/// What shapes the request besides the turns.
#[derive(Debug, Clone)]
pub struct RequestConfig<'a> {
    pub generation: &'a GenSettings,
    pub ratio: &'a str,
    pub wire_size: Option<&'a str>,
    pub system: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {reason}", path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub reason: String,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|e| InputError { path: path.clone(), reason: crate::fsutil::io_reason(&e) })
}

/// Builds the JSON body. Reads every image it sends (blocking: call from a blocking thread).
pub fn build_body(config: &RequestConfig<'_>, past: &[PastTurn], current: &UserTurn) -> Result<Bytes, InputError> {
    // Encoded images and raw model turns must outlive the request struct that borrows them.
    let mut encoded: Vec<Vec<(String, String)>> = Vec::with_capacity(past.len() + 1);
    let mut model_turns: Vec<Box<RawValue>> = Vec::with_capacity(past.len());
    for turn in past {
        encoded.push(encode_images(&turn.user)?);
        let text = std::fs::read_to_string(&turn.model_turn)
            .map_err(|e| InputError { path: turn.model_turn.clone(), reason: crate::fsutil::io_reason(&e) })?;
        let raw = RawValue::from_string(text).map_err(|e| InputError {
            path: turn.model_turn.clone(),
            reason: format!("damaged conversation turn: {e}"),
        })?;
        model_turns.push(raw);
    }
    encoded.push(encode_images(current)?);

    let mut contents = Vec::with_capacity(past.len() * 2 + 1);
    for (i, turn) in past.iter().enumerate() {
        contents.push(RequestContent::Built(user_content(&turn.user, &encoded[i])));
        contents.push(RequestContent::Verbatim(&model_turns[i]));
    }
    contents.push(RequestContent::Built(user_content(current, &encoded[past.len()])));

    let g = config.generation;
    let request = GenerateContentRequest {
        contents,
        system_instruction: config
            .system
            .map(|s| Content { role: None, parts: vec![RequestPart::Text(Cow::Borrowed(s))] }),
        tools: tools(g),
        generation_config: generation_config(config),
    };
    serde_json::to_vec(&request)
        .map(Bytes::from)
        .map_err(|e| InputError { path: PathBuf::from("<request>"), reason: e.to_string() })
}

fn encode_images(turn: &UserTurn) -> Result<Vec<(String, String)>, InputError> {
    let mut out = Vec::with_capacity(turn.refs.len() + turn.images.len());
    for r in turn.refs.iter() {
        out.push((r.image.mime().to_owned(), STANDARD.encode(read(&r.path)?)));
    }
    for image in &turn.images {
        out.push((image.mime.clone(), STANDARD.encode(read(&image.path)?)));
    }
    Ok(out)
}

fn user_content<'a>(turn: &'a UserTurn, images: &'a [(String, String)]) -> Content<'a> {
    let mut parts = Vec::with_capacity(1 + images.len());
    parts.push(RequestPart::Text(Cow::Borrowed(&turn.prompt)));
    for (mime, data) in images {
        parts.push(RequestPart::InlineData(InlineData { mime_type: mime, data: Cow::Borrowed(data) }));
    }
    Content { role: Some("user"), parts }
}

pub fn generation_config(config: &RequestConfig<'_>) -> GenerationConfig {
    let g = config.generation;
    let thinking = (g.thinking_level.is_some() || g.include_thoughts.is_some()).then(|| ThinkingConfig {
        thinking_level: g.thinking_level.as_ref().map(|l| l.to_ascii_uppercase()),
        include_thoughts: g.include_thoughts,
    });
    GenerationConfig {
        response_modalities: g.modalities.clone(),
        image_config: Some(ImageConfig {
            aspect_ratio: Some(config.ratio.to_owned()),
            image_size: config.wire_size.map(str::to_owned),
        }),
        thinking_config: thinking,
        temperature: g.temperature,
        seed: g.seed,
        max_output_tokens: g.max_output_tokens,
    }
}

pub fn tools(g: &GenSettings) -> Vec<Tool> {
    match (g.grounding_web, g.grounding_image) {
        (false, false) => Vec::new(),
        (true, false) => vec![Tool { google_search: GoogleSearch::default() }],
        (web, true) => vec![Tool {
            google_search: GoogleSearch {
                search_types: Some(SearchTypes { web_search: web.then_some(Empty {}), image_search: Some(Empty {}) }),
            },
        }],
    }
}
