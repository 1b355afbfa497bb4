//! Multi-turn conversations: each step sends the whole history, the model's turns replayed byte
//! for byte with their thought signatures; the emulator refuses a history without them, as the
//! real API does.

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code};

#[test]
fn steps_replay_the_history_with_signatures_and_the_example_runs() {
    let ws = Workspace::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/multi-turn.yaml");
    std::fs::copy(src, ws.path().join("multi-turn.yaml")).unwrap();
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "multi-turn.yaml", &[]);
    assert_code(&out, 0);
    let report = ws.report();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    assert!(tasks.iter().all(|t| t["status"] == "succeeded"));
    // Step 3 changes the size to 1:1.
    let step3 = tasks.iter().find(|t| t["id"] == "infographic/photosynthesis/16:9@1K/s3").unwrap();
    assert_eq!(step3["ratio"], "1:1");
    let img = image::open(ws.out().join(step3["outputs"][0].as_str().unwrap())).unwrap();
    assert_eq!((img.width(), img.height()), (1024, 1024));
    // The history grows: step 3 carries two earlier images and both earlier prompts.
    let step1 = tasks.iter().find(|t| t["id"] == "infographic/photosynthesis/16:9@1K/s1").unwrap();
    assert_eq!(step1["tokens"]["actual"]["input_image"], 0);
    assert_eq!(step3["tokens"]["actual"]["input_image"], 2 * 560);
    assert_eq!(step3["tokens"]["actual"], step3["tokens"]["estimated"], "the estimate follows the history");
    // Only the steps that a later step continues keep their model turn.
    let turns = std::fs::read_dir(ws.out().join(".nanobatch/turns")).unwrap().count();
    assert_eq!(turns, 4);
    assert_eq!(emulator.stats().by_status.get("400"), None);
}

#[test]
fn a_history_without_its_signature_is_refused_like_the_real_api() {
    let ws = Workspace::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests/multi-turn.yaml");
    std::fs::copy(src, ws.path().join("multi-turn.yaml")).unwrap();
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "multi-turn.yaml", &[]), 0);
    // Strip the signatures from one stored model turn and make its next step run again.
    let turns = ws.out().join(".nanobatch/turns");
    let mut stripped = false;
    for entry in std::fs::read_dir(&turns).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if value["parts"].as_array().unwrap().iter().any(|p| p["inlineData"].is_object()) && !stripped {
            for part in value["parts"].as_array_mut().unwrap() {
                part.as_object_mut().unwrap().remove("thoughtSignature");
            }
            std::fs::write(entry.path(), value.to_string()).unwrap();
            stripped = true;
        }
    }
    assert!(stripped);
    for step in ["s2", "s3"] {
        for key in ["photosynthesis", "water-cycle"] {
            let _ = std::fs::remove_file(ws.out().join(format!("infographic/{key}-16x9-1K-{step}.png")));
            let _ = std::fs::remove_file(ws.out().join(format!("infographic/{key}-1x1-1K-{step}.png")));
        }
    }
    let out = ws.run(&emulator, "multi-turn.yaml", &[]);
    assert_code(&out, 1);
    let report = ws.report();
    let refused: Vec<_> = report["tasks"].as_array().unwrap().iter().filter(|t| t["status"] == "failed").collect();
    assert!(!refused.is_empty());
    assert!(refused[0]["error_message"].as_str().unwrap().contains("missing a thought_signature"), "{}", refused[0]);
}
