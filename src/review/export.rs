//! `nanobatch export`: the chosen images (approved, or all) with their sidecars, at their
//! relative paths, and `export.csv` (one line per image: id, key, job, model, size, path, cost,
//! mark, note), into a new directory or one zip file.
//!
//! The export is made under a temporary name beside the destination and renamed into place:
//! a destination that exists was made whole, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::index::RunIndex;
use super::log::Verdict;
use crate::catalog::Usd;
use crate::checkpoint::resume::strip_extension;
use crate::fsutil::{self, FsError};

/// The name of the CSV inside an export.
pub const CSV_NAME: &str = "export.csv";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Approved,
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{} exists and is not an empty directory; export into a new directory", .0.display())]
    DestinationExists(PathBuf),
    #[error("{} exists; export into a new zip file", .0.display())]
    ZipExists(PathBuf),
    #[error("{} is inside the run directory {}; export somewhere else", .dest.display(), .root.display())]
    InsideRun { dest: PathBuf, root: PathBuf },
    #[error("{} is missing: the journal says the task made it (was it moved or deleted?)", .0.display())]
    Missing(PathBuf),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("cannot write the zip file {}: {source}", path.display())]
    Zip { path: PathBuf, source: zip::result::ZipError },
    #[error("cannot write {}: {source}", path.display())]
    Csv { path: PathBuf, source: csv::Error },
}

/// One line of `export.csv`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CsvLine {
    pub id: String,
    pub key: String,
    pub job: String,
    pub model: String,
    /// `ratio@size`
    pub size: String,
    /// Relative to the export's root (and to the run directory).
    pub path: String,
    /// What the task cost, in dollars (on its first image's line; 0 on further images).
    pub cost_usd: String,
    pub mark: String,
    pub note: String,
}

/// What an export holds.
#[derive(Debug, Default)]
pub struct Manifest {
    /// Files to copy, relative to the run directory: images and sidecars.
    pub files: Vec<String>,
    pub lines: Vec<CsvLine>,
    pub images: usize,
}

/// The images `selection` takes from the run, with their sidecars and CSV lines.
pub fn select(index: &RunIndex, selection: Selection) -> Result<Manifest, ExportError> {
    let mut out = Manifest::default();
    for i in 0..index.len() {
        if index.image(i).is_none() {
            continue;
        }
        let verdict = index.verdict(i);
        if selection == Selection::Approved && verdict != Some(Verdict::Approved) {
            continue;
        }
        let task = index.task(i);
        let finished = index.finished(i).expect("a task with an image has an outcome");
        let note = index.mark(i).and_then(|m| m.note.clone()).unwrap_or_default();
        for (n, image) in finished.outputs.iter().enumerate() {
            let source = index.root.join(image);
            if !source.is_file() {
                return Err(ExportError::Missing(source));
            }
            out.files.push(image.clone());
            let sidecar = format!("{}.json", strip_extension(image));
            if index.root.join(&sidecar).is_file() {
                out.files.push(sidecar);
            }
            out.images += 1;
            out.lines.push(CsvLine {
                id: task.id.clone(),
                key: task.key.clone(),
                job: task.job.clone(),
                model: task.model.clone(),
                size: format!("{}@{}", task.ratio, task.size),
                path: image.clone(),
                cost_usd: decimal_dollars(if n == 0 { index.outcomes[i].actual_cost() } else { Usd::ZERO }),
                mark: verdict.map_or("pending", Verdict::as_str).to_owned(),
                note: note.clone(),
            });
        }
    }
    Ok(out)
}

/// Writes the export to `dest` (a new directory, or a new zip file).
pub fn write(index: &RunIndex, manifest: &Manifest, dest: &Path, zip: bool) -> Result<(), ExportError> {
    check_destination(&index.root, dest, zip)?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fsutil::create_dir_all(parent)?;
    if zip { write_zip(index, manifest, dest, parent) } else { write_dir(index, manifest, dest, parent) }
}

fn check_destination(root: &Path, dest: &Path, zip: bool) -> Result<(), ExportError> {
    if zip && dest.exists() {
        return Err(ExportError::ZipExists(dest.to_path_buf()));
    }
    if !zip && dest.exists() && std::fs::read_dir(dest).map_or(true, |mut d| d.next().is_some()) {
        return Err(ExportError::DestinationExists(dest.to_path_buf()));
    }
    // Where the destination would be, resolved through its nearest existing ancestor.
    let mut existing = dest.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name() else { break };
        rest.push(name.to_owned());
        existing.pop();
        if existing.as_os_str().is_empty() {
            existing = PathBuf::from(".");
        }
    }
    if let (Ok(base), Ok(root)) = (existing.canonicalize(), root.canonicalize()) {
        let resolved = rest.iter().rev().fold(base, |p, n| p.join(n));
        if resolved.starts_with(&root) {
            return Err(ExportError::InsideRun { dest: dest.to_path_buf(), root: root.clone() });
        }
    }
    Ok(())
}

