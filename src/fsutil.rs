//! Small file-system helpers whose errors say which path failed, and the atomic write used for
//! every artifact (temp file in the target directory → fsync → rename → fsync directory).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix of temporary files; anything with it is a leftover from a crash and may be removed.
pub const TEMP_PREFIX: &str = ".nanobatch-tmp-";

#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {}", path.display(), io_reason(source))]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> FsError {
        FsError { action, path: path.to_path_buf(), source }
    }

    /// Out of space or quota: worth a distinct hint.
    pub fn is_disk_full(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(28) | Some(122))
    }
}

/// The OS reason without the "(os error N)" noise.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

pub fn metadata(path: &Path) -> io::Result<Metadata> {
    fs::metadata(path)
}

pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(|e| FsError::new("cannot read", path, e))
}

pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    fs::read_to_string(path).map_err(|e| FsError::new("cannot read", path, e))
}

/// Reads at most `n` bytes from the start of a file (for sniffing).
pub fn read_prefix(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(n);
    File::open(path)?.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

pub fn create_dir_all(path: &Path) -> Result<(), FsError> {
    fs::create_dir_all(path).map_err(|e| FsError::new("cannot create directory", path, e))
}

/// Writes `bytes` to `target` so that a crash leaves either the old file, the new file, or a
/// temp file that the next start removes; never a partial `target`.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomic_parts(target, &[bytes], true)
}

/// As [`write_atomic`], with the content produced by `fill` into a buffered writer (large files
/// are never held in memory whole).
pub fn write_atomic_with(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), FsError> {
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = temp_file_in(dir)?;
    let mut writer = std::io::BufWriter::with_capacity(256 << 10, temp);
    fill(&mut writer).and_then(|()| writer.flush()).map_err(|e| FsError::new("cannot write", target, e))?;
    let temp = writer.into_inner().map_err(|e| FsError::new("cannot write", target, e.into_error()))?;
    temp.as_file().sync_all().map_err(|e| FsError::new("cannot sync", temp.path(), e))?;
    temp.persist(target).map_err(|e| FsError::new("cannot rename into", target, e.error))?;
    sync_directory(dir)
}

/// As [`write_atomic`], from several slices, with the directory fsync optional (callers that
/// write many files in one directory sync it once).
pub fn write_atomic_parts(target: &Path, parts: &[&[u8]], sync_dir: bool) -> Result<(), FsError> {
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = temp_file_in(dir)?;
    for part in parts {
        temp.write_all(part).map_err(|e| FsError::new("cannot write", temp.path(), e))?;
    }
    temp.as_file().sync_all().map_err(|e| FsError::new("cannot sync", temp.path(), e))?;
    temp.persist(target).map_err(|e| FsError::new("cannot rename into", target, e.error))?;
    if sync_dir {
        sync_directory(dir)?;
    }
    Ok(())
}

/// A temp file in `dir` that becomes an output when renamed, so it is created with the mode any
/// tool's output gets (0666 less the umask: 0644 under the usual 022), not tempfile's private
/// 0600 — images, sidecars and reports are for the team to read.
pub fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile, FsError> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| FsError::new("cannot create a temporary file in", dir, e))
}

/// Makes a rename in `dir` durable.
pub fn sync_directory(dir: &Path) -> Result<(), FsError> {
    match File::open(dir) {
        Ok(f) => f.sync_all().map_err(|e| FsError::new("cannot sync directory", dir, e)),
        Err(e) => Err(FsError::new("cannot open directory", dir, e)),
    }
}

/// Opens a file for appending, creating it.
pub fn open_append(path: &Path) -> Result<File, FsError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| FsError::new("cannot open", path, e))
}

/// Removes crash leftovers (`.nanobatch-tmp-*`) directly inside `dir`; returns how many.
pub fn remove_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

pub fn remove_file(path: &Path) -> Result<(), FsError> {
    fs::remove_file(path).map_err(|e| FsError::new("cannot remove", path, e))
}

pub fn remove_dir_all(path: &Path) -> Result<(), FsError> {
    fs::remove_dir_all(path).map_err(|e| FsError::new("cannot remove", path, e))
}
