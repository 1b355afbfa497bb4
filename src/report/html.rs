//! `report.html`: a contact sheet, one self-contained file (inline CSS, no framework).
//!
//! One section per job; rows are the job's variable rows, columns the other axes (size, model,
//! step, prompt, reference set, variant); each cell shows the thumbnail (links to the full image),
//! status, tokens and cost, or why there is no image. Rendered by minijinja with HTML
//! auto-escaping, so every value from a manifest, a CSV or a model response is text, never markup;
//! grounding links are kept only when they are http(s).
//!
//! Thumbnails are embedded as data URIs in small runs (the file then works alone) and referenced
//! as files under `.nanobatch/thumbs/` beyond that (the file stays small).

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use super::schema::{Breakdown, Drift, RemovedTaskEntry, Report, ReviewCounts, RunInfo, SupersededEntry, TaskEntry};
use super::thumbs;
use crate::checkpoint::RunDir;
use crate::checkpoint::snapshot::{PlanSnapshot, SnapshotTask};
use crate::fsutil::{self, FsError};

const TEMPLATE: &str = include_str!("report.html.j2");

/// Up to this many images the thumbnails are embedded in the file.
pub const EMBED_LIMIT: usize = 100;

#[derive(Serialize)]
struct View<'a> {
    run: &'a RunInfo,
    totals: &'a Breakdown,
    by_model: Vec<(&'a str, &'a Breakdown)>,
    drift: &'a [Drift],
    review: Option<&'a ReviewCounts>,
    jobs: Vec<JobView>,
    images_expected: usize,
    loading: &'static str,
    removed: &'a [RemovedTaskEntry],
    removed_spent: f64,
    superseded: &'a [SupersededEntry],
}

#[derive(Serialize)]
struct JobView {
    name: String,
    columns: Vec<String>,
    rows: Vec<RowView>,
}

#[derive(Serialize)]
struct RowView {
    key: String,
    vars: Vec<(String, String)>,
    cells: Vec<Option<Cell>>,
}

#[derive(Serialize, Clone)]
struct Cell {
    id: String,
    status: String,
    thumb: Option<String>,
    href: Option<String>,
    placeholder: String,
    cost: f64,
    tokens: u64,
    attempts: u32,
    message: Option<String>,
    sources: Vec<Source>,
    /// The review mark (`approved`, `rejected`) and its note.
    review: Option<String>,
    note: Option<String>,
}

#[derive(Serialize, Clone)]
struct Source {
    uri: String,
    title: String,
}

/// Writes `report.html` (and any missing thumbnails).
pub fn write(report: &Report, snapshot: &PlanSnapshot, root: &Path) -> Result<(), FsError> {
    let html = render(report, snapshot, root);
    fsutil::write_atomic(&RunDir::new(root).report_html(), html.as_bytes())
}

pub fn render(report: &Report, snapshot: &PlanSnapshot, root: &Path) -> String {
    let images: Vec<(String, String)> = image_list(report, root);
    thumbs::ensure(root, &images);
    let embed = images.len() <= EMBED_LIMIT;
    let sha_of: HashMap<&str, &str> = images.iter().map(|(p, s)| (p.as_str(), s.as_str())).collect();
    let jobs = job_views(report, snapshot, root, &sha_of, embed);
    let view = View {
        run: &report.run,
        totals: &report.totals,
        by_model: report.by_model.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        drift: &report.drift,
        review: report.review.as_ref(),
        jobs,
        images_expected: images.len(),
        loading: if embed { "eager" } else { "lazy" },
        removed: &report.no_longer_in_manifest,
        removed_spent: report.no_longer_in_manifest.iter().map(|r| r.cost_usd).sum::<crate::catalog::Usd>().dollars(),
        superseded: &report.superseded,
    };
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_function("money", |v: f64| format!("${v:.4}"));
    env.add_filter("when", |v: String| crate::ui::human_time(&v));
    env.add_filter("url_path", |v: String| url_path(&v));
    match env.render_named_str("report.html", TEMPLATE, minijinja::value::Serde(&view)) {
        Ok(html) => html,
        Err(e) => format!("<!doctype html><p>report rendering failed: {}</p>", escape(&e.to_string())),
    }
}

/// Every succeeded output with its content hash (from the sidecar-recorded journal data).
fn image_list(report: &Report, root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in &report.tasks {
        if task.status != "succeeded" {
            continue;
        }
        for output in &task.outputs {
            out.push((output.clone(), image_hash(root, output)));
        }
    }
    out
}

/// The image's content hash from its sidecar (cheap; `sha256` in sidecars from before BLAKE3),
/// else from its bytes. It names the thumbnail, so either kind serves.
fn image_hash(root: &Path, output: &str) -> String {
    let stem = crate::checkpoint::resume::strip_extension(output);
    let sidecar = root.join(format!("{stem}.json"));
    if let Ok(text) = std::fs::read_to_string(&sidecar)
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(hash) = ["blake3", "sha256"].iter().find_map(|k| value.get(*k).and_then(|v| v.as_str()))
        && hash.len() == 64
    {
        return hash.to_owned();
    }
    std::fs::read(root.join(output)).map(|b| crate::digest::content_hash(&b)).unwrap_or_else(|_| "0".repeat(64))
}

