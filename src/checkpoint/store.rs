//! Output files: every image and sidecar is written to a temp file in its target directory,
//! fsynced and renamed into place before the journal hears of it. Directories are created on
//! demand and checked once to resolve inside the output directory (a symlinked subdirectory
//! pointing elsewhere is refused). An image already at the target is moved aside first
//! ([`super::superseded`]), never overwritten.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use super::records::SupersededRecord;
use crate::buffers::{BufferPool, Pooled};
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
    /// The image that was at the target before, moved aside (to be journaled).
    pub superseded: Option<SupersededRecord>,
}

/// The task an output belongs to: names what an image moved out of its way is superseded by.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub fp: &'a str,
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
    pub fn write_image(
        &self,
        stem: &str,
        ext: &str,
        image: &[u8],
        sidecar: &[u8],
        owner: Owner<'_>,
    ) -> Result<Written, StoreError> {
        let Targets { image_rel, image_path, sidecar_rel, sidecar_path } = self.targets(stem, ext)?;
        let superseded = super::superseded::move_aside(&self.root, stem, owner.id, owner.fp)?;
        fsutil::write_atomic_parts(&image_path, &[image], false)?;
        fsutil::write_atomic_parts(&sidecar_path, &[sidecar], true)?;
        let meta = fsutil::metadata(&image_path).map_err(|e| FsError::new("cannot read", &image_path, e))?;
        Ok(Written { path: image_rel, sidecar: sidecar_rel, bytes: meta.len(), mtime_ns: mtime_ns(&meta), superseded })
    }

    /// Starts an image that arrives in pieces: a temp file in the directory of `stem`, to be
    /// completed by [`OutputStore::commit_image`] (or dropped, which deletes it).
    pub fn begin_image(&self, stem: &str) -> Result<PendingImage, StoreError> {
        let target = self.prepare(stem)?;
        let dir = target.parent().unwrap_or(&self.root);
        Ok(PendingImage::new(fsutil::temp_file_in(dir)?))
    }

    /// Makes a received image durable as `stem.ext`, then its sidecar, as [`OutputStore::write_image`].
    pub fn commit_image(
        &self,
        pending: PendingImage,
        stem: &str,
        ext: &str,
        sidecar: &[u8],
        owner: Owner<'_>,
    ) -> Result<Written, StoreError> {
        let Targets { image_rel, image_path, sidecar_rel, sidecar_path } = self.targets(stem, ext)?;
        let file = pending.finish()?;
        file.as_file().sync_all().map_err(|e| FsError::new("cannot sync", file.path(), e))?;
        // The size and time recorded are the file's own, read before it is visible by name.
        let meta = file.as_file().metadata().map_err(|e| FsError::new("cannot read", file.path(), e))?;
        let superseded = super::superseded::move_aside(&self.root, stem, owner.id, owner.fp)?;
        file.persist(&image_path).map_err(|e| FsError::new("cannot rename into", &image_path, e.error))?;
        fsutil::write_atomic_parts(&sidecar_path, &[sidecar], true)?;
        Ok(Written { path: image_rel, sidecar: sidecar_rel, bytes: meta.len(), mtime_ns: mtime_ns(&meta), superseded })
    }

    /// Writes a state file under `.nanobatch/` (conversation turns).
    pub fn write_state(&self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.prepare(rel)?;
        fsutil::write_atomic(&path, bytes)?;
        Ok(())
    }
}

/// An image being received (a temp file, deleted if dropped before it is committed).
///
/// Written with direct I/O where the file system allows it: a run writes gigabytes that nothing
/// reads soon, and copying them through the page cache was the largest part of the client's
/// CPU per image (the kernel's copy, then writeback); direct writes go from an aligned staging
/// buffer to the device. Anywhere direct I/O is refused (tmpfs, some network file systems, an
/// odd alignment) the file falls back to ordinary writes, transparently.
#[derive(Debug)]
pub struct PendingImage {
    file: tempfile::NamedTempFile,
    /// The staging buffer while direct I/O is on.
    direct: Option<DirectBuffer>,
    /// Bytes of the image in the file (what is staged comes after them).
    written: u64,
}

/// Direct I/O wants buffers, offsets and lengths aligned to the device's block; 4 KiB covers
/// every common one.
const DIRECT_ALIGN: usize = 4096;
/// Bytes staged before a direct write: a few writes per 1K image, and little memory per image
/// in flight.
const DIRECT_BLOCK: usize = 256 << 10;

/// The aligned staging buffer of a direct-I/O file.
#[derive(Debug)]
struct DirectBuffer {
    raw: Pooled,
    /// Where the aligned `DIRECT_BLOCK` bytes start in `raw`.
    start: usize,
    used: usize,
}

