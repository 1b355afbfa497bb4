//! Thumbnails for the contact sheet: small JPEGs (256 px on the longer side) written once per
//! image content under `.nanobatch/thumbs/`, made in parallel on every core.

use std::path::{Path, PathBuf};

use crate::checkpoint::RunDir;
use crate::fsutil;
use crate::media;

pub const MAX_SIDE: u32 = 256;

/// The thumbnail's path relative to the run directory, named by the image's hash.
pub fn thumb_rel(sha256: &str) -> String {
    format!("{}/{}.jpg", RunDir::thumbs_rel(), &sha256[..sha256.len().min(32)])
}

/// Makes every missing thumbnail; `images` are (image path relative to root, sha256).
/// Returns how many could not be made (unreadable images).
pub fn ensure(root: &Path, images: &[(String, String)]) -> usize {
    let missing: Vec<(PathBuf, PathBuf)> = images
        .iter()
        .map(|(rel, sha)| (root.join(rel), root.join(thumb_rel(sha))))
        .filter(|(_, thumb)| !thumb.exists())
        .collect();
    if missing.is_empty() {
        return 0;
    }
    let _ = fsutil::create_dir_all(&root.join(RunDir::thumbs_rel()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(missing.len());
    let chunk = missing.len().div_ceil(workers);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for part in missing.chunks(chunk) {
            let failed = &failed;
            scope.spawn(move || {
                for (image, thumb) in part {
                    let ok = std::fs::read(image)
                        .ok()
                        .and_then(|bytes| media::thumbnail_jpeg(&bytes, MAX_SIDE).ok())
                        .is_some_and(|jpeg| fsutil::write_atomic_parts(thumb, &[&jpeg], false).is_ok());
                    if !ok {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    failed.into_inner()
}
