//! Real images of the exact catalogue size, generated once per size and style and then served
//! from memory as base64.
//!
//! Every response still carries unique bytes: a PNG `tEXt` chunk naming the request is appended
//! before `IEND`. The cached part's length is a multiple of 3, so its base64 can be concatenated
//! with the tail's base64 without re-encoding megabytes per response. Benchmarks can pad images
//! to realistic sizes (≈1.5 MB at 1K) with an incompressible private chunk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Number of colour styles; the prompt picks one.
const STYLES: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageKey {
    pub width: u32,
    pub height: u32,
    pub style: u32,
    pub jpeg: bool,
    /// Target file size in bytes (0: no padding).
    pub pad_to: usize,
}

/// A cached image: base64 of everything up to (not including) `IEND`, length-aligned.
#[derive(Debug)]
pub struct CachedImage {
    pub head_b64: Bytes,
    pub head_len: usize,
    pub jpeg: bool,
}

#[derive(Debug, Default)]
pub struct ImageCache {
    slots: Mutex<HashMap<ImageKey, Arc<OnceLock<Arc<CachedImage>>>>>,
}

impl ImageCache {
    pub fn get(&self, key: ImageKey) -> Arc<CachedImage> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key).or_default().clone()
        };
        slot.get_or_init(|| Arc::new(render(key))).clone()
    }
}

pub fn style_for(prompt_hash: &[u8; 32]) -> u32 {
    u32::from(prompt_hash[0]) % STYLES
}

/// The base64 of the unique tail for `label` (a `tEXt` chunk and `IEND`), or nothing for JPEG.
pub fn tail_b64(image: &CachedImage, label: &str) -> String {
    if image.jpeg {
        return String::new();
    }
    let mut tail = Vec::with_capacity(64 + label.len());
    push_chunk(&mut tail, b"tEXt", format!("nanobatch-mock\0{label}").as_bytes());
    push_chunk(&mut tail, b"IEND", b"");
    STANDARD.encode(tail)
}

/// Decoded bytes of a whole image (head + tail), for small images and tests.
pub fn full_bytes(image: &CachedImage, label: &str) -> Vec<u8> {
    let mut b64 = String::from_utf8_lossy(&image.head_b64).into_owned();
    b64.push_str(&tail_b64(image, label));
    STANDARD.decode(b64).unwrap_or_default()
}

fn render(key: ImageKey) -> CachedImage {
    let pixels = paint(key.width, key.height, key.style);
    if key.jpeg {
        let mut out = Vec::new();
        let encoder = JpegEncoder::new_with_quality(&mut out, 85);
        let _ = pixels.write_with_encoder(encoder);
        let head_len = out.len();
        return CachedImage { head_b64: Bytes::from(STANDARD.encode(&out)), head_len, jpeg: true };
    }
    let mut png = Vec::new();
    let encoder = PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Sub);
    let _ = encoder.write_image(pixels.as_raw(), key.width, key.height, image::ExtendedColorType::Rgb8);
    // Drop IEND (the last 12 bytes); it is re-added in every tail.
    png.truncate(png.len().saturating_sub(12));
    let tail_estimate = 60;
    if key.pad_to > png.len() + tail_estimate + 12 {
        let mut filler = vec![0u8; key.pad_to - png.len() - tail_estimate - 12];
        StdRng::seed_from_u64(u64::from(key.width) << 32 | u64::from(key.height)).fill_bytes(&mut filler);
        push_chunk(&mut png, b"npAd", &filler);
    }
    // Align to a multiple of 3 with a private chunk of 0–2 bytes.
    let rem = (png.len() + 12) % 3;
    let pad = (3 - rem) % 3;
    push_chunk(&mut png, b"npAl", &[0u8; 2][..pad]);
    debug_assert_eq!(png.len() % 3, 0);
    let head_len = png.len();
    CachedImage { head_b64: Bytes::from(STANDARD.encode(&png)), head_len, jpeg: false }
}

/// A soft diagonal gradient between two colours of the style, with a frame: recognisable in a
/// contact sheet, cheap to compress.
fn paint(width: u32, height: u32, style: u32) -> RgbImage {
    const PALETTE: [([u8; 3], [u8; 3]); STYLES as usize] = [
        ([255, 214, 102], [239, 71, 111]),
        ([6, 214, 160], [17, 138, 178]),
        ([131, 56, 236], [58, 134, 255]),
        ([255, 190, 11], [251, 86, 7]),
        ([141, 153, 174], [43, 45, 66]),
        ([233, 196, 106], [42, 157, 143]),
    ];
    let (a, b) = PALETTE[(style % STYLES) as usize];
    let span = (width + height).max(1) as f32;
    let frame = (width.min(height) / 24).max(2);
    let mut img = RgbImage::new(width, height);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = (x + y) as f32 / span;
        let on_frame = x < frame || y < frame || x >= width - frame || y >= height - frame;
        *px = if on_frame {
            image::Rgb([250, 250, 250])
        } else {
            image::Rgb([mix(a[0], b[0], t), mix(a[1], b[1], t), mix(a[2], b[2], t)])
        };
    }
    img
}

fn mix(a: u8, b: u8, t: f32) -> u8 {
    (f32::from(a) * (1.0 - t) + f32::from(b) * t) as u8
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::{ImageCache, ImageKey, full_bytes};
    use crate::media::{ImageKind, dimensions, sniff};

    #[test]
    fn images_have_the_exact_size_and_unique_valid_tails() {
        let cache = ImageCache::default();
        let key = ImageKey { width: 688, height: 384, style: 1, jpeg: false, pad_to: 0 };
        let img = cache.get(key);
        let a = full_bytes(&img, "task-a");
        let b = full_bytes(&img, "task-b");
        assert_ne!(a, b);
        assert_eq!(sniff(&a), Some(ImageKind::Png));
        assert_eq!(dimensions(&a, ImageKind::Png), Some((688, 384)));
        let decoded = image::load_from_memory(&b).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (688, 384));
    }

    #[test]
    fn padding_reaches_the_target_size() {
        let cache = ImageCache::default();
        let key = ImageKey { width: 256, height: 256, style: 0, jpeg: false, pad_to: 300_000 };
        let bytes = full_bytes(&cache.get(key), "x");
        assert!((299_000..301_000).contains(&bytes.len()), "{}", bytes.len());
        assert!(image::load_from_memory(&bytes).is_ok());
    }

    #[test]
    fn jpeg_is_jpeg() {
        let cache = ImageCache::default();
        let key = ImageKey { width: 64, height: 48, style: 2, jpeg: true, pad_to: 0 };
        let bytes = full_bytes(&cache.get(key), "x");
        assert_eq!(sniff(&bytes), Some(ImageKind::Jpeg));
        assert_eq!(dimensions(&bytes, ImageKind::Jpeg), Some((64, 48)));
    }
}
