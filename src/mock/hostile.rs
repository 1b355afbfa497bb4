//! What stands between a client and the model in the wild, as fault modes: a gateway that times
//! out after the model ran (and billed) and answers its own error page, JSON that escapes what it
//! need not, a truncated or corrupt image inside a well-formed 200, a body compressed although
//! nobody asked, an image handed over as a URL, a server that echoes the key, usage figures no
//! request could produce, a redirect.
//!
//! Each is a prompt directive (`[[mock:gateway=504]]`, `[[mock:escape=slash]]`, …), kept apart
//! from the emulator's own faults in [`Hostile`]; the gateway timeout also has a random rate for
//! soak tests ([`FaultRates::gateway_timeout`](super::FaultRates)), and so has the truncated
//! image (`broken_image`).

use std::io::Write;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use rand::Rng;

use super::MockState;
use super::generate::{Answer, Call, error, record};
use super::images::{ImageKey, full_bytes};
use super::stats::Stats;

/// Hostile behaviours asked for by directives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hostile {
    /// `gateway=504`, `gateway=524x2`, `gateway-json=504`: the model generates (and bills) the
    /// image, then a gateway answers this status with its own page (HTML, or foreign JSON).
    pub gateway: Option<Gateway>,
    /// `escape=slash` (`/` as `\/`, as PHP writes JSON) or `escape=unicode` (`/` and `+` as
    /// `\u002F`, `\u002B`), everywhere in the body, the image's base64 included.
    pub escape: Option<Escape>,
    /// `broken=truncated` (the image cut in half, its base64 well-formed), `broken=crc` (one
    /// byte changed), `broken=truncatedx1` (the first request only).
    pub broken: Option<(Broken, u32)>,
    /// `encoding=gzip`, `encoding=br`: the body compressed, with `Content-Encoding`.
    pub encoding: Option<Encoding>,
    /// `file-data`: the image as `fileData.fileUri`, an `http://` URL on the emulator;
    /// `file-data=truncated`: that download ends halfway (with a matching length).
    pub file_data: Option<FileData>,
    /// `echo-key`: a 400 whose message quotes the key the request carried.
    pub echo_key: bool,
    /// `usage=huge`: `usageMetadata` with `u64::MAX` candidate tokens.
    pub huge_usage: bool,
    /// `page=413`: an HTML error page of this status, before the model (not billed).
    pub page: Option<u16>,
    /// `redirect`: a 302 to another host.
    pub redirect: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub status: u16,
    /// A foreign JSON body instead of an HTML page.
    pub json: bool,
    /// For the first this many requests of a body (`u32::MAX`: every time).
    pub times: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Slash,
    Unicode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    Truncated,
    Crc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileData {
    Whole,
    Truncated,
}

const EVERY_TIME: u32 = u32::MAX;

/// `504` → (504, every time); `524x2` → (524, 2).
fn status_and_times(value: &str) -> Option<(u16, u32)> {
    let (status, times) = value.split_once('x').map_or((value, None), |(s, n)| (s, Some(n)));
    let times = match times {
        Some(n) => n.parse().ok()?,
        None => EVERY_TIME,
    };
    Some((status.parse().ok()?, times))
}

impl Hostile {
    /// Takes one directive item; `false` when it is not one of these.
    pub fn apply(&mut self, name: &str, value: Option<&str>) -> bool {
        match (name, value) {
            ("gateway" | "gateway-json", Some(v)) => {
                if let Some((status, times)) = status_and_times(v) {
                    self.gateway = Some(Gateway { status, json: name == "gateway-json", times });
                }
            }
            ("escape", v) => self.escape = Some(if v == Some("unicode") { Escape::Unicode } else { Escape::Slash }),
            ("broken", v) => {
                let v = v.unwrap_or("truncated");
                let (kind, times) = v.split_once('x').map_or((v, None), |(k, n)| (k, n.parse().ok()));
                let kind = if kind == "crc" { Broken::Crc } else { Broken::Truncated };
                self.broken = Some((kind, times.unwrap_or(EVERY_TIME)));
            }
            ("encoding", v) => self.encoding = Some(if v == Some("br") { Encoding::Brotli } else { Encoding::Gzip }),
            ("file-data", v) => {
                self.file_data = Some(if v == Some("truncated") { FileData::Truncated } else { FileData::Whole });
            }
            ("echo-key", _) => self.echo_key = true,
            ("usage", Some("huge")) => self.huge_usage = true,
            ("page", Some(v)) => self.page = v.parse().ok(),
            ("redirect", _) => self.redirect = true,
            _ => return false,
        }
        true
    }
}