fn job_views(
    report: &Report,
    snapshot: &PlanSnapshot,
    root: &Path,
    sha_of: &HashMap<&str, &str>,
    embed: bool,
) -> Vec<JobView> {
    let mut jobs: Vec<JobView> = Vec::new();
    let mut job_index: HashMap<&str, usize> = HashMap::new();
    let mut column_index: Vec<HashMap<String, usize>> = Vec::new();
    let mut row_index: Vec<HashMap<String, usize>> = Vec::new();
    for (entry, planned) in report.tasks.iter().zip(&snapshot.tasks) {
        let j = *job_index.entry(planned.job.as_str()).or_insert_with(|| {
            jobs.push(JobView { name: planned.job.clone(), columns: Vec::new(), rows: Vec::new() });
            column_index.push(HashMap::new());
            row_index.push(HashMap::new());
            jobs.len() - 1
        });
        let column = column_label(planned, entry);
        let job = &mut jobs[j];
        let c = *column_index[j].entry(column.clone()).or_insert_with(|| {
            job.columns.push(column);
            for row in &mut job.rows {
                row.cells.push(None);
            }
            job.columns.len() - 1
        });
        let width = job.columns.len();
        let r = *row_index[j].entry(planned.key.clone()).or_insert_with(|| {
            job.rows.push(RowView { key: planned.key.clone(), vars: planned.vars.clone(), cells: vec![None; width] });
            job.rows.len() - 1
        });
        job.rows[r].cells[c] = Some(cell(entry, root, sha_of, embed));
    }
    jobs
}

fn column_label(planned: &SnapshotTask, entry: &TaskEntry) -> String {
    let mut parts = vec![format!("{}@{}", entry.ratio, entry.size)];
    if let Some(p) = &planned.prompt_name {
        parts.push(p.clone());
    }
    if let Some(r) = &planned.ref_set {
        parts.push(r.clone());
    }
    parts.push(short_model(&entry.model).to_owned());
    if let Some(s) = &entry.step {
        parts.push(s.clone());
    }
    if entry.variant > 1 || planned.variant > 1 {
        parts.push(format!("v{}", entry.variant));
    }
    parts.join(" · ")
}

fn short_model(model: &str) -> &str {
    model.strip_prefix("gemini-").unwrap_or(model)
}

fn cell(entry: &TaskEntry, root: &Path, sha_of: &HashMap<&str, &str>, embed: bool) -> Cell {
    let output = entry.outputs.first().filter(|_| entry.status == "succeeded");
    let thumb = output.and_then(|o| {
        let sha = sha_of.get(o.as_str())?;
        let rel = thumbs::thumb_rel(sha);
        if embed {
            let bytes = std::fs::read(root.join(&rel)).ok()?;
            Some(format!("data:image/jpeg;base64,{}", STANDARD.encode(bytes)))
        } else {
            Some(url_path(&rel))
        }
    });
    let message = match (&entry.error_message, entry.size_mismatch) {
        (Some(m), _) => Some(m.chars().take(300).collect()),
        (None, Some((w, h))) => Some(format!("size {w}x{h} differs from the catalogue")),
        (None, None) => None,
    };
    let placeholder = match entry.status.as_str() {
        "succeeded" => "image not found".to_owned(),
        "pending" => "pending".to_owned(),
        "skipped" => "skipped: an upstream task failed".to_owned(),
        other => other.replace('_', " "),
    };
    Cell {
        id: entry.id.clone(),
        status: entry.status.clone(),
        thumb,
        href: output.map(|o| url_path(o)),
        placeholder,
        cost: entry.cost_usd.actual.dollars(),
        tokens: entry.tokens.actual.input_text
            + entry.tokens.actual.input_image
            + entry.tokens.actual.output_image
            + entry.tokens.actual.output_text
            + entry.tokens.actual.thinking,
        attempts: entry.attempts,
        message,
        sources: entry
            .grounding
            .iter()
            .filter_map(|u| safe_link(u))
            .map(|uri| Source { title: host_of(&uri).to_owned(), uri })
            .collect(),
        review: entry.review.as_ref().map(|r| r.mark.clone()),
        note: entry.review.as_ref().and_then(|r| r.note.clone()),
    }
}

/// Only http(s) links are shown (no `javascript:` or `data:` from a model response); characters
/// a URL may not contain raw are percent-encoded. (The template escapes the result again.)
pub fn safe_link(uri: &str) -> Option<String> {
    let uri = uri.trim();
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || uri.chars().any(char::is_control) {
        return None;
    }
    let mut out = String::with_capacity(uri.len());
    for c in uri.chars() {
        match c {
            '"' | '<' | '>' | '`' | '{' | '}' | '|' | '\\' | '^' | ' ' | '\'' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn host_of(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// Percent-encodes a relative path for an `href`/`src` (keeps `/`).
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::{safe_link, url_path};

    #[test]
    fn only_http_links() {
        assert_eq!(safe_link("https://example.com/a").as_deref(), Some("https://example.com/a"));
        assert_eq!(safe_link("javascript:alert(1)"), None);
        assert_eq!(safe_link("data:text/html,x"), None);
        assert_eq!(safe_link(" JavaScript:alert(1)"), None);
        assert_eq!(
            safe_link("https://x\"onmouseover=\"alert(1)").as_deref(),
            Some("https://x%22onmouseover=%22alert(1)")
        );
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(url_path("job/Café 1.png"), "job/Caf%C3%A9%201.png");
    }
}
