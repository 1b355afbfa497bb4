//! Output files: every image and sidecar is written to a temp file in its target directory,
//! fsynced and renamed into place before the journal hears of it. Directories are created on
//! demand and checked once to resolve inside the output directory (a symlinked subdirectory
//! pointing elsewhere is refused).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use crate::fsutil::{self, FsError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{} resolves outside the output directory {} (a symbolic link?); refusing to write there", path.display(), root.display())]
    Escape { path: PathBuf, root: PathBuf },
}

impl StoreError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Fs(e) if e.is_disk_full())
    }
}

#[derive(Debug)]
pub struct OutputStore {
    root: PathBuf,
    canonical_root: PathBuf,
    checked: Mutex<HashSet<PathBuf>>,
}

/// What was written, for the journal.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: String,
    pub sidecar: String,
    pub bytes: u64,
    pub mtime_ns: u64,
}

impl OutputStore {
    pub fn open(root: &Path) -> Result<OutputStore, FsError> {
        fsutil::create_dir_all(root)?;
        let canonical_root = root.canonicalize().map_err(|e| FsError::new("cannot resolve", root, e))?;
        Ok(OutputStore { root: root.to_path_buf(), canonical_root, checked: Mutex::new(HashSet::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a relative output name.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates the directory of `rel` (an output name) and checks it stays inside the root.
    pub fn prepare(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let target = self.root.join(rel);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if !checked.contains(&dir) {
            fsutil::create_dir_all(&dir)?;
            let real = dir.canonicalize().map_err(|e| FsError::new("cannot resolve", &dir, e))?;
            if !real.starts_with(&self.canonical_root) {
                return Err(StoreError::Escape { path: dir, root: self.canonical_root.clone() });
            }
            fsutil::remove_temp_files(&dir);
            checked.insert(dir);
        }
        Ok(target)
    }

    /// Where `stem.ext` and its sidecar `stem.json` go: the directory made and checked, neither
    /// path a symlink out of the output directory.
    fn targets(&self, stem: &str, ext: &str) -> Result<Targets, StoreError> {
        let image_rel = format!("{stem}.{ext}");
        let sidecar_rel = format!("{stem}.json");
        let image_path = self.prepare(&image_rel)?;
        let sidecar_path = self.root.join(&sidecar_rel);
        refuse_symlink(&image_path, &self.canonical_root)?;
        refuse_symlink(&sidecar_path, &self.canonical_root)?;
        Ok(Targets { image_rel, image_path, sidecar_rel, sidecar_path })
    }

    /// Writes an image (`stem.ext`) and its sidecar (`stem.json`), durably, image first.
    pub fn write_image(&self, stem: &str, ext: &str, image: &[u8], sidecar: &[u8]) -> Result<Written, StoreError> {
        let Targets { image_rel, image_path, sidecar_rel, sidecar_path } = self.targets(stem, ext)?;
        fsutil::write_atomic_parts(&image_path, &[image], false)?;
        fsutil::write_atomic_parts(&sidecar_path, &[sidecar], true)?;
        let meta = fsutil::metadata(&image_path).map_err(|e| FsError::new("cannot read", &image_path, e))?;
        Ok(Written { path: image_rel, sidecar: sidecar_rel, bytes: meta.len(), mtime_ns: mtime_ns(&meta) })
    }

    /// Starts an image that arrives in pieces: a temp file in the directory of `stem`, to be
    /// completed by [`OutputStore::commit_image`] (or dropped, which deletes it).
    pub fn begin_image(&self, stem: &str) -> Result<PendingImage, StoreError> {
        let target = self.prepare(stem)?;
        let dir = target.parent().unwrap_or(&self.root);
        let file = tempfile::Builder::new()
            .prefix(fsutil::TEMP_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| FsError::new("cannot create a temporary file in", dir, e))?;
        Ok(PendingImage { file })
    }

    /// Makes a received image durable as `stem.ext`, then its sidecar, as [`OutputStore::write_image`].
    pub fn commit_image(
        &self,
        pending: PendingImage,
        stem: &str,
        ext: &str,
        sidecar: &[u8],
    ) -> Result<Written, StoreError> {
        let Targets { image_rel, image_path, sidecar_rel, sidecar_path } = self.targets(stem, ext)?;
        let file = pending.file;
        file.as_file().sync_all().map_err(|e| FsError::new("cannot sync", file.path(), e))?;
        // The size and time recorded are the file's own, read before it is visible by name.
        let meta = file.as_file().metadata().map_err(|e| FsError::new("cannot read", file.path(), e))?;
        file.persist(&image_path).map_err(|e| FsError::new("cannot rename into", &image_path, e.error))?;
        fsutil::write_atomic_parts(&sidecar_path, &[sidecar], true)?;
        Ok(Written { path: image_rel, sidecar: sidecar_rel, bytes: meta.len(), mtime_ns: mtime_ns(&meta) })
    }

    /// Writes a state file under `.nanobatch/` (conversation turns).
    pub fn write_state(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.prepare(rel)?;
        fsutil::write_atomic(&path, bytes)?;
        Ok(())
    }
}

/// An image being received (a temp file, deleted if dropped before it is committed).
#[derive(Debug)]
pub struct PendingImage {
    file: tempfile::NamedTempFile,
}

impl PendingImage {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        use std::io::Write;
        self.file.write_all(bytes).map_err(|e| FsError::new("cannot write", self.file.path(), e))
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A file at the target that is a symlink would make the rename replace the link, not follow
/// it; but a symlink there is a sign of tampering, so refuse.
/// An image's and its sidecar's paths, relative to the output directory and absolute.
struct Targets {
    image_rel: String,
    image_path: PathBuf,
    sidecar_rel: String,
    sidecar_path: PathBuf,
}

fn refuse_symlink(path: &Path, root: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(StoreError::Escape { path: path.to_path_buf(), root: root.to_path_buf() })
        }
        _ => Ok(()),
    }
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::{OutputStore, StoreError};

    #[test]
    fn writes_image_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        let w = store.write_image("job/a-1x1", "png", b"\x89PNG...", b"{}").unwrap();
        assert_eq!(w.path, "job/a-1x1.png");
        assert_eq!(std::fs::read(dir.path().join("job/a-1x1.png")).unwrap(), b"\x89PNG...");
        assert_eq!(std::fs::read(dir.path().join("job/a-1x1.json")).unwrap(), b"{}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("job"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".nanobatch-tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_subdirectory_pointing_outside_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("job")).unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        let err = store.write_image("job/a", "png", b"x", b"{}").unwrap_err();
        assert!(matches!(err, StoreError::Escape { .. }), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
