//! Reading a manifest file: YAML → [`RawManifest`] with every unknown key collected (and a "did
//! you mean" from the schema), syntax and type errors pinned to line and column.
//!
//! The YAML crate (serde-saphyr) is used only here, so it can be swapped.

use std::path::Path;

use serde_json::Value;

use super::diagnostic::{Diagnostic, Diagnostics};
use super::locate::{LocationIndex, Position, child_index, child_key, parent_path};
use super::schema::RawManifest;

/// Largest manifest accepted. Manifests are hand-written; data belongs in CSV files.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A parsed manifest with its source and location index.
#[derive(Debug)]
pub struct Parsed {
    pub raw: RawManifest,
    pub index: LocationIndex,
    /// Unknown keys, each an error with its position and a suggestion.
    pub unknown_keys: Diagnostics,
}

/// Parses `source` (the text of `file`).
pub fn parse(file: &Path, source: &str) -> Result<Parsed, Diagnostics> {
    if source.len() > MAX_MANIFEST_BYTES {
        let d =
            Diagnostic::error(file, format!("manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES}", source.len()))
                .with_help("put data rows in a CSV file and point `vars:` at it");
        return Err(Diagnostics(vec![d]));
    }
    if source.trim().is_empty() {
        let d = Diagnostic::error(file, "the manifest is empty")
            .with_help("start with `version: 1` and a `jobs:` section, or run `nanobatch init`");
        return Err(Diagnostics(vec![d]));
    }
    let index = LocationIndex::build(source);

    let mut ignored: Vec<String> = Vec::new();
    let mut error_path: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(source, yaml_options(), |de| {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(de, &mut track);
        let value = serde_ignored::deserialize(de, |path| ignored.push(ignored_path(&path)));
        if value.is_err() {
            error_path = Some(track.path().to_string());
        }
        value
    });
    let unknown_keys = unknown_key_diagnostics(file, source, &index, &ignored);
    match result {
        Ok(raw) => Ok(Parsed { raw, index, unknown_keys }),
        Err(e) => {
            let mut all = unknown_keys;
            all.push(yaml_error(file, source, &e, error_path.as_deref()));
            Err(all)
        }
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_depth = 32;
    budget.max_total_scalar_bytes = MAX_MANIFEST_BYTES;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

fn yaml_error(file: &Path, source: &str, error: &serde_saphyr::Error, path: Option<&str>) -> Diagnostic {
    let position = error
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Position { line: l.line() as u32, column: l.column().max(1) as u32 });
    let message = plain_message(&error.without_snippet().to_string());
    let mut d = Diagnostic::error(file, message).at(position, source);
    if let Some(path) = path.map(|p| p.trim_end_matches(".?")).filter(|p| !p.is_empty() && *p != "?" && *p != ".") {
        d = d.with_context(path.to_owned());
    }

    d
}

/// serde-saphyr puts the position in the text (`line N column M: …`, `… at line N, column M`);
/// the diagnostic shows the position itself, so it is cut out.
fn plain_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text).trim();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if let Some(rest) = message.strip_prefix("line ")
        && let Some(colon) = rest.find(": ")
        && rest[..colon].contains("column")
    {
        message = rest[colon + 2..].to_owned();
    }
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{key}` is set twice in the same map; keep one");
    }
    if message.starts_with("budget breached") {
        return "the YAML expands to too much data (aliases nested too deep or too many nodes); this looks like an alias bomb".to_owned();
    }
    message
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => child_index(&ignored_path(parent), *index),
        P::Map { parent, key } => child_key(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn unknown_key_diagnostics(file: &Path, source: &str, index: &LocationIndex, ignored: &[String]) -> Diagnostics {
    let schema = manifest_schema_value();
    let mut out = Diagnostics::default();
    for path in ignored {
        let parent = parent_path(path).unwrap_or_default();
        let key = path[parent.len()..].trim_start_matches('.');
        let known = keys_at(&schema, &schema, &segments(parent));
        let mut d = Diagnostic::error(file, format!("unknown key `{key}`"))
            .with_context(path.clone())
            .at(index.key(path), source);
        if let Some(best) = closest(key, &known) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else if !known.is_empty() {
            d = d.with_help(format!("expected one of: {}", known.join(", ")));
        }
        out.push(d);
    }
    out
}

/// The manifest's JSON Schema as a value (for key suggestions).
pub fn manifest_schema_value() -> Value {
    serde_json::to_value(schemars::schema_for!(RawManifest)).unwrap_or(Value::Null)
}

enum Segment {
    Key(String),
    Index,
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for piece in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = piece;
        if let Some(b) = rest.find('[') {
            if b > 0 {
                out.push(Segment::Key(rest[..b].to_owned()));
            }
            rest = &rest[b..];
            while rest.starts_with('[') {
                out.push(Segment::Index);
                rest = rest.find(']').map_or("", |e| &rest[e + 1..]);
            }
        } else {
            out.push(Segment::Key(rest.to_owned()));
        }
    }
    out
}

/// The property names an object at `path` may have, according to the schema.
fn keys_at(root: &Value, node: &Value, path: &[Segment]) -> Vec<String> {
    let node = resolve(root, node);
    if let Some(alternatives) = node.get("oneOf").or_else(|| node.get("anyOf")).and_then(Value::as_array) {
        let mut keys: Vec<String> = alternatives.iter().flat_map(|alt| keys_at(root, alt, path)).collect();
        keys.sort();
        keys.dedup();
        return keys;
    }
    let Some((first, rest)) = path.split_first() else {
        let mut keys: Vec<String> =
            node.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        return keys;
    };
    let next = match first {
        Segment::Key(k) => node
            .get("properties")
            .and_then(|p| p.get(k))
            .or_else(|| node.get("additionalProperties").filter(|v| v.is_object())),
        Segment::Index => node.get("items"),
    };
    next.map(|n| keys_at(root, n, rest)).unwrap_or_default()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut current = node;
    for _ in 0..16 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else { break };
        let Some(name) = reference.strip_prefix("#/$defs/") else { break };
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(target) => current = target,
            None => break,
        }
    }
    current
}

/// The closest known word, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.as_str())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{closest, parse};

    #[test]
    fn unknown_keys_are_all_reported_with_suggestions() {
        let src = "version: 1\nretires: 3\njobs:\n  a:\n    prompt: hi\n    modle: x\n    sizes: [\"1:1\"]\n";
        let parsed = parse(Path::new("m.yaml"), src).unwrap();
        let text = parsed.unknown_keys.to_string();
        assert!(text.contains("unknown key `retires`"), "{text}");
        assert!(text.contains("did you mean `retry`?"), "{text}");
        assert!(text.contains("m.yaml:2:1"), "{text}");
        assert!(text.contains("unknown key `modle`"), "{text}");
        assert!(text.contains("did you mean `model`?"), "{text}");
        assert!(text.contains("m.yaml:6:5"), "{text}");
    }

    #[test]
    fn type_errors_have_positions_and_paths() {
        let src = "version: 1\njobs:\n  a:\n    prompt: hi\n    repeat: three\n";
        let err = parse(Path::new("m.yaml"), src).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("m.yaml:5:13"), "{text}");
        assert!(text.contains("jobs.a.repeat"), "{text}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let src = "version: 1\njobs:\n  a:\n    prompt: hi\n    prompt: again\n";
        let err = parse(Path::new("m.yaml"), src).unwrap_err();
        assert!(err.to_string().contains("is set twice"), "{err}");
    }

    #[test]
    fn suggestions_need_similarity() {
        let known = vec!["retry".to_owned(), "limits".to_owned()];
        assert_eq!(closest("retires", &known), Some("retry"));
        assert_eq!(closest("zzz", &known), None);
    }
}
