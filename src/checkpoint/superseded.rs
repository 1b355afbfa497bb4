//! Superseded outputs: a paid image is never overwritten.
//!
//! When a new image is about to land where another one is (the task's fingerprint changed, the
//! same task runs again: a retry, a re-roll, an edited output), the old image and its sidecar
//! are first **moved** — renamed, both directories synced — to
//! `.nanobatch/superseded/<old fingerprint>/<original relative path>`, and the dispatcher
//! journals a [`SupersededRecord`] with their new paths. `status` and the report list them;
//! `nanobatch prune DIR` deletes them, deliberately.
//!
//! A run that stops between the move and its journal record leaves files the journal does not
//! know; the next run finds them ([`unrecorded`]) and journals them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::records::{OutputRecord, SupersededRecord, now};
use crate::digest::{self, Algorithm};
use crate::fsutil::{self, FsError};
use crate::media::ImageKind;
use crate::report::sidecar::SidecarRead;

/// Where superseded outputs are kept, relative to the output directory.
pub const DIR: &str = ".nanobatch/superseded";

/// Moves the image at `stem.<ext>` (any image extension) and its sidecar `stem.json` out of the
/// way of a new output of the task `task_id` (fingerprint `task_fp`). `Ok(None)` when there is
/// no image there (a lone sidecar is left to be replaced).
pub fn move_aside(root: &Path, stem: &str, task_id: &str, task_fp: &str) -> Result<Option<SupersededRecord>, FsError> {
    let Some((image_rel, kind)) = existing_image(root, stem) else { return Ok(None) };
    let sidecar_rel = format!("{stem}.json");
    let image_path = root.join(&image_rel);
    let sidecar = SidecarRead::read(&root.join(&sidecar_rel));
    let (hash_algorithm, recorded) = sidecar.as_ref().map_or((Algorithm::Blake3, ""), SidecarRead::content_hash);
    let hash =
        digest::file_hash(&image_path, hash_algorithm).map_err(|e| FsError::new("cannot read", &image_path, e))?;
    let (id, fp, reason) = match &sidecar {
        Some(s) if s.fingerprint != task_fp => (s.task_id.clone(), s.fingerprint.clone(), "changed"),
        Some(s) if hash != recorded => (s.task_id.clone(), s.fingerprint.clone(), "modified"),
        Some(s) => (s.task_id.clone(), s.fingerprint.clone(), "rerun"),
        None => (task_id.to_owned(), String::new(), "unrecorded"),
    };
    // Unknown provenance: the content names the folder, so two such images never collide.
    let folder = if fp.is_empty() { format!("unrecorded-{}", &hash[..16.min(hash.len())]) } else { fp.clone() };
    let (image_to, sidecar_to) = move_pair(root, &folder, &image_rel, &sidecar_rel)?;
    let output = output_record(root, &image_to, sidecar_to, kind, &hash, hash_algorithm, sidecar.as_ref());
    Ok(Some(SupersededRecord {
        id,
        fp,
        outputs: vec![output],
        from: vec![image_rel],
        reason: reason.to_owned(),
        at: now(),
    }))
}

/// Superseded images on disk that no journal record names (a run stopped between moving them
/// and journaling the move), as records to journal.
pub fn unrecorded(root: &Path, known: &[SupersededRecord]) -> Vec<SupersededRecord> {
    let known: HashSet<&str> = known.iter().flat_map(|r| r.outputs.iter().map(|o| o.path.as_str())).collect();
    let mut found = Vec::new();
    let images = all_files(root).into_iter().filter(|p| p.to_str().and_then(kind_of).is_some() && p.is_file());
    for path in images {
        let Some(rel) = relative(root, &path) else { continue };
        if known.contains(rel.as_str()) {
            continue;
        }
        let Some(kind) = kind_of(&rel) else { continue };
        let stem = rel.rsplit_once('.').map_or(rel.as_str(), |(s, _)| s);
        let sidecar_rel = format!("{stem}.json");
        let sidecar = SidecarRead::read(&root.join(&sidecar_rel));
        let (algorithm, _) = sidecar.as_ref().map_or((Algorithm::Blake3, ""), SidecarRead::content_hash);
        let Ok(hash) = digest::file_hash(&path, algorithm) else { continue };
        let sidecar_rel = if root.join(&sidecar_rel).is_file() { sidecar_rel } else { String::new() };
        let output = output_record(root, &rel, sidecar_rel, kind, &hash, algorithm, sidecar.as_ref());
        let (id, fp) = sidecar.map_or((String::new(), String::new()), |s| (s.task_id, s.fingerprint));
        let from = original_of(&rel).into_iter().collect();
        found.push(SupersededRecord { id, fp, outputs: vec![output], from, reason: "found".into(), at: now() });
    }
    found
}

