//! Thumbnails for the contact sheet: small JPEGs (256 px on the longer side) written once per
//! image content under `.nanobatch/thumbs/`.
//!
//! A run makes them in the background as images arrive ([`Background`]), so that the report at
//! its end only links them; whatever the background could not keep up with (it drops work
//! rather than hold up the run or queue without bound) is made by [`ensure`] at report time, in
//! parallel on every core.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
    let failed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for part in missing.chunks(chunk) {
            let failed = &failed;
            scope.spawn(move || {
                for (image, thumb) in part {
                    if !make(image, thumb) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    failed.into_inner()
}

/// The thumbnail of one image (`image_rel` relative to `root`, content hash `hash`), made now
/// if it is missing; `None` if the image cannot be read or decoded.
pub fn ensure_one(root: &Path, image_rel: &str, hash: &str) -> Option<PathBuf> {
    let thumb = root.join(thumb_rel(hash));
    if thumb.exists() {
        return Some(thumb);
    }
    let _ = fsutil::create_dir_all(&root.join(RunDir::thumbs_rel()));
    make(&root.join(image_rel), &thumb).then_some(thumb)
}

/// Reads `image` and writes its thumbnail to `thumb`; false if the image cannot be read or decoded.
fn make(image: &Path, thumb: &Path) -> bool {
    std::fs::read(image)
        .ok()
        .and_then(|bytes| media::thumbnail_jpeg(&bytes, MAX_SIDE).ok())
        .is_some_and(|jpeg| fsutil::write_atomic_parts(thumb, &[&jpeg], false).is_ok())
}

/// Images waiting for a background thumbnail; beyond this, offers are dropped (and made at
/// report time instead). Paths only: a full queue holds a few kilobytes.
const QUEUE: usize = 256;

/// Thumbnails made during a run, off the async runtime, by one thread per four cores (at least
/// one): on a small machine receiving images keeps most of the CPU. A thumbnail of a 4K image
/// decodes 48 MB of pixels, so the number of threads, not `-j`, bounds that memory.
pub struct Background {
    sender: Mutex<Option<SyncSender<(PathBuf, PathBuf)>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    root: PathBuf,
    dropped: AtomicUsize,
}

impl Background {
    pub fn start(root: &Path) -> Background {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1));
        let workers = (0..threads)
            .filter_map(|i| {
                let (receiver, stop) = (receiver.clone(), stop.clone());
                std::thread::Builder::new().name(format!("thumbs-{i}")).spawn(move || work(&receiver, &stop)).ok()
            })
            .collect();
        let _ = fsutil::create_dir_all(&root.join(RunDir::thumbs_rel()));
        Background {
            sender: Mutex::new(Some(sender)),
            workers: Mutex::new(workers),
            stop,
            root: root.to_path_buf(),
            dropped: AtomicUsize::new(0),
        }
    }

    /// Asks for the thumbnail of `image_rel` (relative to the run directory) with content hash
    /// `sha256`; never blocks.
    pub fn offer(&self, image_rel: &str, sha256: &str) {
        let job = (self.root.join(image_rel), self.root.join(thumb_rel(sha256)));
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let sent = sender.as_ref().is_some_and(|s| match s.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops taking work and waits for the thumbnails being made; the queue is left to
    /// [`ensure`], which makes it faster on every core. Returns how many offers were dropped
    /// because the queue was full.
    pub fn finish(&self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.close();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for worker in workers {
            let _ = worker.join();
        }
        self.dropped.load(Ordering::Relaxed)
    }

    fn close(&self) {
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.close();
    }
}

fn work(receiver: &Mutex<Receiver<(PathBuf, PathBuf)>>, stop: &AtomicBool) {
    loop {
        let next = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((image, thumb)) = next else { return };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if !thumb.exists() {
            make(&image, &thumb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Background, thumb_rel};

    #[test]
    fn background_thumbnails_are_made_and_dropped_work_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbImage::from_pixel(300, 200, image::Rgb([200, 30, 30])).save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("broken.png"), b"not an image").unwrap();
        let sha = "ab".repeat(32);
        let background = Background::start(dir.path());
        background.offer("a.png", &sha);
        background.offer("broken.png", &"cd".repeat(32));
        // Give the worker time to take both before finish() abandons the queue.
        let thumb_path = dir.path().join(thumb_rel(&sha));
        for _ in 0..500 {
            if thumb_path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(background.finish(), 0);
        let thumb = image::open(&thumb_path).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 171));
        assert!(!dir.path().join(thumb_rel(&"cd".repeat(32))).exists());
    }
}
