//! Hostile input, secrets, paths and resource limits: each protection has a test that fails
//! without it.

use std::path::Path;

use nanobatch::mock::{FaultRates, MockConfig};

use crate::support::{Emulator, Workspace, assert_code, nanobatch, stderr};

/// A key nobody could mistake for anything else.
const KEY: &str = "AIzaSyNANOBATCH-RECOGNISABLE-SECRET-0042";

fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_key_never_appears_in_output_files_or_on_the_terminal() {
    let ws = Workspace::new();
    let manifest = r#"
version: 1
endpoint: { auth: query }
retry: { attempts: 2, initial: 10ms, max: 20ms }
defaults:
  model: gemini-3.1-flash-image-preview
jobs:
  ok:
    vars: data/products.csv
    key: sku
    prompt: "a {{ color }} {{ name }}"
    sizes: ["1:1@512"]
  failing:
    prompt: "bad [[mock:fail=400x9]]"
    sizes: ["1:1@512"]
  lost:
    prompt: "lost [[mock:drop=9]]"
    sizes: ["1:1@512"]
  unsafe:
    prompt: "unsafe [[mock:safety]]"
    sizes: ["1:1@512"]
"#;
    ws.write("m.yaml", manifest);
    let config = MockConfig {
        api_keys: Some(vec![KEY.into()]),
        faults: FaultRates { error_503: 0.2, ..FaultRates::default() },
        ..MockConfig::default()
    };
    let emulator = Emulator::start(config);
    let mut outputs = Vec::new();
    // A run with successes and every kind of failure, with debug logs.
    let out = ws
        .cmd(Some(&emulator))
        .env("GEMINI_API_KEY", KEY)
        .env("NANOBATCH_LOG", "debug")
        .args(["-v", "run", "m.yaml", "-o", "out"])
        .output()
        .unwrap();
    assert_code(&out, 1);
    outputs.push(out);
    // Connection refused: reqwest's error names the URL, `?key=` and all.
    let refused = ws
        .cmd(None)
        .env("GEMINI_API_KEY", KEY)
        .env("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
        .env("NANOBATCH_LOG", "debug")
        .args(["-v", "run", "m.yaml", "-o", "out", "--retry-failed", "--json"])
        .output()
        .unwrap();
    outputs.push(refused);
    // A wrong key: the server's error comes back.
    let wrong = ws
        .cmd(Some(&emulator))
        .env("GEMINI_API_KEY", "AIzaSyNANOBATCH-WRONG-KEY-BUT-ALSO-SECRET")
        .args(["run", "m.yaml", "-o", "out2"])
        .output()
        .unwrap();
    outputs.push(wrong);
    for cmd in [vec!["status", "out"], vec!["report", "out", "--json"], vec!["status", "out", "--json"]] {
        outputs.push(ws.cmd(None).env("GEMINI_API_KEY", KEY).args(&cmd).output().unwrap());
    }
    for (i, o) in outputs.iter().enumerate() {
        assert!(!contains(&o.stdout, KEY.as_bytes()), "stdout of command {i} leaks the key");
        assert!(!contains(&o.stderr, KEY.as_bytes()), "stderr of command {i} leaks the key:\n{}", stderr(o));
        assert!(!contains(&o.stderr, b"WRONG-KEY-BUT-ALSO-SECRET"), "stderr of command {i} leaks a key");
    }
    let files = all_files(ws.path());
    assert!(files.len() > 10);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, KEY.as_bytes()), "{} leaks the key", f.display());
    }
    // The runs did hit the failure paths.
    let all = format!("{}{}", stderr(&outputs[1]), String::from_utf8_lossy(&outputs[1].stdout));
    assert!(all.contains("key=[redacted]") || all.contains("could not connect"), "{all}");
}