/// What the emulator knows of the client: the key it sent and the host it called.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub key: Option<String>,
    pub host: String,
}

impl Client {
    pub fn of(headers: &HeaderMap, query: &std::collections::HashMap<String, String>) -> Client {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Client {
            key: header("x-goog-api-key").or_else(|| query.get("key").cloned()).filter(|k| !k.is_empty()),
            host: header("host").unwrap_or_else(|| "127.0.0.1".to_owned()),
        }
    }
}

/// Answers that come before the model runs (nothing billed): the echoed key, an error page, a
/// redirect.
pub(crate) fn before_model(state: &MockState, hostile: &Hostile, call: &Call, client: &Client) -> Option<Response> {
    if hostile.echo_key {
        record(state, call, 400, "echo-key", None, None);
        let key = client.key.as_deref().unwrap_or("");
        let message = format!("API key {key} is not valid for this model. Please pass a valid API key.");
        return Some(error(400, "INVALID_ARGUMENT", &message, None));
    }
    if let Some(status) = hostile.page {
        record(state, call, status, "error-page", None, None);
        return Some(html_page(status, "nginx"));
    }
    if hostile.redirect {
        record(state, call, 302, "redirect", None, None);
        let location = "https://moved.example.com/v1beta/models/gemini:generateContent?key=SHOULD-NOT-SHOW";
        return Some((StatusCode::FOUND, [(header::LOCATION, location)], "").into_response());
    }
    None
}

/// What happens to a generated (and billed) answer on its way back: a gateway's error page
/// instead, or the answer transformed (escaped, broken, as a URL, inflated usage), or sent
/// compressed. `Err` is the response to send as it is.
pub(crate) fn after_model(
    state: &MockState,
    hostile: &Hostile,
    call: &Call,
    mut answer: Answer,
    client: &Client,
    rng: &mut rand::rngs::StdRng,
) -> Result<Answer, Box<Response>> {
    let roll: f64 = rng.random();
    let random_gateway = hostile.gateway.is_none() && answer.has_image && roll < state.config.faults.gateway_timeout;
    let gateway = match hostile.gateway {
        Some(g) if call.nth < g.times => Some(g),
        Some(_) => None,
        None => random_gateway.then_some(Gateway { status: 504, json: false, times: EVERY_TIME }),
    };
    if let Some(g) = gateway {
        record(state, call, g.status, "gateway", None, Some(&answer));
        return Err(Box::new(if g.json { foreign_json(g.status) } else { html_page(g.status, "gateway") }));
    }
    if hostile.huge_usage {
        answer.rest = inflate_usage(&answer.rest);
    }
    // Rolled only when asked for, so the other faults' sequences stay as they were.
    let rate = state.config.faults.broken_image;
    let random_broken = hostile.broken.is_none() && answer.has_image && rate > 0.0 && rng.random::<f64>() < rate;
    if let Some((kind, times)) = hostile.broken
        && call.nth < times
        && answer.has_image
    {
        break_image(&mut answer, kind);
    } else if random_broken {
        break_image(&mut answer, Broken::Truncated);
    }
    if let Some(mode) = hostile.file_data
        && answer.has_image
    {
        as_file_uri(&mut answer, mode, &client.host, &call.fp_hex, call.nth);
    }
    if let Some(escape) = hostile.escape {
        escape_body(&mut answer, escape);
    }
    if let Some(encoding) = hostile.encoding {
        record(state, call, 200, answer.outcome, None, Some(&answer));
        return Err(Box::new(compressed(&answer, encoding)));
    }
    Ok(answer)
}

/// Counts the outcomes of this module in the emulator's stats (the billed ones add usage).
pub(crate) fn count(stats: &mut Stats, outcome: &str, answer: Option<&Answer>) {
    let Some(a) = answer else { return };
    match outcome {
        "gateway" => {
            stats.gateway_billed += 1;
            stats.undelivered_usage.add(&a.usage);
        }
        "broken-image" => {
            stats.broken_images += 1;
            stats.usage.add(&a.usage);
        }
        "file-data" => {
            stats.file_images += 1;
            stats.usage.add(&a.usage);
        }
        _ => {}
    }
}

/// Outcomes after which the model had generated an image, and billed it.
const BILLED_IMAGE: &[&str] = &["image", "dropped", "truncated", "gateway", "broken-image", "file-data"];

