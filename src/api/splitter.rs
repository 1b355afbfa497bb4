//! Splitting a `generateContent` body as it arrives, so that an image never sits in memory
//! whole: the JSON *skeleton* (everything but long `"data"` strings) is kept and parsed
//! afterwards as usual, while each long `"data"` string (an image's base64, 1–13 MB) is decoded
//! block by block into a [`BlobSink`] (a temp file next to its destination).
//!
//! In the skeleton a streamed string reads `"nanobatch-blob:N"`: not base64 (`:` and `-` are not
//! in its alphabet), so it cannot be mistaken for image data. Short `"data"` strings (under
//! [`STREAM_THRESHOLD`] bytes) stay in the skeleton and are decoded in memory.
//!
//! The scanner understands just enough JSON to find string values of a `data` key: strings,
//! their escapes, `:` after a key. Everything else is copied through untouched; whether the
//! skeleton is valid JSON is for the parser to say. A streamed string is unescaped as JSON
//! says (`\/`, `\u002F`, wherever a chunk ends): base64 needs no escape, but a gateway may
//! write them, and the image is the same.

use std::io;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::buffers::{BufferPool, Pooled};

/// What a streamed string becomes in the skeleton, followed by its index.
pub const BLOB_PREFIX: &str = "nanobatch-blob:";
/// `"data"` strings longer than this are streamed.
pub const STREAM_THRESHOLD: usize = 64 << 10;
/// Base64 decoded per block (a multiple of 4): large enough for the SIMD decoder to shine,
/// small enough to stay in cache on its way to the hash and the file.
const DECODE_BLOCK: usize = 256 << 10;

/// Decode buffers of finished responses, one per response in flight at `-j 64`.
static DECODE_BUFFERS: BufferPool = BufferPool::new(64);

const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Receives the decoded bytes of each streamed string.
pub trait BlobSink {
    /// Blob `index` begins.
    fn begin(&mut self, index: usize) -> io::Result<()>;
    /// The next decoded bytes of blob `index`.
    fn write(&mut self, index: usize, decoded: &[u8]) -> io::Result<()>;
    /// Blob `index` is complete; `valid` is false when its text was not base64.
    fn end(&mut self, index: usize, valid: bool) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Between tokens.
    Outside,
    /// Inside a string that stays in the skeleton.
    String { escape: bool },
    /// Inside a `data` string, not yet known to be long: its text is in `held`; `escape`: bytes
    /// of an escape still to come (1 after `\`, 4 after `\u`).
    Held { escape: u8 },
    /// Inside a streamed string.
    Blob { escape: Escape },
}

/// Where a streamed string is in an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After `\`.
    Backslash,
    /// After `\u` and `digits` hex digits of `value`.
    Unicode {
        digits: u8,
        value: u32,
    },
}

/// Where the scanner is relative to a `"data":` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    None,
    /// The string just closed was `"data"`.
    Data,
    /// `"data":` seen; a string now is its value.
    DataColon,
}

