//! Images of realistic size (the emulator pads its PNGs to ~1.5 MB at 1K) take the streaming
//! path: split from the JSON as they arrive, decoded block by block into a temp file, hashed on
//! the way. What lands must be exactly what was sent, whatever the faults.

use nanobatch::mock::{FaultRates, MockConfig};

use crate::support::{Emulator, Workspace, assert_code, images, stderr, temp_files};

const MANIFEST: &str = r#"
version: 1
retry: { attempts: 6, initial: 20ms, max: 50ms }
jobs:
  flash:
    model: gemini-3.1-flash-image-preview
    vars:
      - { sku: A }
      - { sku: B }
      - { sku: C }
      - { sku: D }
    key: sku
    prompt: "product {{ sku }}"
    sizes: ["1:1@1K", "16:9@1K"]
  pro:
    model: gemini-3-pro-image-preview
    prompt: "a pro picture"
    sizes: ["4:3@1K", "1:1@2K"]
"#;

fn padded(faults: FaultRates) -> MockConfig {
    MockConfig { pad_per_megapixel: 1_450_000, pad_cap: 3_000_000, jpeg_rate: 0.5, faults, ..MockConfig::default() }
}

#[test]
fn large_images_stream_to_disk_intact_through_lost_and_cut_responses() {
    let ws = Workspace::new();
    ws.write("m.yaml", MANIFEST);
    let faults = FaultRates { drop: 0.15, truncate: 0.25, error_503: 0.1, ..FaultRates::default() };
    let emulator = Emulator::start(padded(faults));
    let out = ws.run(&emulator, "m.yaml", &["-j", "4"]);
    assert_code(&out, 0);
    let stats = emulator.stats();
    assert!(stats.truncated + stats.dropped > 0, "the faults did not fire");

    let files = images(&ws.out());
    assert_eq!(files.len(), 10);
    let mut largest = 0;
    for record in ws.task_records().iter().filter(|r| r["status"] == "succeeded") {
        let output = &record["outputs"][0];
        let path = ws.out().join(output["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        largest = largest.max(bytes.len());
        assert_eq!(bytes.len() as u64, output["bytes"].as_u64().unwrap());
        let blake3 = blake3::hash(&bytes).to_hex().to_string();
        assert_eq!(blake3, output["blake3"].as_str().unwrap(), "{}", path.display());
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.out().join(output["sidecar"].as_str().unwrap())).unwrap())
                .unwrap();
        assert_eq!(sidecar["blake3"], output["blake3"]);
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (output["width"].as_u64().unwrap() as u32, output["height"].as_u64().unwrap() as u32)
        );
    }
    assert!(largest > 1_000_000, "images were not padded to a realistic size ({largest} bytes)");
    assert!(temp_files(ws.path()).is_empty(), "{:?}", temp_files(ws.path()));
    assert!(stats.repeated_successes().is_empty());
}

/// A full disk in the middle of a streamed image: a clean fatal error (exit 2) naming the place,
/// no partial file, and a later run on a bigger disk finishes without paying twice.
#[cfg(target_os = "linux")]
#[test]
fn a_disk_that_fills_mid_image_is_a_clean_error() {
    if !crate::resume::nix_is_root() {
        return;
    }
    let ws = Workspace::new();
    let Some(guard) = crate::resume::small_tmpfs(&ws, "2500k") else { return };
    let mnt = guard.0.clone();
    ws.write("m.yaml", MANIFEST);
    let emulator = Emulator::start(padded(FaultRates::default()));
    let out = ws.cmd(Some(&emulator)).args(["run", "m.yaml", "-o", "small/out", "-j", "1"]).output().unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("small/out"), "{err}");
    assert!(err.contains("No space left") || err.contains("disk is full"), "{err}");
    assert!(temp_files(&mnt).is_empty(), "{:?}", temp_files(&mnt));
    let status = ws.cmd(None).args(["status", "small/out", "--json"]).output().unwrap();
    assert_code(&status, 0);
    // The image that did not fit was paid for: the journal knows.
    let report = ws.cmd(None).args(["report", "small/out", "--json"]).output().unwrap();
    assert_code(&report, 0);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert!(report["totals"]["cost_usd"]["actual"].as_f64().unwrap() > 0.0, "{}", report["totals"]);
    drop(guard);
}