fn csv_bytes(manifest: &Manifest, dest: &Path) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |source| ExportError::Csv { path: dest.join(CSV_NAME), source };
    for line in &manifest.lines {
        writer.serialize(line).map_err(csv_error)?;
    }
    if manifest.lines.is_empty() {
        writer
            .write_record(["id", "key", "job", "model", "size", "path", "cost_usd", "mark", "note"])
            .map_err(csv_error)?;
    }
    writer.into_inner().map_err(|e| csv_error(e.into_error().into()))
}

fn write_dir(index: &RunIndex, manifest: &Manifest, dest: &Path, parent: &Path) -> Result<(), ExportError> {
    let temp = tempfile::Builder::new()
        .prefix(fsutil::TEMP_PREFIX)
        .tempdir_in(parent)
        .map_err(|e| FsError::new("cannot create a temporary directory in", parent, e))?;
    for rel in &manifest.files {
        let to = temp.path().join(rel);
        if let Some(dir) = to.parent() {
            fsutil::create_dir_all(dir)?;
        }
        let from = index.root.join(rel);
        std::fs::copy(&from, &to).map_err(|e| FsError::new("cannot copy", &from, e))?;
    }
    let csv = csv_bytes(manifest, dest)?;
    std::fs::write(temp.path().join(CSV_NAME), csv).map_err(|e| FsError::new("cannot write", dest, e))?;
    if dest.exists() {
        // An empty directory (checked): replaced by the export.
        std::fs::remove_dir(dest).map_err(|e| FsError::new("cannot replace", dest, e))?;
    }
    let kept = temp.keep();
    std::fs::rename(&kept, dest).map_err(|e| FsError::new("cannot rename into", dest, e))?;
    fsutil::sync_directory(parent)?;
    Ok(())
}

fn write_zip(index: &RunIndex, manifest: &Manifest, dest: &Path, parent: &Path) -> Result<(), ExportError> {
    use zip::write::SimpleFileOptions;
    let zip_error = |source| ExportError::Zip { path: dest.to_path_buf(), source };
    let temp = tempfile::Builder::new()
        .prefix(fsutil::TEMP_PREFIX)
        .tempfile_in(parent)
        .map_err(|e| FsError::new("cannot create a temporary file in", parent, e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(temp));
    // Images are compressed already; sidecars and the CSV are text.
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let deflated = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for rel in &manifest.files {
        let from = index.root.join(rel);
        let options = if rel.ends_with(".json") { deflated } else { stored };
        zip.start_file(rel.as_str(), options).map_err(zip_error)?;
        let mut file = fsutil::open(&from).map_err(|e| FsError::new("cannot read", &from, e))?;
        std::io::copy(&mut file, &mut zip).map_err(|e| FsError::new("cannot write", dest, e))?;
    }
    zip.start_file(CSV_NAME, deflated).map_err(zip_error)?;
    zip.write_all(&csv_bytes(manifest, dest)?).map_err(|e| FsError::new("cannot write", dest, e))?;
    let writer = zip.finish().map_err(zip_error)?;
    let temp = writer.into_inner().map_err(|e| FsError::new("cannot write", dest, e.into_error()))?;
    temp.as_file().sync_all().map_err(|e| FsError::new("cannot sync", dest, e))?;
    temp.persist_noclobber(dest).map_err(|e| FsError::new("cannot rename into", dest, e.error))?;
    fsutil::sync_directory(parent)?;
    Ok(())
}

/// Exact dollars from picodollars: `0.06756`, `0` (no float rounding on the way).
pub fn decimal_dollars(usd: Usd) -> String {
    let pico = usd.pico();
    let sign = if pico < 0 { "-" } else { "" };
    let (whole, frac) = (pico.unsigned_abs() / 1_000_000_000_000, pico.unsigned_abs() % 1_000_000_000_000);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:012}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::decimal_dollars;
    use crate::catalog::Usd;

    #[test]
    fn dollars_are_exact() {
        assert_eq!(decimal_dollars(Usd::from_pico(67_560_000_000)), "0.06756");
        assert_eq!(decimal_dollars(Usd::from_pico(2_000_000_000_000)), "2");
        assert_eq!(decimal_dollars(Usd::from_pico(1)), "0.000000000001");
        assert_eq!(decimal_dollars(Usd::ZERO), "0");
    }
}