/// The streaming splitter; feed it chunks, then [`Splitter::finish`].
#[derive(Debug)]
pub struct Splitter {
    skeleton: Vec<u8>,
    scan: Scan,
    key: Key,
    /// Bytes of the current skeleton string matched against `data` (None: no match).
    matched: Option<usize>,
    /// The text of a `data` string until it is long enough to stream.
    held: Vec<u8>,
    /// Base64 text not yet decoded.
    pending: Vec<u8>,
    decoded: Pooled,
    blobs: usize,
    valid: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter::new()
    }
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter {
            skeleton: Vec::with_capacity(8 << 10),
            scan: Scan::Outside,
            key: Key::None,
            matched: None,
            held: Vec::new(),
            pending: Vec::new(),
            decoded: DECODE_BUFFERS.take(),
            blobs: 0,
            valid: true,
        }
    }

    /// Scans the next bytes of the body.
    pub fn feed(&mut self, mut chunk: &[u8], sink: &mut dyn BlobSink) -> io::Result<()> {
        while !chunk.is_empty() {
            let used = match self.scan {
                Scan::Outside => self.outside(chunk),
                Scan::String { escape } => self.string(chunk, escape),
                Scan::Held { escape } => self.held_text(chunk, escape, sink)?,
                Scan::Blob { escape } => self.blob(chunk, escape, sink)?,
            };
            chunk = &chunk[used..];
        }
        Ok(())
    }

    /// The skeleton, once the whole body was fed, and the number of streamed blobs. A body that
    /// ends inside a streamed string ends that blob as invalid.
    pub fn finish(mut self, sink: &mut dyn BlobSink) -> io::Result<(Vec<u8>, usize)> {
        match self.scan {
            Scan::Blob { .. } => {
                self.valid = false;
                self.close_blob(sink)?;
            }
            Scan::Held { .. } => {
                let held = std::mem::take(&mut self.held);
                self.skeleton.extend_from_slice(&held);
            }
            Scan::Outside | Scan::String { .. } => {}
        }
        Ok((std::mem::take(&mut self.skeleton), self.blobs))
    }

    fn outside(&mut self, chunk: &[u8]) -> usize {
        for (i, &b) in chunk.iter().enumerate() {
            self.skeleton.push(b);
            match b {
                b' ' | b'\n' | b'\r' | b'\t' => {}
                b':' => self.key = if self.key == Key::Data { Key::DataColon } else { Key::None },
                b'"' => {
                    if self.key == Key::DataColon {
                        self.scan = Scan::Held { escape: 0 };
                        self.held.clear();
                    } else {
                        self.scan = Scan::String { escape: false };
                        self.matched = Some(0);
                    }
                    self.key = Key::None;
                    return i + 1;
                }
                _ => self.key = Key::None,
            }
        }
        chunk.len()
    }

    fn string(&mut self, chunk: &[u8], mut escape: bool) -> usize {
        for (i, &b) in chunk.iter().enumerate() {
            self.skeleton.push(b);
            if escape {
                escape = false;
                self.matched = None;
                continue;
            }
            match b {
                b'\\' => escape = true,
                b'"' => {
                    self.key = if self.matched == Some(4) { Key::Data } else { Key::None };
                    self.scan = Scan::Outside;
                    return i + 1;
                }
                _ => {
                    self.matched = match self.matched {
                        Some(n) if n < 4 && b"data"[n] == b => Some(n + 1),
                        _ => None,
                    };
                }
            }
        }
        self.scan = Scan::String { escape };
        chunk.len()
    }

    /// A `data` string's text: held in memory until it ends (short: back into the skeleton) or
    /// grows past the threshold (long: streamed from now on, never in the middle of an escape).
    fn held_text(&mut self, chunk: &[u8], mut escape: u8, sink: &mut dyn BlobSink) -> io::Result<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            if escape > 0 {
                // `\uXXXX` has four more bytes after the `u`.
                escape = if escape == 1 && b == b'u' { 4 } else { escape - 1 };
            } else if b == b'\\' {
                escape = 1;
            } else if b == b'"' {
                let held = std::mem::take(&mut self.held);
                self.skeleton.extend_from_slice(&held);
                self.skeleton.push(b'"');
                self.scan = Scan::Outside;
                return Ok(i + 1);
            }
            self.held.push(b);
            if self.held.len() >= STREAM_THRESHOLD && escape == 0 {
                self.start_blob(sink)?;
                return Ok(i + 1);
            }
        }
        self.scan = Scan::Held { escape };
        Ok(chunk.len())
    }

    fn start_blob(&mut self, sink: &mut dyn BlobSink) -> io::Result<()> {
        sink.begin(self.blobs)?;
        self.valid = true;
        self.pending.clear();
        let held = std::mem::take(&mut self.held);
        if held.contains(&b'\\') {
            let text = self.unescape(&held);
            self.push_text(&text, sink)?;
        } else {
            self.push_text(&held, sink)?;
        }
        self.scan = Scan::Blob { escape: Escape::None };
        Ok(())
    }

    /// Held text (whole escapes only) unescaped; an escape that is not a base64 character
    /// makes the blob invalid.
    fn unescape(&mut self, held: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(held.len());
        let mut escape = Escape::None;
        for &b in held {
            if escape == Escape::None && b != b'\\' {
                out.push(b);
                continue;
            }
            let (next, char) = self.escape_step(escape, b);
            escape = next;
            out.extend(char);
        }
        out
    }

    /// One byte of an escape sequence: the state after it, and the character it completes.
    fn escape_step(&mut self, escape: Escape, b: u8) -> (Escape, Option<u8>) {
        match escape {
            Escape::None => (Escape::Backslash, None),
            Escape::Backslash => match b {
                b'/' => (Escape::None, Some(b'/')),
                b'u' => (Escape::Unicode { digits: 0, value: 0 }, None),
                _ => {
                    self.valid = false;
                    (Escape::None, None)
                }
            },
            Escape::Unicode { digits, value } => {
                let Some(digit) = char::from(b).to_digit(16) else {
                    self.valid = false;
                    return (Escape::None, None);
                };
                let value = value * 16 + digit;
                if digits < 3 {
                    return (Escape::Unicode { digits: digits + 1, value }, None);
                }
                match u8::try_from(value) {
                    Ok(c) if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') => (Escape::None, Some(c)),
                    _ => {
                        self.valid = false;
                        (Escape::None, None)
                    }
                }
            }
        }
    }

    fn blob(&mut self, chunk: &[u8], mut escape: Escape, sink: &mut dyn BlobSink) -> io::Result<usize> {
        // An escape begun in an earlier chunk ends first, a byte at a time.
        let mut start = 0;
        while escape != Escape::None && start < chunk.len() {
            let (next, char) = self.escape_step(escape, chunk[start]);
            escape = next;
            if let Some(c) = char {
                self.push_text(&[c], sink)?;
            }
            start += 1;
        }
        let rest = &chunk[start..];
        if escape != Escape::None {
            self.scan = Scan::Blob { escape };
            return Ok(chunk.len());
        }
        match memchr::memchr2(b'"', b'\\', rest) {
            None => {
                self.push_text(rest, sink)?;
                self.scan = Scan::Blob { escape: Escape::None };
                Ok(chunk.len())
            }
            Some(at) => {
                self.push_text(&rest[..at], sink)?;
                if rest[at] == b'\\' {
                    self.scan = Scan::Blob { escape: Escape::Backslash };
                } else {
                    self.close_blob(sink)?;
                    self.skeleton.extend_from_slice(format!("{BLOB_PREFIX}{}\"", self.blobs - 1).as_bytes());
                    self.scan = Scan::Outside;
                }
                Ok(start + at + 1)
            }
        }
    }

    /// Decodes base64 text as it arrives: whole quads straight from the chunk, in blocks, never
    /// copied; only the last quad (it may carry the padding that ends the string) or a partial
    /// one waits in `pending` for what follows.
    fn push_text(&mut self, mut text: &[u8], sink: &mut dyn BlobSink) -> io::Result<()> {
        if !self.valid || text.is_empty() {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let take = ((4 - self.pending.len() % 4) % 4).min(text.len());
            self.pending.extend_from_slice(&text[..take]);
            text = &text[take..];
            if text.is_empty() {
                return Ok(());
            }
            // A whole quad with more text after it: padding here is inside the string.
            if self.pending.last() == Some(&b'=') {
                self.valid = false;
                self.pending.clear();
                return Ok(());
            }
            self.decode_pending(false, sink)?;
        }
        while text.len() > 4 && self.valid {
            let whole = ((text.len() - 1) / 4 * 4).min(DECODE_BLOCK);
            self.decode_block(&text[..whole], false, sink)?;
            text = &text[whole..];
        }
        if self.valid {
            self.pending.extend_from_slice(text);
        }
        Ok(())
    }

    fn decode_pending(&mut self, last: bool, sink: &mut dyn BlobSink) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() && self.valid {
            self.decode_block(&pending, last, sink)?;
        }
        self.pending = pending;
        self.pending.clear();
        Ok(())
    }

    /// Decodes `text` and hands it to the sink, or marks the blob invalid.
    fn decode_block(&mut self, text: &[u8], last: bool, sink: &mut dyn BlobSink) -> io::Result<()> {
        let simd = base64_simd::STANDARD;
        let decoded = if text.len().is_multiple_of(4) {
            // A whole number of quads: the SIMD decoder (strict about padding, which only the
            // last block may have).
            match simd.decoded_length(text) {
                Ok(n) => {
                    // Grown, never shrunk: zeroing it again for every block cost a memset each.
                    if self.decoded.len() < n {
                        self.decoded.resize(n, 0);
                    }
                    let out = base64_simd::Out::from_slice(&mut self.decoded[..n]);
                    simd.decode(text, out).map(|d| d.len()).ok()
                }
                Err(_) => None,
            }
        } else if last {
            // A final block without its padding: the forgiving scalar decoder.
            self.decoded.clear();
            FORGIVING.decode_vec(text, &mut self.decoded).ok().map(|()| self.decoded.len())
        } else {
            None
        };
        let Some(n) = decoded else {
            self.valid = false;
            return Ok(());
        };
        sink.write(self.blobs, &self.decoded[..n])
    }

    fn close_blob(&mut self, sink: &mut dyn BlobSink) -> io::Result<()> {
        self.decode_pending(true, sink)?;
        sink.end(self.blobs, self.valid)?;
        self.blobs += 1;
        Ok(())
    }
}

