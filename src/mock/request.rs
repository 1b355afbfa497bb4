//! Request validation as the real API does it: proto3 JSON (camelCase or snake_case field
//! names, unknown fields rejected with the snake_case path), enums compared without case, and the
//! per-model rules (aspect ratio, image size, reference count, thinking, grounding,
//! `candidateCount`, thought signatures in multi-turn history).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::signature;
use crate::catalog::ModelSpec;
use crate::media;

/// A request the emulator can answer.
#[derive(Debug, Default)]
pub struct Request {
    /// Tokens of every text part (contents and system instruction), `ceil(bytes / 4)` each.
    pub text_tokens: u64,
    /// Images in the request (references and history images).
    pub input_images: u64,
    /// Text of the last user turn (directives, image style).
    pub last_user_text: String,
    pub wants_text: bool,
    pub aspect_ratio: Option<String>,
    pub image_size: Option<String>,
    pub thinking_level: Option<String>,
    /// `maxOutputTokens`: text and thinking of the answer stop there.
    pub max_output_tokens: Option<u64>,
    pub include_thoughts: bool,
    pub web_search: bool,
    pub image_search: bool,
    /// Size of the first input image, for the default aspect ratio.
    pub first_image: Option<(u32, u32)>,
}

/// A 400 with the real message.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub String);

#[derive(Clone, Copy)]
enum Msg {
    Request,
    Content,
    Part,
    Blob,
    FileData,
    GenerationConfig,
    ImageConfig,
    ThinkingConfig,
    Tool,
    GoogleSearch,
    SearchTypes,
    Empty,
    SafetySetting,
    Any,
    ResponseFormat,
}

/// Field names (camelCase) and the message type of their value.
fn fields(msg: Msg) -> &'static [(&'static str, Option<Msg>)] {
    use Msg::*;
    match msg {
        Request => &[
            ("contents", Some(Content)),
            ("systemInstruction", Some(Content)),
            ("tools", Some(Tool)),
            ("toolConfig", Some(Any)),
            ("safetySettings", Some(SafetySetting)),
            ("generationConfig", Some(GenerationConfig)),
            ("cachedContent", None),
            ("serviceTier", None),
            ("model", None),
            ("labels", Some(Any)),
        ],
        Content => &[("role", None), ("parts", Some(Part))],
        Part => &[
            ("text", None),
            ("inlineData", Some(Blob)),
            ("fileData", Some(FileData)),
            ("thought", None),
            ("thoughtSignature", None),
            ("functionCall", Some(Any)),
            ("functionResponse", Some(Any)),
            ("executableCode", Some(Any)),
            ("codeExecutionResult", Some(Any)),
            ("videoMetadata", Some(Any)),
            ("mediaResolution", Some(Any)),
            ("partMetadata", Some(Any)),
        ],
        Blob => &[("mimeType", None), ("data", None)],
        FileData => &[("mimeType", None), ("fileUri", None)],
        GenerationConfig => &[
            ("responseModalities", None),
            ("imageConfig", Some(ImageConfig)),
            ("responseFormat", Some(ResponseFormat)),
            ("thinkingConfig", Some(ThinkingConfig)),
            ("temperature", None),
            ("seed", None),
            ("candidateCount", None),
            ("topP", None),
            ("topK", None),
            ("maxOutputTokens", None),
            ("stopSequences", None),
            ("mediaResolution", None),
            ("responseMimeType", None),
            ("responseSchema", Some(Any)),
            ("responseJsonSchema", Some(Any)),
            ("presencePenalty", None),
            ("frequencyPenalty", None),
            ("responseLogprobs", None),
            ("logprobs", None),
            ("speechConfig", Some(Any)),
        ],
        ImageConfig => &[("aspectRatio", None), ("imageSize", None)],
        ResponseFormat => &[("image", Some(ImageConfig))],
        ThinkingConfig => &[("thinkingLevel", None), ("includeThoughts", None), ("thinkingBudget", None)],
        Tool => &[
            ("googleSearch", Some(GoogleSearch)),
            ("googleSearchRetrieval", Some(Any)),
            ("codeExecution", Some(Any)),
            ("functionDeclarations", Some(Any)),
            ("urlContext", Some(Any)),
        ],
        GoogleSearch => &[("searchTypes", Some(SearchTypes)), ("timeRangeFilter", Some(Any))],
        SearchTypes => &[("webSearch", Some(Empty)), ("imageSearch", Some(Empty))],
        SafetySetting => &[("category", None), ("threshold", None)],
        Empty | Any => &[],
    }
}