#[test]
fn csv_values_can_never_write_outside_the_output_directory() {
    let ws = Workspace::new();
    let long = "x".repeat(300);
    let csv = format!(
        "key,name\n\"../../escape\",a\n\"..\\\\..\\\\win\",b\n/abs/path,c\nCON,d\n\"nul\u{0}byte\",e\n{long},f\n\"a/../../b\",g\n\".hidden\",h\n"
    );
    ws.write("rows.csv", &csv);
    ws.write(
        "m.yaml",
        "version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    vars: rows.csv\n    prompt: \"{{ name }}\"\n    sizes: [\"1:1@512\"]\n    output: \"{{ key }}/{{ key }}\"\n",
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let root = ws.out().canonicalize().unwrap();
    let images = crate::support::images(&ws.out());
    assert_eq!(images.len(), 8);
    for image in images {
        let real = image.canonicalize().unwrap();
        assert!(real.starts_with(&root), "{} escaped", real.display());
        let name = real.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(".."), "{name}");
        assert!(name.split('/').all(|c| !c.starts_with('.') && c.len() <= 150), "{name}");
    }
    // Nothing was written next to the workspace.
    let parent: Vec<_> = std::fs::read_dir(ws.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(parent.len(), 5, "{parent:?}");
}

#[test]
fn links_from_a_model_response_are_only_http_and_always_escaped() {
    let ws = Workspace::new();
    ws.write("m.yaml", "version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    prompt: \"a chart [[mock:evil-grounding]]\"\n    sizes: [\"1:1@512\"]\n");
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    let html = std::fs::read_to_string(ws.out().join("report.html")).unwrap();
    assert!(!html.contains("javascript:"), "a javascript: link was kept");
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("<img src=x onerror"));
    assert!(
        html.contains("href=\"https:&#x2f;&#x2f;example.com&#x2f;ok?q=%3Cb%3E\""),
        "the http link is kept, encoded"
    );
}

#[test]
fn a_response_larger_than_the_limit_is_refused_by_its_declared_size() {
    let ws = Workspace::new();
    ws.write("m.yaml", "version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    prompt: \"big [[mock:huge]]\"\n    sizes: [\"1:1@512\"]\n");
    let emulator = Emulator::start(MockConfig::default());
    let started = std::time::Instant::now();
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "it did not read 500 MB");
    let report = ws.report();
    assert_eq!(report["tasks"][0]["error_class"], "response_too_large");
}

#[test]
fn a_reference_image_too_large_for_a_request_is_refused_at_validation() {
    let ws = Workspace::new();
    let mut big = std::fs::read(ws.path().join("refs/MUG-001.png")).unwrap();
    big.resize(21 << 20, 0);
    std::fs::write(ws.path().join("refs/huge.png"), big).unwrap();
    ws.write("m.yaml", "version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    prompt: hi\n    refs: [refs/huge.png]\n");
    let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("the limit for inline images is 20 MB"), "{err}");
    assert!(err.contains("m.yaml:6:12"), "{err}");
}

#[test]
fn a_csv_with_a_10_mb_field_is_refused_without_reading_it_into_a_prompt() {
    let ws = Workspace::new();
    let mut csv = String::from("key,name\nA,");
    csv.push_str(&"z".repeat(10 << 20));
    csv.push_str("\nB,fine\n");
    ws.write("big.csv", &csv);
    ws.write("m.yaml", "version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    vars: big.csv\n    prompt: \"{{ name }}\"\n");
    let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("value of `name` is 10485760 bytes; the limit is 65536"), "{err}");
    assert!(err.contains("big.csv:2:2"), "{err}");
}

#[test]
fn reference_urls_of_any_scheme_are_refused() {
    let ws = Workspace::new();
    for url in ["file:///etc/passwd", "javascript:alert(1)", "s3://bucket/x.png", "ftp://h/x.png"] {
        ws.write("m.yaml", &format!("version: 1\njobs:\n  j:\n    model: gemini-3.1-flash-image-preview\n    prompt: hi\n    refs: [\"{url}\"]\n"));
        let out = nanobatch().current_dir(ws.path()).args(["validate", "m.yaml"]).output().unwrap();
        assert_code(&out, 3);
    }
}
