//! Reports: a golden report.json from a fixed emulator run, the estimate/actual equalities, and
//! report.html opened in a real browser (Debian's chromium, headless).

use std::path::Path;
use std::process::Command;

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code};

const GOLDEN: &str = r#"
version: 1
name: golden
description: "A fixed run for the report's golden test"
retry: { attempts: 3, initial: 20ms, max: 50ms }
defaults:
  modalities: [image]
jobs:
  packshot:
    model: gemini-3.1-flash-image-preview
    vars: data/products.csv
    key: sku
    prompt: "packshot of a {{ color }} {{ name }}"
    refs: ["refs/{{ sku }}.png"]
    sizes: ["1:1@1K", "4:5@512"]
    exclude: [{ key: CHR-001 }, { key: LMP-001 }, { key: VAS-001 }]
  hero:
    model: gemini-3-pro-image-preview
    vars:
      - { key: ok, subject: "a banana" }
      - { key: flaky, subject: "a lemon [[mock:fail=503x1]]" }
      - { key: unsafe, subject: "a durian [[mock:safety]]" }
    prompt: "hero image of {{ subject }}"
    sizes: ["16:9@2K"]
  edit:
    model: gemini-3.1-flash-image-preview
    refs: [{ from: hero }]
    prompt: "make it night"
    sizes: ["16:9@512"]
"#;

/// Replaces values that change from run to run.
fn scrub(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match k.as_str() {
                    "started" | "finished" | "generated" | "output_dir" | "manifest_sha256" | "tool_version" => {
                        *v = serde_json::Value::String("[scrubbed]".into())
                    }
                    "latency_ms" | "p50" | "p95" | "max" if !v.is_object() => *v = serde_json::json!(0),
                    _ => scrub(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

#[test]
fn golden_report() {
    let ws = Workspace::new();
    ws.write("golden.yaml", GOLDEN);
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "golden.yaml", &["-j", "2"]);
    assert_code(&out, 1);
    let mut report = ws.report();

    // Estimated equals the catalogue computation; actual equals the emulator's usage.
    let stats = emulator.stats();
    let actual = &report["totals"]["tokens"]["actual"];
    assert_eq!(actual["output_image"].as_u64().unwrap(), stats.usage.output_image);
    assert_eq!(actual["input_image"].as_u64().unwrap(), stats.usage.input_image);
    assert_eq!(actual["input_text"].as_u64().unwrap(), stats.usage.input_text);
    assert_eq!(actual["thinking"].as_u64().unwrap(), stats.usage.thoughts);
    let packshot_1k =
        report["tasks"].as_array().unwrap().iter().find(|t| t["id"] == "packshot/MUG-001/1:1@1K").unwrap();
    // 1120 output tokens at $60/M; one 1120-token input image and the prompt's text at $0.50/M;
    // 120 thinking tokens at $3/M.
    let prompt_tokens = ("packshot of a sage green ceramic mug".len() as f64 / 4.0).ceil();
    let hand = 1120.0 * 60.0 / 1e6 + (1120.0 + prompt_tokens) * 0.5 / 1e6 + 120.0 * 3.0 / 1e6;
    assert!((packshot_1k["cost_usd"]["estimated"].as_f64().unwrap() - hand).abs() < 1e-9);
    assert_eq!(packshot_1k["cost_usd"]["estimated"], packshot_1k["cost_usd"]["actual"]);

    scrub(&mut report);
    insta::assert_snapshot!("golden_report", serde_json::to_string_pretty(&report).unwrap());
}

fn chromium() -> Option<String> {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Some(candidate.to_owned());
        }
    }
    None
}

/// The DOM after scripts ran, as chromium headless sees it.
fn dump_dom(html: &Path) -> Option<String> {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("NANOBATCH_SKIP_BROWSER").is_some(),
            "chromium is not installed (apt-get install chromium); set NANOBATCH_SKIP_BROWSER=1 to skip"
        );
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--window-size=1400,30000",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn attribute(dom: &str, name: &str) -> Option<u64> {
    let start = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[start..].split('"').next()?.parse().ok()
}

