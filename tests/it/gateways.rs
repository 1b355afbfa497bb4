//! What gateways and proxies do to answers, against the emulator's hostile modes: error pages
//! after the model billed, redirects, escaped JSON, broken images inside a well-formed 200,
//! compressed bodies, images handed over as a URL. Each test fails on a client that trusts them.

use std::time::Duration;

use nanobatch::api::splitter::STREAM_THRESHOLD;
use nanobatch::mock::MockConfig;

use crate::faults::{FAST, manifest, task};
use crate::support::{Emulator, Workspace, assert_code, images, stderr};

// ---- #22.1: a gateway's 5xx after the model ran is possibly billed

#[test]
fn gateway_timeouts_after_billing_count_against_the_budget() {
    let ws = Workspace::new();
    let prompts: Vec<String> = (0..12).map(|i| format!("p{i} [[mock:gateway=504]]")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    ws.write("m.yaml", &manifest(&refs, FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &["--max-cost", "0.30", "-j", "3"]);
    assert_code(&out, 4);
    let stats = emulator.stats();
    let report = ws.report();
    let estimate = task(&report, 0)["cost_usd"]["estimated"].as_f64().unwrap();
    let billed = stats.gateway_billed as f64 * estimate;
    assert!(stats.gateway_billed > 0);
    assert!(
        billed <= 0.30 + 1e-9,
        "the server billed {} images (${billed:.4}) past a $0.30 budget",
        stats.gateway_billed
    );
    let possibly = report["totals"]["cost_usd"]["possibly_billed"].as_f64().unwrap();
    assert!(possibly >= billed - 1e-9, "the report counts ${possibly:.4} of ${billed:.4} possibly billed");
    assert_eq!(report["totals"]["possibly_billed_attempts"].as_u64(), Some(stats.gateway_billed));
    assert!(stderr(&out).contains("504 Gateway Time-out"), "{}", stderr(&out));
    // Reruns with the same budget send nothing: the meter remembers.
    for _ in 0..3 {
        assert_code(&ws.run(&emulator, "m.yaml", &["--max-cost", "0.30"]), 4);
    }
    assert_eq!(emulator.stats().gateway_billed, stats.gateway_billed);
}

#[test]
fn gateway_errors_of_every_kind_are_possibly_billed_and_retried_but_the_apis_own_5xx_are_not() {
    let ws = Workspace::new();
    let prompts = [
        "a [[mock:gateway=504x1]]",
        "b [[mock:gateway=524x1]]",
        "c [[mock:gateway=502x1]]",
        "d [[mock:gateway-json=504x1]]",
        "e [[mock:fail=504x1]]",
        "f [[mock:fail=503x1]]",
        "g [[mock:fail=500x1]]",
    ];
    ws.write("m.yaml", &manifest(&prompts, FAST));
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 0);
    let report = ws.report();
    for i in 0..7 {
        let t = task(&report, i);
        assert_eq!((t["status"].as_str(), t["attempts"].as_u64()), (Some("succeeded"), Some(2)), "{t}");
        let possibly = t["cost_usd"]["possibly_billed"].as_f64().unwrap();
        // The gateways' answers and the API's own DEADLINE_EXCEEDED came after the model
        // started; a 503 or 500 in the API's own shape came before it.
        assert_eq!(possibly > 0.0, i < 5, "task {i}: {t}");
    }
    let unknown: Vec<_> =
        ws.journal().into_iter().filter(|r| r["t"] == "attempt" && r["class"] == "outcome_unknown").collect();
    assert_eq!(unknown.len(), 5);
    let err = stderr(&out);
    for title in [
        "504 Gateway Time-out",
        "api.example.com | 524: A timeout occurred",
        "502 Bad Gateway",
        "Endpoint request timed out",
    ] {
        assert!(err.contains(title), "{title}: {err}");
    }
    assert!(!err.contains("<html"), "{err}");
}

// ---- #22.11: errors say what happened

#[test]
fn error_pages_and_redirects_say_what_they_are() {
    let ws = Workspace::new();
    ws.write(
        "m.yaml",
        &manifest(
            &["a [[mock:page=413]]", "b [[mock:redirect]]", "c [[mock:gateway=502]]"],
            "{ attempts: 2, initial: 10ms, max: 20ms }",
        ),
    );
    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "m.yaml", &[]);
    assert_code(&out, 1);
    let report = ws.report();
    let message = |i| task(&report, i)["error_message"].as_str().unwrap().to_owned();
    assert!(message(0).contains("413 Request Entity Too Large"), "{}", message(0));
    assert_eq!(task(&report, 0)["attempts"], 1, "a 413 page is not retried");
    assert!(
        message(1)
            .contains("redirected to https://moved.example.com/v1beta/models/gemini:generateContent?key=[redacted]"),
        "{}",
        message(1)
    );
    assert!(message(1).contains("does not follow redirects"), "{}", message(1));
    assert!(message(2).contains("502 Bad Gateway"), "{}", message(2));
    let err = stderr(&out);
    assert!(!err.contains("<html") && !err.contains("SHOULD-NOT-SHOW"), "{err}");
    assert!(!err.contains("HTTP 413: HTTP 413"), "{err}");
}

