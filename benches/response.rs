//! The client's CPU per image response: JSON, base64, verification, hashing and writing.
//!
//! Bodies are the emulator's own (a real PNG padded to the realistic size of each resolution),
//! in the shape of `tests/fixtures/gemini/response.*.json`.

use std::hint::black_box;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nanobatch::api::response::parse_reply;
use nanobatch::api::splitter::{BlobSink, Splitter};
use nanobatch::checkpoint::store::{OutputStore, PendingImage};
use nanobatch::digest::{self, ContentHasher};
use nanobatch::media::{self, Integrity};
use nanobatch::mock::images::{ImageCache, ImageKey, full_bytes};
use nanobatch::plan::fingerprint::sha256_hex;

/// What a run's sink does with a streamed image: hash, check it whole, keep the head, write (a
/// `PendingImage`: direct I/O from an aligned staging buffer where the file system allows it).
struct FileSink {
    file: PendingImage,
    hasher: ContentHasher,
    integrity: Integrity,
    head: Vec<u8>,
}

impl BlobSink for FileSink {
    fn begin(&mut self, _index: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&mut self, _index: usize, decoded: &[u8]) -> std::io::Result<()> {
        if self.head.len() < 65536 {
            self.head.extend_from_slice(&decoded[..decoded.len().min(65536 - self.head.len())]);
        }
        self.hasher.update(decoded);
        self.integrity.update(decoded);
        self.file.write(decoded).map_err(|e| std::io::Error::other(e.to_string()))
    }
    fn end(&mut self, _index: usize, valid: bool) -> std::io::Result<()> {
        assert!(valid);
        Ok(())
    }
}

/// (label, width, height, padded file size)
const SIZES: &[(&str, u32, u32, usize)] =
    &[("1K-1.5MB", 1024, 1024, 1_500_000), ("2K-6MB", 2048, 2048, 6_000_000), ("4K-10MB", 4096, 4096, 10_000_000)];

fn response_body(png: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Here is the product on white."},
                {"inlineData": {"mimeType": "image/png", "data": STANDARD.encode(png)}, "thoughtSignature": "c2ln"}
            ]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 1290, "totalTokenCount": 1304,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]},
        "modelVersion": "gemini-3.1-flash-image-preview",
        "responseId": "bench"
    }))
    .unwrap()
}

/// Everything the client does with a 200 body before the write.
fn verify(body: &[u8]) -> (usize, (u32, u32), String) {
    let reply = parse_reply(body).unwrap();
    let bytes = reply.image.as_ref().unwrap().decode().unwrap();
    Integrity::check(&bytes).unwrap();
    let kind = media::sniff(&bytes).unwrap();
    let dims = media::dimensions(&bytes, kind).unwrap();
    (bytes.len(), dims, digest::content_hash(&bytes))
}

fn bench_response(c: &mut Criterion) {
    let cache = ImageCache::default();
    let dir = tempfile::tempdir().unwrap();
    let store = OutputStore::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("response");
    group.sample_size(30);
    for &(label, width, height, pad_to) in SIZES {
        let png = full_bytes(&cache.get(ImageKey { width, height, style: 1, jpeg: false, pad_to }), label);
        let body = response_body(&png);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_json", label), &body, |b, body| {
            b.iter(|| parse_reply(black_box(body)).unwrap().image.unwrap().base64().map(str::len))
        });
        let reply = parse_reply(&body).unwrap();
        let part = reply.image.as_ref().unwrap();
        group.bench_with_input(BenchmarkId::new("base64_decode", label), part, |b, part| {
            b.iter(|| black_box(part).decode().unwrap().len())
        });
        group.bench_with_input(BenchmarkId::new("base64_decode_scalar", label), part, |b, part| {
            b.iter(|| black_box(part).decode_scalar().unwrap().len())
        });
        group.bench_with_input(BenchmarkId::new("sha256", label), &png, |b, png| b.iter(|| sha256_hex(black_box(png))));
        group.bench_with_input(BenchmarkId::new("blake3", label), &png, |b, png| {
            b.iter(|| digest::content_hash(black_box(png)))
        });
        // Whether the image is whole: every PNG chunk's CRC through IEND (the run does it block by
        // block as the image is written; whole here).
        group.bench_with_input(BenchmarkId::new("integrity", label), &png, |b, png| {
            b.iter(|| Integrity::check(black_box(png)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("verify", label), &body, |b, body| b.iter(|| verify(black_box(body))));
        let path = dir.path().join(format!("{label}.png"));
        // Before: the whole body buffered, parsed, decoded by a scalar decoder into a second
        // buffer, hashed (SHA-256, as then), written.
        group.bench_with_input(BenchmarkId::new("buffered_scalar_path", label), &body, |b, body| {
            b.iter(|| {
                let reply = parse_reply(body).unwrap();
                let bytes = reply.image.as_ref().unwrap().decode_scalar().unwrap();
                let kind = media::sniff(&bytes).unwrap();
                black_box(media::dimensions(&bytes, kind));
                black_box(sha256_hex(&bytes));
                std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
            })
        });
        // After: what a run does, the body split as it arrives (16 KiB frames, as TLS records
        // come), each block decoded, hashed and written while in cache, the skeleton parsed last.
        group.bench_with_input(BenchmarkId::new("streamed_path", label), &body, |b, body| {
            b.iter(|| {
                let file = store.begin_image(label).unwrap();
                let mut sink =
                    FileSink { file, hasher: ContentHasher::new(), integrity: Integrity::new(), head: Vec::new() };
                let mut splitter = Splitter::new();
                for frame in body.chunks(16 << 10) {
                    splitter.feed(frame, &mut sink).unwrap();
                }
                let (skeleton, _) = splitter.finish(&mut sink).unwrap();
                let reply = parse_reply(&skeleton).unwrap();
                assert!(reply.image.is_some());
                let kind = media::sniff(&sink.head).unwrap();
                black_box(media::dimensions(&sink.head, kind));
                black_box(digest::finish(&sink.hasher));
                sink.integrity.finish().unwrap();
                sink.file.complete().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_response);
criterion_main!(benches);
