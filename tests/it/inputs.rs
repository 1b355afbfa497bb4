//! Inputs as teams have them: the provider's spellings of sizes, spreadsheet exports.

use nanobatch::mock::MockConfig;

use crate::support::{Emulator, Workspace, assert_code, stderr};

/// The provider's documentation writes `512px` and `1K`; people write `0.5K`, `1k`, ` 2k `.
const RESPELLED: &str = r#"
version: 1
name: spellings
defaults: { modalities: [image] }
jobs:
  flash:
    model: gemini-3.1-flash-image-preview
    prompt: A lighthouse at dusk
    sizes: ["21:9@512px", "1:1@0.5K", "16:9@1k", { ratio: "4:5", size: " 2k " }]
  old:
    model: gemini-2.5-flash-image
    prompt: A sailing boat
    sizes: ["3:2@1k"]
"#;

/// The same manifest in the catalogue's spelling (what b540450 accepted).
const CANONICAL: &str = r#"
version: 1
name: spellings
defaults: { modalities: [image] }
jobs:
  flash:
    model: gemini-3.1-flash-image-preview
    prompt: A lighthouse at dusk
    sizes: ["21:9@512", "1:1@512", "16:9@1K", { ratio: "4:5", size: 2K }]
  old:
    model: gemini-2.5-flash-image
    prompt: A sailing boat
    sizes: ["3:2@1K"]
"#;

/// Fingerprints of CANONICAL's tasks as b540450 computed them: a spelling the tool accepted
/// before must keep its fingerprint, or finished work would run (and be paid for) again.
const CANONICAL_FINGERPRINTS: &[(&str, &str)] = &[
    ("flash/16:9@1K", "ddd34f6738ecdcc6167e9d94021362b5de8e5980f3a402c94b97eb43dfbd4648"),
    ("flash/1:1@512", "24d947c6ee13da445658d72b90bba6611751da336fdd915bc237377210820831"),
    ("flash/21:9@512", "fe96044797c315dbd98a315a6a23e9293b715efa1b989334a8785796f41192b2"),
    ("flash/4:5@2K", "17e4efe7e2700b171d2c3ef7152d1bcfb03130ccf6a7025648904e20ad7d248f"),
    ("old/3:2@1K", "368ff0ab0f51d8bb59352f6a4f985be35f314a3c37370b2d0b68e44a4c78c99f"),
];

fn journal_fingerprints(ws: &Workspace) -> Vec<(String, String)> {
    let mut fps: Vec<(String, String)> = ws
        .task_records()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["fp"].as_str().unwrap().to_owned()))
        .collect();
    fps.sort();
    fps
}

#[test]
fn the_providers_size_spellings_are_accepted_normalised_and_noted() {
    let ws = Workspace::new();
    ws.write("respelled.yaml", RESPELLED);
    ws.write("canonical.yaml", CANONICAL);

    for verb in ["validate", "plan"] {
        let out = ws.cmd(None).args([verb, "respelled.yaml"]).output().unwrap();
        assert_code(&out, 0);
        let err = stderr(&out);
        for (written, name) in [("512px", "512"), ("0.5K", "512"), ("1k", "1K"), ("2k", "2K")] {
            assert!(err.contains(&format!("note: image size `{written}` is read as `{name}`")), "{verb}: {err}");
        }
        // `1k` is written in two places; one note says so.
        assert_eq!(err.matches("`1k` is read as").count(), 1, "{err}");
        assert!(err.contains("here and in one more place"), "{err}");
    }

    let emulator = Emulator::start(MockConfig::default());
    let out = ws.run(&emulator, "respelled.yaml", &[]);
    assert_code(&out, 0);
    // The emulator refuses `1k` and `512px` as the API does: five images mean the wire values.
    assert_eq!(emulator.stats().images, 5);
    let report = ws.report();
    let mut sizes: Vec<String> =
        report["tasks"].as_array().unwrap().iter().map(|t| t["size"].as_str().unwrap().to_owned()).collect();
    sizes.sort();
    assert_eq!(sizes, ["1K", "1K", "2K", "512", "512"]);

    // The canonical spelling is the same work: nothing is sent again.
    let respelled_fps = journal_fingerprints(&ws);
    let out = ws.run(&emulator, "canonical.yaml", &[]);
    assert_code(&out, 0);
    assert_eq!(emulator.stats().images, 5, "{}", stderr(&out));
    assert_eq!(journal_fingerprints(&ws), respelled_fps);
    let golden: Vec<(String, String)> =
        CANONICAL_FINGERPRINTS.iter().map(|(id, fp)| ((*id).to_owned(), (*fp).to_owned())).collect();
    assert_eq!(respelled_fps, golden, "fingerprints of sizes spelled as before must not change");
}

#[test]
fn sizes_that_are_really_wrong_are_still_refused() {
    let ws = Workspace::new();
    for (sizes, model, expect) in [
        (r#"["1:1@3K"]"#, "gemini-3.1-flash-image-preview", "does not offer image size 3K"),
        (r#"["1:1@512px"]"#, "gemini-3-pro-image-preview", "does not offer image size 512"),
        (r#"["1:1@2k"]"#, "gemini-2.5-flash-image", "does not offer image size 2K"),
        (r#"["1:1@1.5K"]"#, "gemini-3.1-flash-image-preview", "`1.5K` is not an image size"),
        (r#"["1:1@1K", "1:1@1k"]"#, "gemini-3.1-flash-image-preview", "size `1:1@1K` is listed twice"),
    ] {
        let manifest = format!("version: 1\njobs:\n  a:\n    model: {model}\n    prompt: hi\n    sizes: {sizes}\n");
        ws.write("m.yaml", &manifest);
        let out = ws.cmd(None).args(["validate", "m.yaml"]).output().unwrap();
        assert_code(&out, 3);
        assert!(stderr(&out).contains(expect), "{sizes} on {model}: {}", stderr(&out));
    }
}