/// `inline_data` → `inlineData`.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `inlineData` → `inline_data`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Rejects unknown fields anywhere, as proto3 JSON parsing does.
fn check_fields(value: &Value, msg: Msg, path: &str) -> Result<(), Invalid> {
    if matches!(msg, Msg::Any) {
        return Ok(());
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_fields(item, msg, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let known = fields(msg);
            for (key, child) in map {
                let name = camel(key);
                match known.iter().find(|(k, _)| *k == name) {
                    Some((_, Some(child_msg))) => check_fields(child, *child_msg, &format!("{path}.{}", snake(&name)))?,
                    Some((_, None)) => {}
                    None => {
                        return Err(Invalid(format!(
                            "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
                        )));
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A field by either spelling.
fn get<'a>(map: &'a Map<String, Value>, camel_name: &str) -> Option<&'a Value> {
    map.get(camel_name).or_else(|| map.get(&snake(camel_name)))
}

fn enum_upper(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_ascii_uppercase)
}

/// Validates `body` for `spec` and extracts what the answer depends on.
pub fn validate(body: &Value, spec: &ModelSpec, signature_secret: &[u8]) -> Result<Request, Invalid> {
    let root = body.as_object().ok_or_else(|| Invalid("Invalid JSON payload received. Expected an object.".into()))?;
    check_fields(body, Msg::Request, "request")?;
    let mut req = Request::default();

    let contents = get(root, "contents").and_then(Value::as_array).filter(|c| !c.is_empty());
    let contents =
        contents.ok_or_else(|| Invalid("* GenerateContentRequest.contents: contents is not specified".into()))?;
    if let Some(system) = get(root, "systemInstruction").and_then(Value::as_object) {
        for part in get(system, "parts").and_then(Value::as_array).into_iter().flatten() {
            if let Some(text) = part.as_object().and_then(|p| get(p, "text")).and_then(Value::as_str) {
                req.text_tokens += (text.len() as u64).div_ceil(4);
            }
        }
    }
    let mut user_images = 0u32;
    for (ci, content) in contents.iter().enumerate() {
        let content = content.as_object().ok_or_else(|| Invalid(format!("* contents[{ci}]: expected an object")))?;
        let role = get(content, "role").and_then(Value::as_str).unwrap_or("user");
        let parts = get(content, "parts").and_then(Value::as_array).cloned().unwrap_or_default();
        let last = ci + 1 == contents.len();
        if last && role != "user" {
            return Err(Invalid("Please ensure that the last content has role user.".into()));
        }
        if last {
            req.last_user_text.clear();
        }
        for (pi, part) in parts.iter().enumerate() {
            let part =
                part.as_object().ok_or_else(|| Invalid(format!("* contents[{ci}].parts[{pi}]: expected an object")))?;
            read_part(&mut req, spec, part, role, ci, pi, last, &mut user_images, signature_secret)?;
        }
    }
    if user_images > spec.references.max_total {
        return Err(Invalid(format!(
            "Too many images in the request: {user_images}. {} accepts at most {}.",
            spec.id, spec.references.max_total
        )));
    }

    let config = get(root, "generationConfig").and_then(Value::as_object);
    read_generation_config(&mut req, spec, config)?;
    read_tools(&mut req, spec, root)?;
    Ok(req)
}

#[allow(clippy::too_many_arguments)]
fn read_part(
    req: &mut Request,
    spec: &ModelSpec,
    part: &Map<String, Value>,
    role: &str,
    ci: usize,
    pi: usize,
    last: bool,
    user_images: &mut u32,
    secret: &[u8],
) -> Result<(), Invalid> {
    let thought = get(part, "thought").and_then(Value::as_bool).unwrap_or(false);
    let sig = get(part, "thoughtSignature").and_then(Value::as_str);
    if let Some(sig) = sig
        && STANDARD.decode(sig).is_err()
        && base64::engine::general_purpose::URL_SAFE.decode(sig).is_err()
    {
        return Err(Invalid(format!(
            "Invalid value at 'contents[{ci}].parts[{pi}].thought_signature' (TYPE_BYTES), Base64 decoding failed for \"{}\"",
            sig.chars().take(40).collect::<String>()
        )));
    }

    if let Some(text) = get(part, "text").and_then(Value::as_str) {
        req.text_tokens += (text.len() as u64).div_ceil(4);
        if last {
            if !req.last_user_text.is_empty() {
                req.last_user_text.push('\n');
            }
            req.last_user_text.push_str(text);
        }
        if role == "model"
            && spec.is_gemini3()
            && let Some(sig) = sig
            && !signature::verify(secret, text.as_bytes(), sig)
        {
            return Err(Invalid("Corrupted thought signature.".into()));
        }
    }
    let blob = get(part, "inlineData").and_then(Value::as_object);
    let file = get(part, "fileData").and_then(Value::as_object);
    if blob.is_none() && file.is_none() {
        return Ok(());
    }
    req.input_images += 1;
    if role == "user" {
        *user_images += 1;
    }
    let mime = blob.or(file).and_then(|b| get(b, "mimeType")).and_then(Value::as_str).unwrap_or_default();
    if !matches!(mime, "image/png" | "image/jpeg" | "image/webp" | "image/heic" | "image/heif") {
        let field = if blob.is_some() { "inline_data" } else { "file_data" };
        return Err(Invalid(format!(
            "* GenerateContentRequest.contents[{ci}].parts[{pi}].{field}.mime_type: MIME type must be image/png, image/jpeg, image/webp, image/heic, or image/heif."
        )));
    }
    let Some(blob) = blob else { return Ok(()) };
    let data = get(blob, "data").and_then(Value::as_str).unwrap_or_default();
    if role == "model" && !thought && spec.is_gemini3() {
        match sig {
            None => {
                return Err(Invalid(format!(
                    "Image part is missing a thought_signature in content position {}, part position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures#model-behavior for more details.",
                    ci + 1,
                    pi + 1
                )));
            }
            Some(sig) if !signature::verify(secret, data.as_bytes(), sig) => {
                return Err(Invalid("Corrupted thought signature.".into()));
            }
            Some(_) => {}
        }
    }
    if role == "user" {
        let bytes = STANDARD.decode(data).map_err(|_| {
            Invalid(format!(
                "Invalid value at 'contents[{ci}].parts[{pi}].inline_data.data' (TYPE_BYTES), Base64 decoding failed"
            ))
        })?;
        let kind = media::sniff(&bytes);
        if kind.map(|k| k.mime()) != Some(mime) && !(mime == "image/heif" && kind == Some(media::ImageKind::Heic)) {
            return Err(Invalid(format!("Unable to process input image: the data is not {mime}.")));
        }
        if req.first_image.is_none() {
            req.first_image = kind.and_then(|k| media::dimensions(&bytes, k));
        }
    }
    Ok(())
}

fn read_generation_config(
    req: &mut Request,
    spec: &ModelSpec,
    config: Option<&Map<String, Value>>,
) -> Result<(), Invalid> {
    req.wants_text = true;
    let Some(config) = config else { return Ok(()) };
    if let Some(modalities) = get(config, "responseModalities").and_then(Value::as_array) {
        let upper: Vec<String> = modalities.iter().filter_map(Value::as_str).map(str::to_ascii_uppercase).collect();
        if let Some(bad) = upper.iter().find(|m| !matches!(m.as_str(), "TEXT" | "IMAGE")) {
            return Err(Invalid(format!(
                "Invalid value at 'generation_config.response_modalities[0]' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), \"{bad}\""
            )));
        }
        req.wants_text = upper.iter().any(|m| m == "TEXT");
        if !upper.iter().any(|m| m == "IMAGE") {
            return Err(Invalid(
                "Model only supports responses with image modality; add IMAGE to response_modalities.".into(),
            ));
        }
    }
    if let Some(count) = get(config, "candidateCount").and_then(Value::as_i64)
        && count > 1
    {
        return Err(Invalid(format!("Multiple candidates is not enabled for models/{}", spec.id)));
    }
    let image = get(config, "imageConfig").and_then(Value::as_object).or_else(|| {
        get(config, "responseFormat")
            .and_then(Value::as_object)
            .and_then(|f| get(f, "image"))
            .and_then(Value::as_object)
    });
    if let Some(image) = image {
        if let Some(ratio) = get(image, "aspectRatio").and_then(Value::as_str) {
            if !spec.accepts_ratio(ratio) {
                return Err(Invalid(format!(
                    "* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio \"{ratio}\" for {}; supported: {}",
                    spec.id,
                    spec.aspect_ratios.join(", ")
                )));
            }
            req.aspect_ratio = Some(ratio.to_owned());
        }
        if let Some(size) = get(image, "imageSize").and_then(Value::as_str) {
            let known = spec.sizes.iter().find(|s| s.wire.as_deref() == Some(size));
            match known {
                Some(s) => req.image_size = Some(s.name.clone()),
                None if spec.sizes.iter().all(|s| s.wire.is_none()) => {
                    return Err(Invalid(format!("Image size is not supported for models/{}.", spec.id)));
                }
                None => {
                    let wires: Vec<&str> = spec.sizes.iter().filter_map(|s| s.wire.as_deref()).collect();
                    return Err(Invalid(format!(
                        "* GenerateContentRequest.generation_config.image_config.image_size: unsupported image size \"{size}\"; supported: {}",
                        wires.join(", ")
                    )));
                }
            }
        }
    }
    req.max_output_tokens = get(config, "maxOutputTokens").and_then(Value::as_u64);
    if let Some(thinking) = get(config, "thinkingConfig").and_then(Value::as_object) {
        let thinks = spec.thinking.always_on || !spec.thinking.levels.is_empty();
        if let Some(level) = enum_upper(get(thinking, "thinkingLevel")) {
            if !thinks {
                return Err(Invalid("Thinking level is not supported for this model.".into()));
            }
            if !spec.thinking.levels.iter().any(|l| l.eq_ignore_ascii_case(&level)) {
                return Err(Invalid(format!(
                    "Thinking level {level} is not supported for this model. Please retry with other thinking level."
                )));
            }
            req.thinking_level = Some(level.to_ascii_lowercase());
        }
        req.include_thoughts = thinks && get(thinking, "includeThoughts").and_then(Value::as_bool).unwrap_or(false);
    }
    Ok(())
}

fn read_tools(req: &mut Request, spec: &ModelSpec, root: &Map<String, Value>) -> Result<(), Invalid> {
    for tool in get(root, "tools").and_then(Value::as_array).into_iter().flatten() {
        let Some(search) = tool.as_object().and_then(|t| get(t, "googleSearch")).and_then(Value::as_object) else {
            continue;
        };
        let types = get(search, "searchTypes").and_then(Value::as_object);
        let image = types.is_some_and(|t| get(t, "imageSearch").is_some());
        let web = types.is_none_or(|t| get(t, "webSearch").is_some() || !image);
        if web && !spec.grounding.web {
            return Err(Invalid(format!("Search grounding is not supported for models/{}.", spec.id)));
        }
        if image && !spec.grounding.image {
            return Err(Invalid(format!("Image search grounding is not supported for models/{}.", spec.id)));
        }
        req.web_search |= web;
        req.image_search |= image;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{camel, snake, validate};
    use crate::catalog::Catalog;

    fn spec(id: &str) -> &'static crate::catalog::ModelSpec {
        Catalog::embedded().model(id).unwrap()
    }

    #[test]
    fn both_casings_are_accepted_and_unknown_fields_rejected() {
        assert_eq!(camel("inline_data"), "inlineData");
        assert_eq!(snake("generationConfig"), "generation_config");
        let sdk = serde_json::from_str::<serde_json::Value>(include_str!(
            "../../tests/fixtures/gemini/request.sdk-python-3.6.1.generateContent.json"
        ))
        .unwrap();
        let mut body = sdk["body"].clone();
        // The fixture's history signature and dummy image are not ours; drop them for this check.
        body["contents"].as_array_mut().unwrap().truncate(1);
        body["contents"][0]["parts"].as_array_mut().unwrap().truncate(1);
        let req = validate(&body, spec("gemini-3-pro-image-preview"), b"k");
        // The fixture asks for HIGH thinking, which 3-pro does not take as a level.
        assert!(req.is_err());
        body["generationConfig"]["thinkingConfig"] = json!({"include_thoughts": true});
        body["tools"] = json!([{"googleSearch": {}}]);
        let req = validate(&body, spec("gemini-3-pro-image-preview"), b"k").unwrap();
        assert!(req.include_thoughts);
        assert_eq!(req.aspect_ratio.as_deref(), Some("16:9"));

        let bad = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"aspectRatio": "16:9"}});
        let err = validate(&bad, spec("gemini-2.5-flash-image"), b"k").unwrap_err();
        assert_eq!(
            err.0,
            "Invalid JSON payload received. Unknown name \"aspectRatio\" at 'request.generation_config': Cannot find field."
        );
    }

    #[test]
    fn model_rules() {
        let body = |config: serde_json::Value| json!({"contents": [{"parts": [{"text": "a cat"}]}], "generationConfig": config});
        let flash = spec("gemini-3.1-flash-image-preview");
        assert!(validate(&body(json!({"imageConfig": {"imageSize": "512"}})), flash, b"k").is_ok());
        assert!(validate(&body(json!({"imageConfig": {"imageSize": "1k"}})), flash, b"k").is_err());
        assert!(
            validate(&body(json!({"imageConfig": {"aspectRatio": "8:1"}})), spec("gemini-3-pro-image-preview"), b"k")
                .is_err()
        );
        assert!(validate(&body(json!({"candidateCount": 2})), flash, b"k").is_err());
        assert!(validate(&body(json!({"thinkingConfig": {"thinkingLevel": "High"}})), flash, b"k").is_ok());
        assert!(validate(&body(json!({"thinkingConfig": {"thinkingLevel": "MEDIUM"}})), flash, b"k").is_err());
        assert!(
            validate(&body(json!({"imageConfig": {"imageSize": "1K"}})), spec("gemini-2.5-flash-image"), b"k").is_err()
        );
    }
}