/// The superseded outputs whose image is still on disk, newest last.
pub fn kept<'a>(root: &Path, records: &'a [SupersededRecord]) -> Vec<&'a SupersededRecord> {
    records.iter().filter(|r| r.outputs.iter().any(|o| root.join(&o.path).is_file())).collect()
}

/// Bytes of the images of `records` still on disk.
pub fn kept_bytes(root: &Path, records: &[&SupersededRecord]) -> u64 {
    records
        .iter()
        .flat_map(|r| &r.outputs)
        .filter_map(|o| std::fs::metadata(root.join(&o.path)).ok())
        .map(|m| m.len())
        .sum()
}

/// Every file under the superseded folder (images, sidecars, anything else put there).
pub fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(DIR)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `.nanobatch/superseded/<folder>/a/b~2.png` → `a/b.png`: where a superseded image was.
pub fn original_of(rel: &str) -> Option<String> {
    let inside = rel.strip_prefix(DIR)?.strip_prefix('/')?;
    let (_, original) = inside.split_once('/')?;
    let (stem, ext) = original.rsplit_once('.').unwrap_or((original, ""));
    let stem = match stem.rsplit_once('~') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !base.ends_with('/') => base,
        _ => stem,
    };
    Some(if ext.is_empty() { stem.to_owned() } else { format!("{stem}.{ext}") })
}

fn existing_image(root: &Path, stem: &str) -> Option<(String, ImageKind)> {
    ImageKind::ALL.iter().find_map(|kind| {
        let rel = format!("{stem}.{}", kind.extension());
        let meta = std::fs::symlink_metadata(root.join(&rel)).ok()?;
        meta.is_file().then_some((rel, *kind))
    })
}

fn kind_of(path: &str) -> Option<ImageKind> {
    let ext = path.rsplit_once('.')?.1;
    ImageKind::ALL.into_iter().find(|k| k.extension().eq_ignore_ascii_case(ext))
}

fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Moves the image `image_rel` (and the sidecar `sidecar_rel`, when there is one) to
/// `.nanobatch/superseded/<folder>/<image_rel>` (`name~2.png`… when an earlier one is there),
/// durably: their new paths (the sidecar's empty when there was none). The one mover of every
/// superseded image.
pub fn move_pair(root: &Path, folder: &str, image_rel: &str, sidecar_rel: &str) -> Result<(String, String), FsError> {
    let image_to = free_name(root, &format!("{DIR}/{folder}/{image_rel}"));
    move_durably(&root.join(image_rel), &root.join(&image_to))?;
    let sidecar = root.join(sidecar_rel);
    if sidecar_rel.is_empty() || !sidecar.is_file() {
        return Ok((image_to, String::new()));
    }
    let sidecar_to = format!("{}.json", image_to.rsplit_once('.').map_or(image_to.as_str(), |(stem, _)| stem));
    move_durably(&sidecar, &root.join(&sidecar_to))?;
    Ok((image_to, sidecar_to))
}

/// `rel`, or `name~2.ext`, `name~3.ext`… when something is there already.
fn free_name(root: &Path, rel: &str) -> String {
    if std::fs::symlink_metadata(root.join(rel)).is_err() {
        return rel.to_owned();
    }
    let (stem, ext) = rel.rsplit_once('.').unwrap_or((rel, ""));
    (2..)
        .map(|n| format!("{stem}~{n}.{ext}"))
        .find(|candidate| std::fs::symlink_metadata(root.join(candidate)).is_err())
        .unwrap_or_else(|| rel.to_owned())
}

/// Renames `from` to `to` (creating `to`'s directory) and syncs both directories: once this
/// returns, a crash leaves the file at `to`.
fn move_durably(from: &Path, to: &Path) -> Result<(), FsError> {
    let to_dir = to.parent().unwrap_or(Path::new("."));
    fsutil::create_dir_all(to_dir)?;
    std::fs::rename(from, to).map_err(|e| FsError::new("cannot move", from, e))?;
    fsutil::sync_directory(to_dir)?;
    fsutil::sync_directory(from.parent().unwrap_or(Path::new(".")))
}

