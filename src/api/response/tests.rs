//! Response parsing against the fixtures captured from the real API, proxies and the SDK
//! (tests/fixtures/gemini, copied from shared/reference/fixtures).

use super::{NoImage, parse_reply, raw_model_content};
use crate::api::status::parse_error_body;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn flash_25_success_has_an_image_and_billable_usage() {
    let body = fixture("response.2.5-flash-image.success.json");
    let reply = parse_reply(&body).unwrap();
    assert!(reply.no_image().is_none());
    let image = reply.image.as_ref().unwrap();
    assert_eq!(image.declared_mime.as_deref(), Some("image/png"));
    assert!(image.base64().unwrap().starts_with("iVBORw0KGgo"));
    assert_eq!(reply.text, "Here is your image.");
    let t = reply.tokens(1290);
    assert_eq!((t.input_text, t.input_image, t.output_image, t.output_text, t.thinking), (262, 0, 1290, 0, 0));
    assert_eq!(reply.response_id.as_deref(), Some("abc123exampleid"));
}

#[test]
fn pro_via_proxy_bills_image_tokens_from_the_details() {
    let body = fixture("response.3-pro-image.success.via-proxy.json");
    let reply = parse_reply(&body).unwrap();
    assert_eq!(reply.image.as_ref().unwrap().declared_mime.as_deref(), Some("image/jpeg"));
    let t = reply.tokens(1120);
    // candidatesTokenCount 1772 > IMAGE detail 1120: the rest is text; thoughts are separate.
    assert_eq!((t.output_image, t.output_text, t.thinking, t.input_text), (1120, 652, 748, 32));
    // An empty signature (proxy-mangled) is not counted as a signature.
    assert_eq!(reply.signatures, 0);
}

#[test]
fn thought_parts_are_not_the_final_image() {
    let body = fixture("response.thought-signature-layout.json");
    let reply = parse_reply(&body).unwrap();
    assert_eq!(reply.thought_images, 2);
    assert!(reply.image.is_some());
    assert_eq!(reply.signatures, 3, "first text part and both final images carry signatures");
    assert_eq!(reply.text, "Here is a step-by-step guide ... Step 1 ...\nStep 2 ...");
}

#[test]
fn thoughts_are_kept_apart_from_text() {
    let body = fixture("response.3-pro-image.with-thoughts.vertex.json");
    let reply = parse_reply(&body).unwrap();
    assert!(reply.thoughts.starts_with("**Contemplating the Discovery**"));
    assert!(reply.text.is_empty());
    assert_eq!(reply.tokens(1120).thinking, 155);
}

#[test]
fn image_safety_with_nulls_is_filtered() {
    let body = fixture("response.3-pro-image.image-safety.json");
    let reply = parse_reply(&body).unwrap();
    assert_eq!(reply.no_image(), Some(NoImage::Filtered("IMAGE_SAFETY".into())));
    assert!(reply.finish_message.as_deref().unwrap().contains("not be charged"));
    let t = reply.tokens(1120);
    assert_eq!((t.input_text, t.input_image, t.thinking, t.output_image), (206, 258, 291, 0));
}

#[test]
fn no_image_finish_reason() {
    let reply_body = fixture("response.no-image-finish.json");
    let reply = parse_reply(&reply_body).unwrap();
    assert_eq!(reply.no_image(), Some(NoImage::NotProduced("NO_IMAGE".into())));
}

#[test]
fn blocked_prompt_has_no_candidates() {
    let body = fixture("response.prompt-blocked.json");
    let reply = parse_reply(&body).unwrap();
    assert_eq!(reply.no_image(), Some(NoImage::PromptBlocked("OTHER".into())));
}

#[test]
fn text_refusal_on_stop_is_not_a_success() {
    let body = fixture("response.text-refusal-no-image.json");
    let reply = parse_reply(&body).unwrap();
    assert_eq!(reply.no_image(), Some(NoImage::TextOnly));
    assert!(reply.text.starts_with("I can't generate"));
}

#[test]
fn batch_inline_response_without_details_takes_catalogue_image_tokens() {
    let body = fixture("batch.get.succeeded-inline.json");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let response = &value["metadata"]["output"]["inlinedResponses"]["inlinedResponses"][0]["response"];
    let text = serde_json::to_vec(response).unwrap();
    let reply = parse_reply(&text).unwrap();
    let t = reply.tokens(1290);
    assert_eq!((t.output_image, t.output_text, t.input_text), (1290, 0, 5));
}

#[test]
fn raw_content_is_kept_verbatim_for_replay() {
    let body = fixture("response.thought-signature-layout.json");
    let raw = raw_model_content(&body).unwrap();
    let original: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let replayed: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
    assert_eq!(replayed, original["candidates"][0]["content"]);
}

#[test]
fn error_fixtures_parse_into_typed_statuses() {
    let quota = parse_error_body(&fixture("error.429.quota-retryinfo.json")).unwrap();
    assert_eq!(quota.code, Some(429));
    assert_eq!(quota.status.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(quota.retry_delay, Some(std::time::Duration::from_secs(26)));
    assert_eq!(quota.quota[0].quota_id.as_deref(), Some("GenerateContentInputTokensPerModelPerMinute-FreeTier"));
    assert!(!quota.is_daily_quota());

    let minimal = parse_error_body(&fixture("error.429.minimal.json")).unwrap();
    assert_eq!(minimal.retry_delay, None);

    let key = parse_error_body(&fixture("error.400.api-key-invalid.json")).unwrap();
    assert_eq!(key.reason.as_deref(), Some("API_KEY_INVALID"));

    for name in [
        "error.400.failed-precondition-location.json",
        "error.400.missing-thought-signature.json",
        "error.400.multiple-candidates.json",
        "error.400.thinking-level-unsupported.json",
        "error.400.unknown-field.json",
        "error.403.missing-key.json",
        "error.404.model-not-found.json",
        "error.500.internal.json",
        "error.503.overloaded.json",
        "error.504.deadline.json",
    ] {
        let status = parse_error_body(&fixture(name)).unwrap_or_else(|| panic!("{name}"));
        assert!(!status.message.is_empty(), "{name}");
        assert!(status.code.is_some(), "{name}");
    }
}

#[test]
fn sse_stream_chunks_parse_as_replies() {
    let text = String::from_utf8(fixture("stream.sse.image.txt")).unwrap();
    let events: Vec<&str> = text.lines().filter_map(|e| e.trim().strip_prefix("data: ")).collect();
    assert_eq!(events.len(), 2);
    let last = parse_reply(events[1].as_bytes()).unwrap();
    assert!(last.image.is_some());
    assert_eq!(last.signatures, 1);
}
