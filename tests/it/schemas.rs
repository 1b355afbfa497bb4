//! The JSON Schemas in `schemas/` are generated from the types; this test fails when they are
//! stale. Regenerate with `UPDATE_SCHEMAS=1 cargo test --test it schemas`.

use std::path::Path;

fn check(name: &str, schema: schemars::Schema) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == text, "{} is stale: run UPDATE_SCHEMAS=1 cargo test --test it schemas", path.display());
}

#[test]
fn manifest_schema_is_up_to_date() {
    check("manifest.schema.json", schemars::schema_for!(nanobatch::manifest::schema::RawManifest));
}

#[test]
fn report_schema_is_up_to_date() {
    check("report.schema.json", schemars::schema_for!(nanobatch::report::schema::Report));
}
