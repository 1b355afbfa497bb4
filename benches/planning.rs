//! Planning: a manifest of 1,000,000 tasks (a CSV of 250,000 rows × 4 sizes), each example
//! manifest, and the fingerprint of one task. Peak memory of the 1M plan is measured by
//! `benches/e2e.py --only plan` (`/usr/bin/time` around `nanobatch plan`), not here.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use nanobatch::plan::fingerprint::{FieldHasher, combine};

const BIG_MANIFEST: &str = r#"
version: 1
defaults:
  model: gemini-3.1-flash-image-preview
jobs:
  catalogue:
    vars: products.csv
    key: sku
    prompt: "A studio photo of a {{ color }} {{ name }} on white"
    sizes: ["1:1@1K", "16:9@1K", "4:5@2K", "9:16@512"]
"#;

/// Writes the 1M-task manifest and its CSV into `dir`.
pub fn million_task_manifest(dir: &Path) -> PathBuf {
    use std::io::Write;
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("products.csv")).unwrap());
    writeln!(csv, "sku,name,color").unwrap();
    for i in 0..250_000 {
        writeln!(csv, "SKU-{i:07},product {i},{}", ["red", "blue", "green"][i % 3]).unwrap();
    }
    csv.flush().unwrap();
    let path = dir.join("catalogue.yaml");
    std::fs::write(&path, BIG_MANIFEST).unwrap();
    path
}

fn plan(path: &Path) -> usize {
    let manifest = nanobatch::manifest::load(path).unwrap();
    nanobatch::plan::expand(&manifest).unwrap().len()
}

fn bench_planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests");
    for name in ["catalogue", "fan-out", "model-comparison", "multi-turn"] {
        let path = examples.join(format!("{name}.yaml"));
        group.bench_function(name, |b| b.iter(|| plan(black_box(&path))));
    }
    let dir = tempfile::tempdir().unwrap();
    let big = million_task_manifest(dir.path());
    assert_eq!(plan(&big), 1_000_000);
    group.sample_size(10);
    group.bench_function("1M-tasks", |b| b.iter(|| plan(black_box(&big))));
    group.finish();
}

fn bench_fingerprint(c: &mut Criterion) {
    let prompt = "A studio photo of a red product 12345 on white, soft shadow, 85mm lens";
    c.bench_function("fingerprint/task", |b| {
        b.iter(|| {
            let mut p = FieldHasher::new("prompt");
            p.str(black_box(prompt)).opt_str(None);
            let mut r = FieldHasher::new("refs");
            r.str("object").str("image/png").bytes(&[7u8; 32]);
            let mut g = FieldHasher::new("config");
            g.str("gemini-3.1-flash-image-preview").str("16:9").opt_str(Some("1K")).str("IMAGE").u64(1);
            let u = FieldHasher::new("upstream");
            combine(&p.finish(), &r.finish(), &g.finish(), &u.finish())
        })
    });
}

criterion_group!(benches, bench_planning, bench_fingerprint);
criterion_main!(benches);
