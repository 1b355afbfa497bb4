//! End to end: the real binary against the emulator over loopback HTTP.

use nanobatch::catalog::Catalog;
use nanobatch::mock::MockConfig;

use crate::support::{Emulator, TEST_KEY, Workspace, assert_code, images, stderr, stdout};

const THREE_MODELS: &str = r#"
version: 1
name: three-models
defaults:
  modalities: [image]
jobs:
  flash25:
    model: gemini-2.5-flash-image
    prompt: "A banana in a spacesuit"
    sizes: ["16:9", "21:9"]
  pro:
    model: gemini-3-pro-image-preview
    prompt: "A detailed butterfly illustration"
    sizes: ["1:1@4K", "16:9@2K"]
  flash31:
    model: gemini-3.1-flash-image-preview
    vars: data/products.csv
    key: sku
    prompt: "Packshot of a {{ color }} {{ name }}"
    refs: ["refs/{{ sku }}.png"]
    sizes: ["16:9@1K", "1:8@512"]
    exclude:
      - { ratio: "1:8", key: CHR-001 }
"#;

#[test]
fn three_models_produce_exact_sizes_sidecars_and_a_consistent_report() {
    let ws = Workspace::new();
    ws.write("m.yaml", THREE_MODELS);
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);

    let catalog = Catalog::embedded();
    let report = ws.report();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2 + 2 + 11);
    for task in tasks {
        assert_eq!(task["status"], "succeeded", "{task}");
        let output = task["outputs"][0].as_str().unwrap();
        let path = ws.out().join(output);
        let bytes = std::fs::read(&path).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        let model = catalog.model(task["model"].as_str().unwrap()).unwrap();
        let want = model.pixels(task["ratio"].as_str().unwrap(), task["size"].as_str().unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), want, "{output}");
        // The sidecar sits next to the image and names the task.
        let sidecar: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(sidecar["task_id"], task["id"]);
        assert_eq!(sidecar["model"], task["model"]);
    }
    assert_eq!(images(&ws.out()).len(), 15);

    // Totals are the sum over tasks, and actual usage is what the emulator reported.
    let sum = |field: &str| -> u64 { tasks.iter().map(|t| t["tokens"]["actual"][field].as_u64().unwrap()).sum() };
    let actual = &report["totals"]["tokens"]["actual"];
    for field in ["input_text", "input_image", "output_image", "output_text", "thinking"] {
        assert_eq!(actual[field].as_u64().unwrap(), sum(field), "{field}");
    }
    let stats = emulator.stats();
    assert_eq!(actual["output_image"].as_u64().unwrap(), stats.usage.output_image);
    assert_eq!(actual["input_image"].as_u64().unwrap(), stats.usage.input_image);
    assert_eq!(actual["input_text"].as_u64().unwrap(), stats.usage.input_text);
    assert_eq!(actual["thinking"].as_u64().unwrap(), stats.usage.thoughts);
    // The estimate is exact against the emulator (it follows the catalogue's rules).
    assert_eq!(report["totals"]["tokens"]["estimated"], report["totals"]["tokens"]["actual"]);
    assert_eq!(stats.images, 15);
    assert_eq!(stats.auth_header, 15);
}

#[test]
fn query_key_auth_for_proxies() {
    let ws = Workspace::new();
    let manifest = "version: 1\nendpoint: { auth: query }\njobs:\n  a:\n    model: gemini-3.1-flash-image-preview\n    prompt: hello\n    sizes: [\"1:1@512\"]\n";
    ws.write("m.yaml", manifest);
    let config = MockConfig { api_keys: Some(vec![TEST_KEY.into()]), ..MockConfig::default() };
    let emulator = Emulator::start(config);
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let stats = emulator.stats();
    assert_eq!((stats.auth_query, stats.auth_header), (1, 0));
}

#[test]
fn a_bad_key_stops_the_run_with_the_servers_message() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        "version: 1\njobs:\n  a:\n    model: gemini-3.1-flash-image-preview\n    vars: data/products.csv\n    prompt: \"{{ name }}\"\n    sizes: [\"1:1@512\"]\n",
    );
    let config = MockConfig { api_keys: Some(vec!["the-right-key".into()]), ..MockConfig::default() };
    let emulator = Emulator::start(config);
    let out = ws.run(&emulator, "m.yaml", &["-j", "1"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("API key not valid"), "{err}");
    assert!(err.contains("resume with") || err.contains("after fixing this"), "{err}");
    // One rejected request is enough: the other five are not sent.
    assert_eq!(emulator.stats().requests, 1);
    assert!(!err.contains(TEST_KEY));
}

#[test]
fn an_unknown_model_fails_its_tasks_with_the_404_message() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        r#"
version: 1
models:
  - id: gemini-9-imaginary-image
    like: gemini-3.1-flash-image-preview
jobs:
  a:
    model: gemini-9-imaginary-image
    prompt: hello
    sizes: ["1:1@1K"]
"#,
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let report = ws.report();
    let task = &report["tasks"][0];
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error_class"], "invalid_request");
    assert!(task["error_message"].as_str().unwrap().contains("is not found for API version v1beta"), "{task}");
    assert_eq!(task["attempts"], 1, "a 404 is not retried");
}

#[test]
fn an_invalid_ratio_for_a_model_is_refused_before_anything_is_sent() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        "version: 1\njobs:\n  a:\n    model: gemini-3-pro-image-preview\n    prompt: hi\n    sizes: [\"8:1@2K\"]\n",
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("gemini-3-pro-image-preview does not accept aspect ratio 8:1"), "{err}");
    assert!(err.contains("m.yaml:6:13"), "{err}");
    assert_eq!(emulator.stats().requests, 0);
    assert!(!ws.out().exists(), "nothing written");
}

#[test]
fn the_readme_example_runs_on_the_built_in_emulator() {
    let ws = Workspace::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/catalogue.yaml");
    std::fs::copy(src, ws.path().join("catalogue.yaml")).unwrap();
    let out = ws.cmd(None).env_remove("GEMINI_API_KEY").args(["run", "catalogue.yaml", "--mock"]).output().unwrap();
    assert_code(&out, 0);
    let dir = ws.path().join("out/catalogue");
    assert_eq!(images(&dir).len(), 18);
    assert!(dir.join("report.json").exists() && dir.join("report.html").exists());
    assert!(stderr(&out).contains("18 succeeded"), "{}", stderr(&out));
    let _ = stdout(&out);
}