#[test]
fn after_the_first_ctrl_c_no_retry_is_announced_for_requests_that_will_not_be_sent() {
    let ws = Workspace::new();
    let prompts: Vec<String> = (0..4).map(|i| format!("p{i} [[mock:delay=1500ms,drop=1]]")).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    ws.write("m.yaml", &manifest(&refs, FAST));
    let emulator = Emulator::start(MockConfig::default());
    let child = ws.spawn_run(&emulator, "m.yaml", &["-j", "4"]);
    std::thread::sleep(Duration::from_millis(600));
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 130);
    let err = stderr(&out);
    assert!(!err.contains("retrying in"), "{err}");
    assert_eq!(err.matches("not retried now (stopping)").count(), 4, "{err}");
    assert_eq!(emulator.stats().requests, 4);
    let attempts: Vec<_> = ws.journal().into_iter().filter(|r| r["t"] == "attempt").collect();
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|r| r.get("retry_in_ms").is_none()), "{attempts:?}");
    // The next run sends them.
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(emulator.stats().requests, 8);
    assert_eq!(images(&ws.out()).len(), 4);
}

// ---- #22.7: compressed bodies

#[test]
fn compressed_bodies_are_accepted_small_and_large() {
    for pad in [0, 1_500_000] {
        let ws = Workspace::new();
        ws.write("m.yaml", &manifest(&["a [[mock:encoding=gzip]]", "b [[mock:encoding=br]]"], FAST));
        let emulator = Emulator::start(MockConfig { pad_per_megapixel: pad, ..MockConfig::default() });
        let out = ws.run(&emulator, "m.yaml", &[]);
        assert_code(&out, 0);
        let report = ws.report();
        for i in 0..2 {
            assert_eq!(task(&report, i)["attempts"], 1, "{}", task(&report, i));
        }
        for image in images(&ws.out()) {
            let decoded = image::open(&image).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (512, 512));
            assert!(pad == 0 || std::fs::metadata(&image).unwrap().len() > 300_000);
        }
        assert_eq!(emulator.stats().requests, 2);
    }
}

// ---- #22.5: JSON that escapes what it need not