impl Stats {
    /// How many times each request body (by fingerprint) was generated and billed as an image.
    pub fn billed_images(&self) -> std::collections::BTreeMap<String, u64> {
        self.fingerprints
            .iter()
            .map(|(fp, log)| {
                (fp.clone(), log.events.iter().filter(|e| BILLED_IMAGE.contains(&e.outcome.as_str())).count() as u64)
            })
            .collect()
    }

    /// Images billed more than once for one request body: the sum of every extra.
    pub fn images_billed_again(&self) -> u64 {
        self.billed_images().values().map(|n| n.saturating_sub(1)).sum()
    }
}

/// `GET /_mock/files/{name}`: an image handed out as a `fileData` URL.
pub(crate) async fn download(State(state): State<std::sync::Arc<MockState>>, Path(name): Path<String>) -> Response {
    let Some((key, label, truncated)) = parse_file_name(&name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    state.stats().file_downloads += 1;
    let mut bytes = full_bytes(&state.images.get(key), &label);
    if truncated {
        bytes.truncate(bytes.len() / 2);
    }
    let mime = if key.jpeg { "image/jpeg" } else { "image/png" };
    ([(header::CONTENT_TYPE, mime)], bytes).into_response()
}

/// `W-H-STYLE-JPEG-PAD-LABEL[-t]`: everything needed to draw the image again.
fn file_name(key: ImageKey, label: &str, truncated: bool) -> String {
    let jpeg = u8::from(key.jpeg);
    let t = if truncated { "-t" } else { "" };
    format!("{}-{}-{}-{jpeg}-{}-{label}{t}", key.width, key.height, key.style, key.pad_to)
}

fn parse_file_name(name: &str) -> Option<(ImageKey, String, bool)> {
    let (name, truncated) = name.strip_suffix("-t").map_or((name, false), |n| (n, true));
    let mut parts = name.splitn(6, '-');
    let mut number = || parts.next().and_then(|p| p.parse::<usize>().ok());
    let (width, height, style, jpeg, pad_to) = (number()?, number()?, number()?, number()?, number()?);
    let label = parts.next()?.to_owned();
    let key = ImageKey { width: width as u32, height: height as u32, style: style as u32, jpeg: jpeg == 1, pad_to };
    Some((key, label, truncated))
}

/// Where the image part starts in an answer's head: `{"inlineData":{"mimeType":"…","data":"`.
const INLINE: &str = "{\"inlineData\":{\"mimeType\":\"";

/// The image part becomes `{"fileData":{"mimeType":…,"fileUri":"http://HOST/_mock/files/…"}`.
fn as_file_uri(answer: &mut Answer, mode: FileData, host: &str, fp_hex: &str, nth: u32) {
    let (Some(key), Some(at)) = (answer.image_key, answer.head.rfind(INLINE)) else { return };
    let mime_end = answer.head[at + INLINE.len()..].find('"').map_or(answer.head.len(), |i| at + INLINE.len() + i);
    let mime = answer.head[at + INLINE.len()..mime_end].to_owned();
    let label = format!("{fp_hex}_{nth}");
    let url = format!("http://{host}/_mock/files/{}", file_name(key, &label, mode == FileData::Truncated));
    answer.head.truncate(at);
    answer.head.push_str(&format!("{{\"fileData\":{{\"mimeType\":\"{mime}\",\"fileUri\":\"{url}"));
    answer.image_b64 = None;
    answer.outcome = "file-data";
}

/// Cuts the image in half (its base64 still well-formed) or changes one byte of it.
fn break_image(answer: &mut Answer, kind: Broken) {
    let Some((head, tail)) = answer.image_b64.take() else { return };
    let b64 = match kind {
        Broken::Truncated => head.slice(..head.len() / 2 / 4 * 4),
        Broken::Crc => {
            let mut text = head.to_vec();
            text.extend_from_slice(tail.as_bytes());
            let mut bytes = STANDARD.decode(&text).unwrap_or_default();
            let middle = bytes.len() / 2;
            if let Some(b) = bytes.get_mut(middle) {
                *b ^= 0x5a;
            }
            Bytes::from(STANDARD.encode(bytes))
        }
    };
    answer.image_b64 = Some((b64, String::new()));
    answer.outcome = "broken-image";
}

/// Escapes `/` (and `+`) where JSON allows but does not ask for it.
fn escape_body(answer: &mut Answer, escape: Escape) {
    let apply = |text: &str| match escape {
        Escape::Slash => text.replace('/', "\\/"),
        Escape::Unicode => text.replace('/', "\\u002F").replace('+', "\\u002b"),
    };
    answer.head = apply(&answer.head);
    answer.rest = apply(&answer.rest);
    if let Some((head, tail)) = answer.image_b64.take() {
        answer.image_b64 = Some((Bytes::from(apply(&String::from_utf8_lossy(&head))), apply(&tail)));
    }
}

/// Replaces the `usageMetadata` object with one that claims `u64::MAX` candidate tokens.
fn inflate_usage(rest: &str) -> String {
    let key = "\"usageMetadata\":";
    let Some(start) = rest.find(key).map(|i| i + key.len()) else { return rest.to_owned() };
    let mut depth = 0;
    let mut end = start;
    for (i, c) in rest[start..].char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    end = start + i + 1;
                    break;
                }
            }
            _ => {}
        }
    }
    let huge = format!(
        "{{\"promptTokenCount\":12,\"candidatesTokenCount\":{max},\"totalTokenCount\":{max},\"candidatesTokensDetails\":[{{\"modality\":\"IMAGE\",\"tokenCount\":{max}}}]}}",
        max = u64::MAX
    );
    format!("{}{huge}{}", &rest[..start], &rest[end..])
}

