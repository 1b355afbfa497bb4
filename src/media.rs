//! Image bytes: what they are (sniffed from magic numbers, never from a name or a declared MIME
//! type), how big they are (from the header, without decoding pixels), and small thumbnails for
//! the contact sheet.

pub mod integrity;

use std::io::Cursor;

pub use integrity::Integrity;

use image::{ImageFormat, ImageReader};

/// Image types the API accepts as input, and the ones it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
    Heic,
    Heif,
    Gif,
}

impl ImageKind {
    pub const ALL: [ImageKind; 6] =
        [ImageKind::Png, ImageKind::Jpeg, ImageKind::Webp, ImageKind::Heic, ImageKind::Heif, ImageKind::Gif];

    /// The kind whose MIME type is `mime` (as sidecars and journal records name it).
    pub fn from_mime(mime: &str) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|k| k.mime().eq_ignore_ascii_case(mime))
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Webp => "image/webp",
            ImageKind::Heic => "image/heic",
            ImageKind::Heif => "image/heif",
            ImageKind::Gif => "image/gif",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpg",
            ImageKind::Webp => "webp",
            ImageKind::Heic => "heic",
            ImageKind::Heif => "heif",
            ImageKind::Gif => "gif",
        }
    }

    /// The API accepts png, jpeg, webp, heic and heif as input (not gif).
    pub fn accepted_as_input(self) -> bool {
        !matches!(self, ImageKind::Gif)
    }

    fn image_format(self) -> Option<ImageFormat> {
        match self {
            ImageKind::Png => Some(ImageFormat::Png),
            ImageKind::Jpeg => Some(ImageFormat::Jpeg),
            ImageKind::Webp => Some(ImageFormat::WebP),
            _ => None,
        }
    }
}

/// The image type from its first bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(ImageKind::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ImageKind::Jpeg);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(ImageKind::Webp);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(ImageKind::Gif);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some(ImageKind::Heic),
            b"mif1" | b"msf1" | b"heif" => Some(ImageKind::Heif),
            _ => None,
        };
    }
    None
}

/// Width and height from the header (no pixel decoding). `None` for types the `image` crate
/// cannot read (HEIC) or for a corrupt header.
pub fn dimensions(bytes: &[u8], kind: ImageKind) -> Option<(u32, u32)> {
    let format = kind.image_format()?;
    ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().ok()
}

/// Pixel size from a file's header (when the first bytes in memory were not enough).
pub fn file_dimensions(path: &std::path::Path, kind: ImageKind) -> Option<(u32, u32)> {
    let format = kind.image_format()?;
    let file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    ImageReader::with_format(file, format).into_dimensions().ok()
}

/// A JPEG thumbnail no larger than `max_side` on its longer side (quality 80).
pub fn thumbnail_jpeg(bytes: &[u8], max_side: u32) -> Result<Vec<u8>, image::ImageError> {
    let img = image::load_from_memory(bytes)?;
    let thumb = img.thumbnail(max_side, max_side).to_rgb8();
    let mut out = Vec::with_capacity(16 << 10);
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    thumb.write_with_encoder(encoder)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{ImageKind, sniff};

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageKind::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageKind::Jpeg));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0"), Some(ImageKind::Heic));
        assert_eq!(sniff(b"hello, I am a text file"), None);
    }
}
