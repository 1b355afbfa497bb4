//! The checkpoint journal: appending task records (one group commit of 64, with its fsync, as
//! a run does) and reading a journal of 100,000 records back (the first step of every resume).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nanobatch::catalog::{Tier, TokenCounts, Usd};
use nanobatch::checkpoint::journal::{self, JournalWriter};
use nanobatch::checkpoint::records::{OutputRecord, Record, TaskRecord, TaskStatus};

fn task_record(i: usize) -> Record {
    Record::task(TaskRecord {
        id: format!("catalogue/SKU-{i:07}/1:1@1K"),
        fp: format!("{:064x}", i as u128 * 0x9E37_79B9_7F4A_7C15),
        parts: "0011223344556677-8899aabbccddeeff-0011223344556677-8899aabbccddeeff".into(),
        status: TaskStatus::Succeeded,
        attempts: 1,
        outputs: vec![OutputRecord {
            path: format!("catalogue/SKU-{i:07}-1x1-1K.png"),
            sidecar: format!("catalogue/SKU-{i:07}-1x1-1K.json"),
            blake3: format!("{:064x}", i as u128 * 31),
            sha256: String::new(),
            bytes: 1_523_456,
            mtime_ns: 1_764_000_000_000_000_000,
            mime: "image/png".into(),
            width: 1024,
            height: 1024,
        }],
        turn: None,
        usage: TokenCounts { input_text: 14, input_image: 0, output_image: 1120, output_text: 0, thinking: 120 },
        cost_usd: Usd::from_dollars(0.0672),
        tier: Tier::Interactive,
        finish_reason: Some("STOP".into()),
        error: None,
        model_version: Some("gemini-3.1-flash-image-preview".into()),
        response_id: Some("resp".into()),
        text: None,
        size_mismatch: None,
        usage_reported: None,
        grounding: Vec::new(),
        latency_ms: 12_345,
        at: "2026-11-25T12:00:00Z".into(),
    })
}

fn bench_journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (0..64).map(task_record).collect();
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(64));
    let path = dir.path().join("append.jsonl");
    let mut writer = JournalWriter::open(&path).unwrap();
    group.bench_function("append_64_and_commit", |b| {
        b.iter(|| {
            for r in &records {
                writer.append(black_box(r));
            }
            writer.commit().unwrap();
        })
    });
    group.bench_function("append_64_no_commit", |b| {
        b.iter_batched(
            || JournalWriter::open(&dir.path().join("scratch.jsonl")).unwrap(),
            |mut w| {
                for r in &records {
                    w.append(black_box(r));
                }
                w
            },
            BatchSize::SmallInput,
        )
    });

    let big = dir.path().join("big.jsonl");
    let mut writer = JournalWriter::open(&big).unwrap();
    for i in 0..100_000 {
        writer.append(&task_record(i));
    }
    writer.commit().unwrap();
    let bytes = std::fs::read(&big).unwrap();
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(10);
    group.bench_function("parse_100k", |b| b.iter(|| journal::parse(&big, black_box(&bytes)).unwrap().records.len()));
    group.finish();
}

criterion_group!(benches, bench_journal);
criterion_main!(benches);