/// Staging buffers of images already written, for the next ones: a fresh allocation per image
/// was a quarter megabyte of page faults and zeroing each time. At most one per image in flight
/// at `-j 64` is kept (16 MiB).
static SPARE_BUFFERS: BufferPool = BufferPool::new(64);

impl DirectBuffer {
    fn new() -> DirectBuffer {
        let mut raw = SPARE_BUFFERS.take();
        raw.resize(DIRECT_BLOCK + DIRECT_ALIGN, 0);
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        DirectBuffer { raw, start, used: 0 }
    }

    fn block(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + DIRECT_BLOCK]
    }
}

impl PendingImage {
    fn new(file: tempfile::NamedTempFile) -> PendingImage {
        let direct = (direct_io_wanted() && set_direct(file.as_file(), true)).then(DirectBuffer::new);
        PendingImage { file, direct, written: 0 }
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), FsError> {
        while !bytes.is_empty() {
            let Some(buffer) = &mut self.direct else { return self.write_buffered(bytes) };
            let take = (DIRECT_BLOCK - buffer.used).min(bytes.len());
            let used = buffer.used;
            buffer.block()[used..used + take].copy_from_slice(&bytes[..take]);
            buffer.used += take;
            bytes = &bytes[take..];
            if buffer.used == DIRECT_BLOCK {
                self.flush_staged()?;
            }
        }
        Ok(())
    }

    /// Writes what is staged at its place: a whole block directly, a last partial one padded to
    /// the alignment (the padding is cut off by [`PendingImage::complete`]).
    fn flush_staged(&mut self) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        let Some(buffer) = &mut self.direct else { return Ok(()) };
        let used = buffer.used;
        let padded = used.next_multiple_of(DIRECT_ALIGN);
        buffer.block()[used..padded].fill(0);
        buffer.used = 0;
        let start = buffer.start;
        match self.file.as_file().write_all_at(&buffer.raw[start..start + padded], self.written) {
            Ok(()) => {
                self.written += used as u64;
                Ok(())
            }
            // Refused for this file after all (alignment, a file system that takes the flag but
            // not the write, a short write): plain writes from here, this block again from its
            // start. A real error (a full disk) fails those too, and is reported from there.
            Err(_) => {
                let staged = buffer.raw[start..start + used].to_vec();
                self.fall_back(&staged)
            }
        }
    }

    /// Direct I/O off; `staged` (what was not written yet) goes through the page cache.
    fn fall_back(&mut self, staged: &[u8]) -> Result<(), FsError> {
        self.direct = None;
        set_direct(self.file.as_file(), false);
        self.write_buffered(staged)
    }

    fn write_buffered(&mut self, bytes: &[u8]) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt;
        let file = self.file.as_file();
        file.write_all_at(bytes, self.written).map_err(|e| FsError::new("cannot write", self.file.path(), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes what is staged and cuts the file to the image's length: from now on the file is
    /// the whole image (to be read for its size, or committed).
    pub fn complete(&mut self) -> Result<(), FsError> {
        if self.direct.is_none() {
            return Ok(());
        }
        self.flush_staged()?;
        self.direct = None;
        self.file.as_file().set_len(self.written).map_err(|e| FsError::new("cannot write", self.file.path(), e))
    }

    fn finish(mut self) -> Result<tempfile::NamedTempFile, FsError> {
        self.complete()?;
        Ok(self.file)
    }

    /// The temp file; it holds the whole image once [`PendingImage::complete`] returned.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// Direct I/O unless `NANOBATCH_DIRECT_IO=0`.
fn direct_io_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| crate::env_vars::get(crate::env_vars::NANOBATCH_DIRECT_IO).is_none_or(|v| v.trim() != "0"))
}

/// Turns direct I/O on or off for an open file; `false` where the system refuses it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_direct(file: &std::fs::File, on: bool) -> bool {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let Ok(flags) = fcntl_getfl(file) else { return false };
    let wanted = if on { flags | OFlags::DIRECT } else { flags - OFlags::DIRECT };
    fcntl_setfl(file, wanted).is_ok()
}

/// Elsewhere images go through the page cache.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_direct(_file: &std::fs::File, _on: bool) -> bool {
    false
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