/// The blob a skeleton string stands for, if it is one.
pub fn blob_index(text: &str) -> Option<usize> {
    text.strip_prefix(BLOB_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    use super::*;

    #[derive(Default)]
    struct Collect {
        blobs: Vec<(Vec<u8>, Option<bool>)>,
    }

    impl BlobSink for Collect {
        fn begin(&mut self, index: usize) -> io::Result<()> {
            assert_eq!(index, self.blobs.len());
            self.blobs.push((Vec::new(), None));
            Ok(())
        }
        fn write(&mut self, index: usize, decoded: &[u8]) -> io::Result<()> {
            self.blobs[index].0.extend_from_slice(decoded);
            Ok(())
        }
        fn end(&mut self, index: usize, valid: bool) -> io::Result<()> {
            self.blobs[index].1 = Some(valid);
            Ok(())
        }
    }

    fn split(body: &[u8], chunk: usize) -> (String, Collect) {
        let mut sink = Collect::default();
        let mut s = Splitter::new();
        for piece in body.chunks(chunk.max(1)) {
            s.feed(piece, &mut sink).unwrap();
        }
        let (skeleton, n) = s.finish(&mut sink).unwrap();
        assert_eq!(n, sink.blobs.len());
        (String::from_utf8(skeleton).unwrap(), sink)
    }

    fn image(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn body_with(parts: &str) -> String {
        format!(
            r#"{{"candidates":[{{"content":{{"parts":[{parts}]}},"finishReason":"STOP"}}],"usageMetadata":{{"totalTokenCount":3}}}}"#
        )
    }

    #[test]
    fn long_data_is_streamed_and_short_data_stays() {
        let big = image(300_000, 1);
        let small = image(100, 2);
        let parts = format!(
            r#"{{"text":"data \"data\": \"not me\""}},{{"inlineData":{{"mimeType":"image/png","data":"{}"}}}},{{"inline_data": {{"data" : "{}"}}}}"#,
            STANDARD.encode(&small),
            STANDARD.encode(&big)
        );
        let body = body_with(&parts);
        for chunk in [1, 7, 4096, body.len()] {
            let (skeleton, sink) = split(body.as_bytes(), chunk);
            assert_eq!(sink.blobs.len(), 1, "chunk {chunk}");
            assert_eq!(sink.blobs[0].0, big);
            assert_eq!(sink.blobs[0].1, Some(true));
            let value: serde_json::Value = serde_json::from_str(&skeleton).unwrap();
            let parts = &value["candidates"][0]["content"]["parts"];
            assert_eq!(parts[0]["text"], "data \"data\": \"not me\"");
            assert_eq!(parts[1]["inlineData"]["data"], STANDARD.encode(&small));
            assert_eq!(parts[2]["inline_data"]["data"], "nanobatch-blob:0");
            assert!(skeleton.len() < 1000);
        }
    }

    #[test]
    fn escaped_slashes_unpadded_ends_and_garbage() {
        let big = image(200_000, 3);
        let text = STANDARD.encode(&big);
        let escaped = text.replace('/', "\\/");
        let unpadded = text.trim_end_matches('=');
        let garbage = format!("{}!!{}", &text[..100_000], &text[100_000..]);
        // Padding ends base64: a padded quad with text after it is not an image, wherever the
        // chunks happen to split it.
        let padded_inside = format!("{}{}", STANDARD.encode(&big[..99_998]), &text[133_336..]);
        let cases = [(escaped.as_str(), true), (unpadded, true), (garbage.as_str(), false), (&padded_inside, false)];
        for (data, valid) in cases {
            let body = body_with(&format!(r#"{{"inlineData":{{"data":"{data}"}}}}"#));
            for chunk in [1, 3, 999, 1000, 4096, 65_536, body.len()] {
                let (_, sink) = split(body.as_bytes(), chunk);
                assert_eq!(sink.blobs[0].1, Some(valid), "chunk {chunk}");
                if valid {
                    assert_eq!(sink.blobs[0].0, big, "chunk {chunk}");
                }
            }
        }
    }

    #[test]
    fn a_body_cut_inside_a_blob_ends_it_invalid() {
        let text = STANDARD.encode(image(200_000, 4));
        let body = body_with(&format!(r#"{{"inlineData":{{"data":"{text}"}}}}"#));
        let (_, sink) = split(&body.as_bytes()[..150_000], 999);
        assert_eq!(sink.blobs[0].1, Some(false));
    }

    /// Base64 text written the ways JSON allows: as it is, `/` as `\/`, `/` and `+` as
    /// `\u002F`/`\u002b`, or every `every`-th character as a `\u00XX` escape.
    fn escaped(text: &str, style: u8, every: usize) -> String {
        match style % 4 {
            0 => text.to_owned(),
            1 => text.replace('/', "\\/"),
            2 => text.replace('/', "\\u002F").replace('+', "\\u002b"),
            _ => text
                .chars()
                .enumerate()
                .map(|(i, c)| if i % every.max(1) == 0 { format!("\\u{:04X}", c as u32) } else { c.to_string() })
                .collect(),
        }
    }

    #[test]
    fn escapes_that_are_not_base64_make_the_image_invalid() {
        let text = STANDARD.encode(image(100_000, 9));
        for bad in ["\\u0021", "\\n", "\\\"", "\\u00e9", "\\uZZZZ"] {
            let data = format!("{}{bad}{}", &text[..80_000], &text[80_000..]);
            let body = body_with(&format!(r#"{{"inlineData":{{"data":"{data}"}}}}"#));
            for chunk in [1, 5, 79_999, body.len()] {
                let (_, sink) = split(body.as_bytes(), chunk);
                assert_eq!(sink.blobs[0].1, Some(false), "{bad} chunk {chunk}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Every valid JSON encoding of the base64, small (left in the skeleton, unescaped by
        /// the parser) or large (streamed), however the chunks fall, gives the same image.
        #[test]
        fn every_json_encoding_of_any_size_decodes_to_the_image(
            len in 1usize..120_000, chunk in 1usize..70_000, style: u8, every in 1usize..50, seed: u8
        ) {
            let img = image(len, seed);
            let text = escaped(&STANDARD.encode(&img), style, every);
            let body = body_with(&format!(r#"{{"inlineData":{{"mimeType":"image/png","data":"{text}"}}}}"#));
            let (skeleton, sink) = split(body.as_bytes(), chunk);
            let reply = crate::api::response::parse_reply(skeleton.as_bytes()).unwrap();
            let part = reply.image.as_ref().unwrap();
            let decoded = match blob_index(part.base64().unwrap()) {
                Some(i) => {
                    prop_assert_eq!(sink.blobs[i].1, Some(true));
                    sink.blobs[i].0.clone()
                }
                None => part.decode().unwrap(),
            };
            prop_assert_eq!(decoded, img);
        }

        #[test]
        fn any_chunking_gives_the_same_result(len in 60_000usize..200_000, chunk in 1usize..70_000, seed: u8) {
            let big = image(len, seed);
            let text = STANDARD.encode(&big);
            // Escaped slashes half of the time: a `\/` may straddle any chunk boundary.
            let text = if seed % 2 == 0 { text.replace('/', "\\/") } else { text };
            let body = body_with(&format!(r#"{{"inlineData":{{"data":"{text}"}},"thoughtSignature":"c2ln"}}"#));
            let (skeleton, sink) = split(body.as_bytes(), chunk);
            let (whole, _) = split(body.as_bytes(), body.len());
            prop_assert_eq!(&skeleton, &whole);
            let streamed = text.len() >= STREAM_THRESHOLD;
            prop_assert_eq!(sink.blobs.len(), usize::from(streamed));
            if streamed {
                prop_assert_eq!(&sink.blobs[0].0, &big);
            } else {
                prop_assert_eq!(skeleton, body);
            }
        }
    }
}
