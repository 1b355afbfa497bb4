//! The planner: expansion counts, stable ids and fingerprints, and fingerprints that change
//! exactly when an input changes.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use proptest::prelude::*;

use super::{Plan, expand};
use crate::manifest::{Manifest, load_str};

const MODELS: [&str; 3] = ["gemini-2.5-flash-image", "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"];
const RATIOS: [&str; 5] = ["1:1", "16:9", "4:5", "21:9", "9:16"];

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let png = include_bytes!("../../examples/manifests/refs/brand-style.png");
    std::fs::create_dir_all(dir.path().join("refs")).unwrap();
    std::fs::write(dir.path().join("refs/a.png"), png).unwrap();
    let mut other = png.to_vec();
    other.extend_from_slice(b"another image");
    std::fs::write(dir.path().join("refs/b.png"), other).unwrap();
    dir
}

fn load(dir: &Path, text: &str) -> (Manifest, Plan) {
    let manifest = load_str(&dir.join("m.yaml"), text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    let plan = expand(&manifest).unwrap_or_else(|d| panic!("{d}\n{text}"));
    (manifest, plan)
}

#[derive(Debug, Clone)]
struct Axes {
    rows: usize,
    prompts: usize,
    ratios: usize,
    models: usize,
    repeat: u32,
    ref_sets: usize,
    /// (model index, ratio index) pairs to exclude.
    excludes: Vec<(usize, usize)>,
}

fn axes() -> impl Strategy<Value = Axes> {
    (
        1usize..5,
        1usize..3,
        1usize..4,
        1usize..4,
        1u32..3,
        1usize..3,
        proptest::collection::vec((0usize..3, 0usize..4), 0..3),
    )
        .prop_map(|(rows, prompts, ratios, models, repeat, ref_sets, excludes)| Axes {
            rows,
            prompts,
            ratios,
            models,
            repeat,
            ref_sets,
            excludes,
        })
}

fn manifest_text(a: &Axes) -> String {
    let mut m = String::from("version: 1\njobs:\n  j:\n    vars:\n");
    for r in 0..a.rows {
        m.push_str(&format!("      - {{ key: \"k{r}\", color: \"c{r}\" }}\n"));
    }
    m.push_str("    prompts:\n");
    for p in 0..a.prompts {
        m.push_str(&format!("      p{p}: \"prompt {p} in {{{{ color }}}}\"\n"));
    }
    m.push_str("    ref_sets:\n");
    for s in 0..a.ref_sets {
        m.push_str(&format!("      s{s}: [refs/{}.png]\n", if s == 0 { "a" } else { "b" }));
    }
    m.push_str(&format!("    models: [{}]\n", MODELS[..a.models].join(", ")));
    let sizes: Vec<String> = RATIOS[..a.ratios].iter().map(|r| format!("\"{r}\"")).collect();
    m.push_str(&format!("    sizes: [{}]\n", sizes.join(", ")));
    m.push_str(&format!("    repeat: {}\n", a.repeat));
    let excludes: Vec<String> = a
        .excludes
        .iter()
        .filter(|(mi, ri)| *mi < a.models && *ri < a.ratios)
        .map(|(mi, ri)| format!("      - {{ model: {}, ratio: \"{}\" }}\n", MODELS[*mi], RATIOS[*ri]))
        .collect();
    if !excludes.is_empty() {
        m.push_str("    exclude:\n");
        for e in excludes {
            m.push_str(&e);
        }
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn expansion_is_the_product_of_the_axes_minus_exclusions(a in axes()) {
        let dir = workspace();
        let (_, plan) = load(dir.path(), &manifest_text(&a));
        let excluded: HashSet<(usize, usize)> = a.excludes.iter().copied().filter(|(m, r)| *m < a.models && *r < a.ratios).collect();
        let combos = (0..a.models).flat_map(|m| (0..a.ratios).map(move |r| (m, r))).filter(|c| !excluded.contains(c)).count();
        let expected = a.rows * a.prompts * a.ref_sets * combos * a.repeat as usize;
        prop_assert_eq!(plan.tasks.len(), expected);
        let ids: HashSet<&str> = plan.tasks.iter().map(|t| &*t.id).collect();
        prop_assert_eq!(ids.len(), plan.tasks.len(), "ids are unique");
        let fps: HashSet<_> = plan.tasks.iter().map(|t| t.fingerprint).collect();
        prop_assert_eq!(fps.len(), plan.tasks.len(), "fingerprints are unique");
    }

    #[test]
    fn ids_and_fingerprints_are_stable(a in axes()) {
        let dir = workspace();
        let text = manifest_text(&a);
        let (_, one) = load(dir.path(), &text);
        let (_, two) = load(dir.path(), &text);
        let key = |p: &Plan| p.tasks.iter().map(|t| (t.id.to_string(), t.fingerprint, t.output.to_string())).collect::<Vec<_>>();
        prop_assert_eq!(key(&one), key(&two));
    }
}

fn fingerprints(plan: &Plan) -> BTreeMap<String, super::fingerprint::Fingerprint> {
    plan.tasks.iter().map(|t| (t.id.to_string(), t.fingerprint)).collect()
}

const BASE: &str = r#"
version: 1
description: first
limits: { concurrency: 4 }
retry: { attempts: 3 }
jobs:
  a:
    model: gemini-3.1-flash-image-preview
    vars: [{ key: x, color: red }, { key: y, color: blue }]
    prompt: "a {{ color }} mug"
    refs: [refs/a.png]
    sizes: ["1:1@1K", "16:9@1K"]
  b:
    model: gemini-3.1-flash-image-preview
    refs: [{ from: a, size: "1:1@1K" }]
    prompt: "the mug outdoors"
    sizes: ["4:5@1K"]
"#;

/// The tasks whose fingerprint differs between two plans.
fn changed(before: &Plan, after: &Plan) -> Vec<String> {
    let b = fingerprints(before);
    let a = fingerprints(after);
    let mut out: Vec<String> = a.iter().filter(|(id, fp)| b.get(*id) != Some(*fp)).map(|(id, _)| id.clone()).collect();
    out.sort();
    out
}

#[test]
fn fingerprints_change_exactly_when_an_input_changes() {
    let dir = workspace();
    let (_, base) = load(dir.path(), BASE);

    // Things that do not affect an image: nothing changes.
    for edit in [
        BASE.replace("description: first", "description: second"),
        BASE.replace("concurrency: 4", "concurrency: 9"),
        BASE.replace("attempts: 3", "attempts: 5"),
        BASE.replace("    sizes: [\"4:5@1K\"]", "    sizes: [\"4:5@1K\"]\n    output: \"renamed/{{ key }}\""),
    ] {
        let (_, plan) = load(dir.path(), &edit);
        assert_eq!(changed(&base, &plan), Vec::<String>::new(), "{edit}");
    }

    // A row's variable: that row's tasks and what uses them.
    let (_, plan) = load(dir.path(), &BASE.replace("color: red", "color: green"));
    assert_eq!(changed(&base, &plan), ["a/x/16:9@1K", "a/x/1:1@1K", "b/x/4:5@1K"]);

    // The prompt of b only.
    let (_, plan) = load(dir.path(), &BASE.replace("the mug outdoors", "the mug on a beach"));
    assert_eq!(changed(&base, &plan), ["b/x/4:5@1K", "b/y/4:5@1K"]);

    // A setting of a: a's tasks, and b through the image edge.
    let (_, plan) =
        load(dir.path(), &BASE.replace("    refs: [refs/a.png]", "    refs: [refs/a.png]\n    temperature: 0.5"));
    assert_eq!(changed(&base, &plan).len(), 6);

    // The bytes of a reference image.
    let mut png = std::fs::read(dir.path().join("refs/a.png")).unwrap();
    png.extend_from_slice(b"trailing");
    std::fs::write(dir.path().join("refs/a.png"), &png).unwrap();
    let (_, plan) = load(dir.path(), BASE);
    assert_eq!(changed(&base, &plan).len(), 6);
    let parts_before = base.tasks.iter().find(|t| &*t.id == "a/x/1:1@1K").unwrap().parts;
    let parts_after = plan.tasks.iter().find(|t| &*t.id == "a/x/1:1@1K").unwrap().parts;
    assert_eq!(parts_before.changes(&parts_after), ["reference image changed"]);
    let b_before = base.tasks.iter().find(|t| &*t.id == "b/x/4:5@1K").unwrap().parts;
    let b_after = plan.tasks.iter().find(|t| &*t.id == "b/x/4:5@1K").unwrap().parts;
    assert_eq!(b_before.changes(&b_after), ["upstream changed"]);
}

#[test]
fn dry_run_cost_of_the_examples_equals_a_hand_computation() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests");
    let catalog = crate::catalog::Catalog::embedded();
    let text_tokens = |s: &str| (s.len() as f64 / 4.0).ceil();
    for name in ["catalogue.yaml", "multi-turn.yaml", "fan-out.yaml", "model-comparison.yaml"] {
        let manifest = crate::manifest::load(&examples.join(name)).unwrap();
        let plan = expand(&manifest).unwrap();
        let mut planned = 0.0;
        let mut by_hand = 0.0;
        for task in &plan.tasks {
            let view = super::TaskView::new(&manifest, task);
            let m = catalog.model(&view.model.id).unwrap();
            planned += view.model.cost(&task.estimate, crate::catalog::Tier::Interactive).dollars();
            // By hand, from the catalogue: the image, the text we send, the images we send,
            // the typical thinking, and a caption when TEXT is asked for.
            let image = f64::from(m.size(&task.size).unwrap().output_tokens) * m.prices.output_image / 1e6;
            let mut input_text = text_tokens(&task.prompt_text) + task.system_text.as_deref().map_or(0.0, text_tokens);
            let mut input_images = (task.refs.len() + task.from.len()) as f64;
            let mut history = task.history;
            let caption =
                if view.job.generation.wants_text() { f64::from(m.estimates.text_output_tokens) } else { 0.0 };
            let summary = if view.job.generation.include_thoughts == Some(true) {
                f64::from(m.estimates.thought_summary_tokens)
            } else {
                0.0
            };
            while let Some(h) = history {
                let past = &plan.tasks[h as usize];
                input_text += text_tokens(&past.prompt_text) + caption + summary;
                input_images += (past.refs.len() + past.from.len()) as f64 + 1.0;
                history = past.history;
            }
            let input = (input_text + input_images * f64::from(m.input_image_tokens)) * m.prices.input / 1e6;
            let thinking = f64::from(m.thinking_estimate(view.job.generation.thinking_level.as_deref()));
            let text_out = (thinking + caption) * m.prices.output_text / 1e6;
            by_hand += image + input + text_out;
        }
        assert!((planned - by_hand).abs() < 1e-9, "{name}: planned {planned} vs by hand {by_hand}");
        assert!(planned > 0.0);
    }
}
