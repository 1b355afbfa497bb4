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

/// The prompts sent, by row key, read from the sidecars of a finished run.
fn prompts_by_key(ws: &Workspace) -> Vec<(String, String)> {
    let report = ws.report();
    let mut out: Vec<(String, String)> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let image = ws.out().join(t["outputs"][0].as_str().unwrap());
            let sidecar: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(image.with_extension("json")).unwrap()).unwrap();
            (sidecar["key"].as_str().unwrap().to_owned(), sidecar["prompt"].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

fn table_manifest(vars: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: table\ndefaults: {{ model: gemini-3.1-flash-image-preview, modalities: [image], sizes: [\"1:1@512\"] }}\n\
         jobs:\n  packshot:\n    vars: {vars}\n{extra}    key: sku\n    prompt: \"{{{{ name }}}} in {{{{ color }}}}\"\n"
    )
}

#[test]
fn csv_files_as_spreadsheets_export_them_are_read() {
    let ws = Workspace::new();
    // Excel in a European locale: `;`, a byte-order mark, CRLF, a quoted `;` inside a value.
    let european =
        "\u{feff}sku;name;color\r\nMUG-001;ceramic mug;\"sage; matte\"\r\nMUG-002;ceramic mug;terracotta\r\n";
    std::fs::write(ws.path().join("data/european.csv"), european).unwrap();
    std::fs::write(
        ws.path().join("data/tabs.tsv"),
        "sku\tname\tcolor\nMUG-001\tceramic mug\tsage; matte\nMUG-002\tceramic mug\tterracotta\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("data/pipes.csv"),
        "sku|name|color\nMUG-001|ceramic mug|sage; matte\nMUG-002|ceramic mug|terracotta\n",
    )
    .unwrap();
    let expected = vec![
        ("MUG-001".to_owned(), "ceramic mug in sage; matte".to_owned()),
        ("MUG-002".to_owned(), "ceramic mug in terracotta".to_owned()),
    ];
    let emulator = Emulator::start(MockConfig::default());
    for (vars, extra) in
        [("data/european.csv", ""), ("data/tabs.tsv", ""), ("data/pipes.csv", "    delimiter: \"|\"\n")]
    {
        ws.write("m.yaml", &table_manifest(vars, extra));
        let out = ws.cmd(None).args(["validate", "m.yaml"]).output().unwrap();
        assert_code(&out, 0);
        let _ = std::fs::remove_dir_all(ws.out());
        assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
        assert_eq!(prompts_by_key(&ws), expected, "{vars}");
    }

    // `delimiter:` where it cannot apply, or not one character, is an error.
    for (extra, expect) in [
        ("    delimiter: \"ab\"\n", "`ab` is not a delimiter"),
        ("    sheet: Products\n", "`sheet` needs `vars:` naming a spreadsheet"),
    ] {
        ws.write("m.yaml", &table_manifest("data/european.csv", extra));
        let out = ws.cmd(None).args(["validate", "m.yaml"]).output().unwrap();
        assert_code(&out, 3);
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
    }
}

fn write_products_xlsx(path: &std::path::Path, rows: &[(&str, &str, f64, &str)]) {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut book = Workbook::new();
    let notes = book.add_worksheet().set_name("Notes").unwrap();
    notes.write(0, 0, "read me first").unwrap();
    let sheet = book.add_worksheet().set_name("Products").unwrap();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    for (c, h) in ["sku", "name", "qty", "launch", "color"].iter().enumerate() {
        sheet.write(0, c as u16, *h).unwrap();
    }
    for (r, (sku, name, qty, color)) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        sheet.write(r, 0, *sku).unwrap();
        sheet.write(r, 1, *name).unwrap();
        sheet.write(r, 2, *qty).unwrap();
        sheet.write_with_format(r, 3, ExcelDateTime::from_ymd(2026, 3, r as u8).unwrap(), &date).unwrap();
        sheet.write(r, 4, *color).unwrap();
    }
    book.save(path).unwrap();
}

#[test]
fn xlsx_files_are_read_with_numbers_and_dates_as_text_and_sheets_by_name() {
    let ws = Workspace::new();
    write_products_xlsx(
        &ws.path().join("data/products.xlsx"),
        &[("MUG-001", "ceramic mug", 12.0, "sage"), ("MUG-002", "ceramic mug", 2.5, "terracotta")],
    );
    let manifest = "version: 1\nname: sheet\ndefaults: { model: gemini-3.1-flash-image-preview, modalities: [image], sizes: [\"1:1@512\"] }\n\
        jobs:\n  packshot:\n    vars: data/products.xlsx\n    sheet: Products\n    key: sku\n\
        \x20   prompt: \"{{ qty }} x {{ name }} in {{ color }}, launched {{ launch }}, row {{ row_number }}\"\n";
    ws.write("m.yaml", manifest);
    let emulator = Emulator::start(MockConfig::default());
    assert_code(&ws.run(&emulator, "m.yaml", &[]), 0);
    assert_eq!(
        prompts_by_key(&ws),
        [
            ("MUG-001".to_owned(), "12 x ceramic mug in sage, launched 2026-03-01, row 2".to_owned()),
            ("MUG-002".to_owned(), "2.5 x ceramic mug in terracotta, launched 2026-03-02, row 3".to_owned()),
        ]
    );

    // Problems name the file, the sheet, the row and the cell.
    ws.write("typo.yaml", &manifest.replace("sheet: Products", "sheet: Prodcts"));
    let out = ws.cmd(None).args(["validate", "typo.yaml"]).output().unwrap();
    assert_code(&out, 3);
    assert!(stderr(&out).contains("has no sheet `Prodcts`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("did you mean `Products`?"), "{}", stderr(&out));

    write_products_xlsx(
        &ws.path().join("data/products.xlsx"),
        &[("MUG-001", "ceramic mug", 12.0, "sage"), ("MUG-001", "ceramic mug", 3.0, "terracotta")],
    );
    let out = ws.cmd(None).args(["validate", "m.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("duplicate row key `MUG-001` (first seen at row 2)"), "{err}");
    assert!(err.contains("data/products.xlsx (sheet `Products`, row 3, from jobs.packshot.vars)"), "{err}");

    // Without `sheet:`, the first sheet is read; the error says how to name another.
    ws.write("first.yaml", &manifest.replace("    sheet: Products\n", ""));
    let out = ws.cmd(None).args(["validate", "first.yaml"]).output().unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("sheet `Notes` of data/products.xlsx has a header but no rows"), "{err}");
    assert!(err.contains("unless `sheet:` names another; sheets: Notes, Products"), "{err}");
}