#[test]
fn escaped_json_decodes_to_the_image_small_and_large() {
    // A 512px JPEG (18 KB) stays in the skeleton and is unescaped by the JSON parser; a 512px
    // PNG (60-120 KB) and padded ones (390 KB) are streamed and unescaped by the splitter.
    for pad in [0, 1_500_000] {
        let ws = Workspace::new();
        let prompts = [
            "a [[mock:jpeg,escape=slash]]",
            "b [[mock:jpeg,escape=unicode]]",
            "c [[mock:escape=slash]]",
            "d [[mock:escape=unicode]]",
        ];
        ws.write("m.yaml", &manifest(&prompts, FAST));
        let emulator = Emulator::start(MockConfig { pad_per_megapixel: pad, ..MockConfig::default() });
        let out = ws.run(&emulator, "m.yaml", &[]);
        assert_code(&out, 0);
        let report = ws.report();
        for i in 0..4 {
            let t = task(&report, i);
            assert_eq!((t["status"].as_str(), t["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{t}");
            let image = ws.out().join(t["outputs"][0].as_str().unwrap());
            assert_eq!(image::open(&image).unwrap().width(), 512);
            let base64_len = std::fs::metadata(&image).unwrap().len().div_ceil(3) * 4;
            let streamed = base64_len >= STREAM_THRESHOLD as u64;
            assert_eq!(streamed, i >= 2, "{} is on the path meant", image.display());
        }
        assert_eq!(emulator.stats().requests, 4);
    }
}

// ---- #22.6: a broken image inside a well-formed 200

#[test]
fn a_truncated_or_damaged_image_is_a_billed_failure_retried_and_never_kept() {
    for pad in [0, 1_500_000] {
        let ws = Workspace::new();
        let prompts = [
            "a [[mock:broken=truncatedx1]]",
            "b [[mock:broken=crcx1]]",
            "c [[mock:jpeg,broken=truncatedx1]]",
            "d [[mock:broken=truncated]]",
        ];
        ws.write("m.yaml", &manifest(&prompts, "{ attempts: 2, initial: 10ms, max: 20ms }"));
        let emulator = Emulator::start(MockConfig { pad_per_megapixel: pad, ..MockConfig::default() });
        let out = ws.run(&emulator, "m.yaml", &[]);
        assert_code(&out, 1);
        let report = ws.report();
        for i in 0..3 {
            let t = task(&report, i);
            assert_eq!((t["status"].as_str(), t["attempts"].as_u64()), (Some("succeeded"), Some(2)), "{t}");
            let (actual, estimated) =
                (t["cost_usd"]["actual"].as_f64().unwrap(), t["cost_usd"]["estimated"].as_f64().unwrap());
            assert!(actual > 1.9 * estimated, "both answers were billed: {t}");
        }
        let failed = task(&report, 3);
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error_class"], "broken_image");
        assert!(failed["error_message"].as_str().unwrap().contains("cut short"), "{failed}");
        assert!(failed["cost_usd"]["actual"].as_f64().unwrap() > 0.0, "{failed}");
        assert!(failed.get("outputs").is_none(), "{failed}");
        assert_eq!(emulator.stats().broken_images, 5);
        let kept = images(&ws.out());
        assert_eq!(kept.len(), 3, "{kept:?}");
        for image in kept {
            assert_eq!(image::open(&image).unwrap().to_rgb8().width(), 512, "{} decodes whole", image.display());
        }
        assert!(stderr(&out).contains("broken_image"), "{}", stderr(&out));
    }
}

// ---- #22.7: an image given as a URL

#[test]
fn an_image_given_as_a_url_is_downloaded_and_verified() {
    for pad in [0, 1_500_000] {
        let ws = Workspace::new();
        ws.write(
            "m.yaml",
            &manifest(
                &["a [[mock:file-data]]", "b [[mock:file-data=truncated]]"],
                "{ attempts: 2, initial: 10ms, max: 20ms }",
            ),
        );
        let emulator = Emulator::start(MockConfig { pad_per_megapixel: pad, ..MockConfig::default() });
        let out = ws.run(&emulator, "m.yaml", &[]);
        assert_code(&out, 1);
        let report = ws.report();
        let ok = task(&report, 0);
        assert_eq!((ok["status"].as_str(), ok["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{ok}");
        let image = ws.out().join(ok["outputs"][0].as_str().unwrap());
        assert_eq!(image::open(&image).unwrap().width(), 512);
        let cut = task(&report, 1);
        assert_eq!(
            (cut["status"].as_str(), cut["error_class"].as_str()),
            (Some("failed"), Some("broken_image")),
            "{cut}"
        );
        assert_eq!(cut["attempts"], 2);
        let stats = emulator.stats();
        assert_eq!((stats.file_images, stats.file_downloads), (3, 3));
        assert_eq!(images(&ws.out()).len(), 1);
        assert!(crate::support::temp_files(&ws.out()).is_empty());
    }
}