fn output_record(
    root: &Path,
    path: &str,
    sidecar: String,
    kind: ImageKind,
    hash: &str,
    algorithm: Algorithm,
    read: Option<&SidecarRead>,
) -> OutputRecord {
    let meta = std::fs::metadata(root.join(path)).ok();
    let (width, height) = read.map_or((0, 0), |s| s.pixels);
    let (blake3, sha256) = match algorithm {
        Algorithm::Blake3 => (hash.to_owned(), String::new()),
        Algorithm::Sha256 => (String::new(), hash.to_owned()),
    };
    OutputRecord {
        path: path.to_owned(),
        sidecar,
        blake3,
        sha256,
        bytes: meta.as_ref().map_or(0, std::fs::Metadata::len),
        mtime_ns: meta.as_ref().map_or(0, super::store::mtime_ns),
        mime: kind.mime().to_owned(),
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::{DIR, move_aside, unrecorded};

    fn sidecar(id: &str, fp: &str, image: &[u8]) -> String {
        format!(
            r#"{{"sidecar_version":2,"task_id":"{id}","fingerprint":"{fp}","blake3":"{}","mime_type":"image/png","pixels":[4,4],"tier":"interactive","attempt":1,"usage":{{"input_text":1,"input_image":0,"output_image":747,"output_text":0,"thinking":120}},"cost_usd":0.045}}"#,
            crate::digest::content_hash(image)
        )
    }

    #[test]
    fn an_image_in_the_way_is_moved_with_its_sidecar_by_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("job")).unwrap();
        std::fs::write(root.join("job/a.png"), b"old image").unwrap();
        std::fs::write(root.join("job/a.json"), sidecar("job-a", "f1", b"old image")).unwrap();
        let moved = move_aside(root, "job/a", "job-a", "f2").unwrap().unwrap();
        assert_eq!((moved.id.as_str(), moved.fp.as_str(), moved.reason.as_str()), ("job-a", "f1", "changed"));
        assert_eq!(moved.outputs[0].path, format!("{DIR}/f1/job/a.png"));
        assert_eq!(moved.outputs[0].sidecar, format!("{DIR}/f1/job/a.json"));
        assert_eq!(std::fs::read(root.join(&moved.outputs[0].path)).unwrap(), b"old image");
        assert!(!root.join("job/a.png").exists() && !root.join("job/a.json").exists());
        assert_eq!(moved.outputs[0].blake3, crate::digest::content_hash(b"old image"));

        // The same path superseded again by the same fingerprint: a second name, nothing lost.
        std::fs::write(root.join("job/a.png"), b"edited by hand").unwrap();
        std::fs::write(root.join("job/a.json"), sidecar("job-a", "f1", b"old image")).unwrap();
        let again = move_aside(root, "job/a", "job-a", "f1").unwrap().unwrap();
        assert_eq!(again.reason, "modified");
        assert_eq!(again.outputs[0].path, format!("{DIR}/f1/job/a~2.png"));
        assert!(move_aside(root, "job/a", "job-a", "f1").unwrap().is_none(), "nothing left in the way");
    }

    #[test]
    fn moves_the_journal_never_heard_of_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::write(root.join("x/b.jpg"), b"jpeg").unwrap();
        let moved = move_aside(root, "x/b", "x-b", "f9").unwrap().unwrap();
        assert_eq!(moved.reason, "unrecorded");
        assert!(moved.outputs[0].path.starts_with(&format!("{DIR}/unrecorded-")), "{}", moved.outputs[0].path);
        assert_eq!(moved.outputs[0].sidecar, "");
        assert!(unrecorded(root, std::slice::from_ref(&moved)).is_empty());
        let found = unrecorded(root, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].reason.as_str(), found[0].outputs[0].path.as_str()),
            ("found", moved.outputs[0].path.as_str())
        );
        assert_eq!(found[0].from, vec!["x/b.jpg".to_owned()]);
        assert_eq!(super::original_of(&format!("{DIR}/f1/job/a~2.png")).as_deref(), Some("job/a.png"));
    }
}