/// The whole answer compressed, with `Content-Encoding` and the compressed length.
fn compressed(answer: &Answer, encoding: Encoding) -> Response {
    let body = answer.to_bytes();
    let (bytes, name) = match encoding {
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = encoder.write_all(&body);
            (encoder.finish().unwrap_or_default(), "gzip")
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut writer = brotli::CompressorWriter::new(&mut out, 64 << 10, 4, 22);
                let _ = writer.write_all(&body);
            }
            (out, "br")
        }
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .header(header::CONTENT_ENCODING, name)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A gateway's own error page, as nginx or Cloudflare write them.
fn html_page(status: u16, server: &str) -> Response {
    let reason = match status {
        413 => "Request Entity Too Large",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Error",
    };
    let page = if (520..=527).contains(&status) {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head>\n<title>api.example.com | {status}: A timeout occurred</title>\n<meta charset=\"UTF-8\" />\n</head>\n<body>\n<div id=\"cf-wrapper\"><h1>A timeout occurred <span>Error code {status}</span></h1>\n<p>The origin web server timed out responding to this request.</p></div>\n</body>\n</html>\n"
        )
    } else {
        format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
        )
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (code, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// A gateway's JSON that is not a `google.rpc.Status` (as AWS API Gateway writes it).
fn foreign_json(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
    (code, [(header::CONTENT_TYPE, "application/json")], "{\"message\": \"Endpoint request timed out\"}")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{Broken, Encoding, Escape, FileData, Hostile, file_name, inflate_usage, parse_file_name};
    use crate::mock::images::ImageKey;

    #[test]
    fn directives_parse() {
        let mut h = Hostile::default();
        assert!(h.apply("gateway", Some("524x2")));
        assert!(h.apply("escape", Some("unicode")));
        assert!(h.apply("broken", Some("crcx1")));
        assert!(h.apply("encoding", Some("br")));
        assert!(h.apply("file-data", Some("truncated")));
        assert!(!h.apply("fail", Some("503")));
        let g = h.gateway.unwrap();
        assert_eq!((g.status, g.json, g.times), (524, false, 2));
        assert_eq!(h.escape, Some(Escape::Unicode));
        assert_eq!(h.broken, Some((Broken::Crc, 1)));
        assert_eq!(h.encoding, Some(Encoding::Brotli));
        assert_eq!(h.file_data, Some(FileData::Truncated));
    }

    #[test]
    fn file_names_carry_the_image() {
        let key = ImageKey { width: 512, height: 288, style: 3, jpeg: true, pad_to: 1000 };
        let name = file_name(key, "abcd_0", true);
        assert_eq!(parse_file_name(&name), Some((key, "abcd_0".to_owned(), true)));
    }

    #[test]
    fn usage_is_inflated_in_place() {
        let rest = r#""}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"promptTokensDetails":[{"modality":"TEXT","tokenCount":3}]},"modelVersion":"m"}"#;
        let out = inflate_usage(rest);
        assert!(out.contains("18446744073709551615"));
        assert!(out.ends_with(r#","modelVersion":"m"}"#), "{out}");
        assert!(!out.contains("promptTokensDetails"));
    }
}