const HOSTILE: &str = r#"
version: 1
name: "hostile <b>name</b>"
defaults:
  model: gemini-3.1-flash-image-preview
  modalities: [image]
jobs:
  catalogue:
    vars:
      - { key: "A1", name: "<script>document.title='PWNED'</script>" }
      - { key: "A2", name: "<img src=x onerror=\"document.title='PWNED'\">" }
      - { key: "A3", name: "plain mug" }
    prompt: "a {{ name }}"
    sizes: ["1:1@512", "16:9@512"]
"#;

#[test]
fn the_html_report_loads_every_thumbnail_and_shows_hostile_text_as_text() {
    let ws = Workspace::new();
    ws.write("m.yaml", HOSTILE);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    let html = ws.out().join("report.html");
    let source = std::fs::read_to_string(&html).unwrap();
    assert!(!source.contains("<script>document.title"), "the CSV value is escaped in the file");
    assert!(source.contains("&lt;script&gt;document.title="));
    let Some(dom) = dump_dom(&html) else { return };
    assert_eq!(attribute(&dom, "data-images-expected"), Some(6));
    assert_eq!(attribute(&dom, "data-images-loaded"), Some(6), "every thumbnail loaded");
    assert_eq!(attribute(&dom, "data-images-broken"), Some(0));
    assert!(
        dom.contains("<title>hostile &lt;b&gt;name&lt;/b&gt; — nanobatch report</title>"),
        "the injected script did not run"
    );
    assert!(!dom.contains("PWNED</title>"));
    assert!(dom.contains("&lt;script&gt;document.title='PWNED'&lt;/script&gt;"), "shown as text");
    assert!(dom.contains("id=\"totals\""));
    assert!(dom.contains("<b>6</b><span>succeeded</span>"), "totals are shown");
}

#[test]
fn a_large_report_references_thumbnails_instead_of_embedding_them() {
    let ws = Workspace::new();
    let rows: String = (0..60).map(|i| format!("      - {{ key: \"item-{i:03}\" }}\n")).collect();
    ws.write(
        "m.yaml",
        &format!(
            "version: 1\ndefaults:\n  model: gemini-3.1-flash-image-preview\n  modalities: [image]\njobs:\n  grid:\n    vars:\n{rows}    prompt: \"item {{{{ key }}}}\"\n    sizes: [\"1:1@512\", \"16:9@512\"]\n"
        ),
    );
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &["-j", "16"]), 0);
    let html = ws.out().join("report.html");
    let source = std::fs::read_to_string(&html).unwrap();
    assert!(!source.contains("data:image/jpeg;base64"), "120 images: thumbnails are files");
    assert!(source.contains(".nanobatch&#x2f;thumbs&#x2f;") || source.contains(".nanobatch/thumbs/"));
    assert!(std::fs::metadata(&html).unwrap().len() < 2 << 20);
    let Some(dom) = dump_dom(&html) else { return };
    assert_eq!(attribute(&dom, "data-images-loaded"), Some(120));
    assert_eq!(attribute(&dom, "data-images-broken"), Some(0));
}

#[test]
fn report_regenerates_from_the_journal() {
    let ws = Workspace::new();
    ws.write("m.yaml", HOSTILE);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &["--no-html"]), 0);
    assert!(!ws.out().join("report.html").exists());
    let before = ws.report();
    std::fs::remove_file(ws.out().join("report.json")).unwrap();
    let out = ws.cmd(None).args(["report", "out"]).output().unwrap();
    assert_code(&out, 0);
    let mut after = ws.report();
    let mut before = before;
    scrub(&mut after);
    scrub(&mut before);
    assert_eq!(after, before);
    assert!(ws.out().join("report.html").exists());
}