/// Checks, before anything is sent and without writing, that every directory the plan writes to
/// could be written: each relative directory in `dirs` (and the state directory) exists as a
/// directory or can be created, resolves inside `root` (no symlink out of it), and is writable.
/// Returns one line per problem; an image paid for and then thrown away because its directory
/// was a dangling link or read-only is what this prevents.
pub fn preflight<'a>(root: &Path, dirs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let canonical_root = resolve_existing(root);
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut problems = Vec::new();
    let state = Path::new(super::STATE_DIR);
    let relative = std::iter::once(Path::new("")).chain(std::iter::once(state)).chain(dirs.into_iter().map(Path::new));
    for rel in relative {
        // The deepest folder of the path that exists: the one a write would create the rest in.
        let mut path = PathBuf::new();
        let mut deepest = PathBuf::from(".");
        for part in root.join(rel).components() {
            path.push(part);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => deepest = path.clone(),
                Ok(_) => {
                    problems.push(format!("{} exists and is not a folder", path.display()));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if std::fs::symlink_metadata(&path).is_ok() {
                        problems.push(format!("{} is a symbolic link to nothing", path.display()));
                    }
                    break;
                }
                Err(e) => {
                    problems.push(format!("{} cannot be read: {}", path.display(), fsutil::io_reason(&e)));
                    break;
                }
            }
        }
        if !seen.insert(deepest.clone()) {
            continue;
        }
        let real = resolve_existing(&deepest);
        if deepest.starts_with(root) && deepest != root && !real.starts_with(&canonical_root) {
            problems.push(format!(
                "{} resolves outside the output directory (to {}, through a symbolic link); nanobatch does not write there",
                deepest.display(),
                real.display()
            ));
        } else if let Err(e) = rustix::fs::access(&deepest, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
        {
            problems.push(format!(
                "{} is not writable: {}",
                deepest.display(),
                fsutil::io_reason(&std::io::Error::from(e))
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// `path` with symlinks resolved as far as it exists (the rest appended as it is).
fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            }
            _ => return path.to_path_buf(),
        }
    }
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
    use super::{DIRECT_BLOCK, OutputStore, Owner, StoreError};

    const OWNER: Owner<'static> = Owner { id: "t", fp: "f" };

    fn image_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8).collect()
    }

    /// Pieces of every size, blocks filled exactly and not at all: the committed file is the
    /// bytes written, no more (the padding of the last direct write is cut) and no less.
    #[test]
    fn a_streamed_image_is_exactly_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        for (n, len) in
            [0, 1, 4095, 4096, DIRECT_BLOCK, DIRECT_BLOCK + 1, 3 * DIRECT_BLOCK - 7, 1_500_001].into_iter().enumerate()
        {
            let bytes = image_bytes(len);
            let stem = format!("job/i{n}");
            let mut pending = store.begin_image(&stem).unwrap();
            let mut rest = &bytes[..];
            let mut piece = 1;
            while !rest.is_empty() {
                let take = piece.min(rest.len());
                pending.write(&rest[..take]).unwrap();
                rest = &rest[take..];
                piece = piece * 7 % 300_007 + 1;
            }
            let written = store.commit_image(pending, &stem, "png", b"{}", OWNER).unwrap();
            assert_eq!(written.bytes, len as u64);
            assert_eq!(std::fs::read(dir.path().join(format!("{stem}.png"))).unwrap(), bytes, "length {len}");
        }
    }

    /// When direct I/O is refused half-way (a file system that takes the flag but not the
    /// write), the rest goes through the page cache at the right place.
    #[test]
    fn falling_back_mid_image_keeps_every_byte_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        let bytes = image_bytes(2 * DIRECT_BLOCK + 12_345);
        let mut pending = store.begin_image("job/f").unwrap();
        pending.write(&bytes[..DIRECT_BLOCK + 100]).unwrap();
        let staged = match &pending.direct {
            Some(buffer) => buffer.raw[buffer.start..buffer.start + buffer.used].to_vec(),
            None => Vec::new(),
        };
        pending.fall_back(&staged).unwrap();
        assert!(pending.direct.is_none());
        pending.write(&bytes[DIRECT_BLOCK + 100..]).unwrap();
        let mut pending = pending;
        pending.complete().unwrap();
        assert_eq!(std::fs::read(pending.path()).unwrap(), bytes);
        store.commit_image(pending, "job/f", "png", b"{}", OWNER).unwrap();
        assert_eq!(std::fs::read(dir.path().join("job/f.png")).unwrap(), bytes);
    }

    /// The case the tests above are about, where the file system allows it: the staging
    /// buffer is aligned for direct I/O.
    #[test]
    fn the_staging_buffer_is_aligned() {
        let buffer = super::DirectBuffer::new();
        assert_eq!((buffer.raw.as_ptr() as usize + buffer.start) % super::DIRECT_ALIGN, 0);
        assert!(buffer.raw.len() >= buffer.start + DIRECT_BLOCK);
    }

    #[test]
    fn writes_image_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        let w = store.write_image("job/a-1x1", "png", b"\x89PNG...", b"{}", OWNER).unwrap();
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
        let err = store.write_image("job/a", "png", b"x", b"{}", OWNER).unwrap_err();
        assert!(matches!(err, StoreError::Escape { .. }), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
