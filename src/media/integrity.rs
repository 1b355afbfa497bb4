//! Whether an image is whole, checked as its bytes go by (every received byte is seen once, on
//! its way to the hash and the file): a PNG's chunks through `IEND`, each with its CRC; a JPEG's
//! segments and entropy-coded data through `EOI`; a WebP's RIFF length. A gateway that cuts an
//! image short, or changes a byte, inside a well-formed 200 is caught before the image counts as
//! a success.
//!
//! Other types (GIF, HEIC) are not checked: the API does not return them.

/// An incremental integrity check; [`Integrity::update`] with every byte in order, then
/// [`Integrity::finish`].
#[derive(Debug)]
pub struct Integrity {
    state: State,
    /// Bytes seen so far.
    seen: u64,
}

#[derive(Debug)]
enum State {
    /// The first bytes, until the type is known.
    Start(Vec<u8>),
    Png(Png),
    Jpeg(Jpeg),
    Webp {
        total: u64,
    },
    Unchecked,
    Broken(String),
}

impl Default for Integrity {
    fn default() -> Self {
        Integrity::new()
    }
}

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Bytes needed to tell the types apart (`RIFF....WEBP`).
const SNIFF: usize = 12;

impl Integrity {
    pub fn new() -> Integrity {
        Integrity { state: State::Start(Vec::with_capacity(SNIFF)), seen: 0 }
    }

    /// Checks a whole image at once.
    pub fn check(bytes: &[u8]) -> Result<(), String> {
        let mut integrity = Integrity::new();
        integrity.update(bytes);
        integrity.finish()
    }

    /// The next bytes of the image.
    pub fn update(&mut self, mut bytes: &[u8]) {
        if let State::Start(head) = &mut self.state {
            let take = (SNIFF - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if head.len() < SNIFF {
                self.seen += take as u64;
                return;
            }
            let head = std::mem::take(head);
            self.state = State::of(&head);
            self.seen = 0;
            self.feed(&head);
        }
        self.feed(bytes);
    }

    fn feed(&mut self, bytes: &[u8]) {
        let at = self.seen;
        self.seen += bytes.len() as u64;
        let result = match &mut self.state {
            State::Png(png) => png.update(bytes, at),
            State::Jpeg(jpeg) => jpeg.update(bytes, at),
            State::Start(_) | State::Webp { .. } | State::Unchecked | State::Broken(_) => Ok(()),
        };
        if let Err(reason) = result {
            self.state = State::Broken(reason);
        }
    }

    /// `Ok` when the image ended whole; else what is wrong with it.
    pub fn finish(&self) -> Result<(), String> {
        if let State::Start(head) = &self.state {
            // Fewer bytes than it takes to tell the type: no image is that short.
            return Err(format!("the image is only {} bytes (cut short)", head.len()));
        }
        let seen = self.seen;
        match &self.state {
            State::Broken(reason) => Err(reason.clone()),
            State::Png(png) if png.ended => Ok(()),
            State::Png(_) => Err(format!("the PNG ends after {seen} bytes, before its IEND chunk (cut short)")),
            State::Jpeg(jpeg) if jpeg.ended => Ok(()),
            State::Jpeg(_) => Err(format!("the JPEG ends after {seen} bytes, before its end marker (cut short)")),
            State::Webp { total } if seen >= *total => Ok(()),
            State::Webp { total } => Err(format!("the WebP is {seen} bytes; its RIFF header says {total} (cut short)")),
            State::Unchecked | State::Start(_) => Ok(()),
        }
    }
}

impl State {
    fn of(head: &[u8]) -> State {
        if head.len() >= 8 && head[..8] == PNG_SIGNATURE[..] {
            State::Png(Png::default())
        } else if head.starts_with(&[0xFF, 0xD8]) {
            State::Jpeg(Jpeg::default())
        } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            State::Webp { total: u64::from(size) + 8 }
        } else {
            State::Unchecked
        }
    }
}

/// A PNG, chunk by chunk: length and type, data (through the CRC), the CRC.
#[derive(Debug, Default)]
struct Png {
    /// Signature, chunk header or CRC bytes gathered so far.
    buf: Vec<u8>,
    phase: PngPhase,
    kind: [u8; 4],
    /// Data bytes of the current chunk still to come.
    left: u64,
    crc: crc32fast::Hasher,
    chunks: u64,
    ended: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum PngPhase {
    #[default]
    Signature,
    Header,
    Data,
    Crc,
}

impl Png {
    fn update(&mut self, mut bytes: &[u8], mut at: u64) -> Result<(), String> {
        while !bytes.is_empty() && !self.ended {
            let used = match self.phase {
                PngPhase::Data => {
                    let take = (self.left.min(bytes.len() as u64)) as usize;
                    self.crc.update(&bytes[..take]);
                    self.left -= take as u64;
                    if self.left == 0 {
                        self.phase = PngPhase::Crc;
                    }
                    take
                }
                phase => {
                    let want = if phase == PngPhase::Crc { 4 } else { 8 };
                    let take = (want - self.buf.len()).min(bytes.len());
                    self.buf.extend_from_slice(&bytes[..take]);
                    if self.buf.len() == want {
                        self.complete(phase, at + take as u64)?;
                        self.buf.clear();
                    }
                    take
                }
            };
            bytes = &bytes[used..];
            at += used as u64;
        }
        Ok(())
    }

    /// A signature, chunk header or CRC is whole (`at`: the offset just after it).
    fn complete(&mut self, phase: PngPhase, at: u64) -> Result<(), String> {
        match phase {
            PngPhase::Signature => {
                self.phase = PngPhase::Header;
            }
            PngPhase::Header => {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                self.kind = [self.buf[4], self.buf[5], self.buf[6], self.buf[7]];
                if len > i32::MAX as u32 || !self.kind.iter().all(u8::is_ascii_alphabetic) {
                    return Err(format!("the PNG has no valid chunk at byte {} (damaged)", at - 8));
                }
                if self.chunks == 0 && &self.kind != b"IHDR" {
                    return Err("the PNG does not start with its IHDR chunk (damaged)".to_owned());
                }
                self.crc = crc32fast::Hasher::new();
                self.crc.update(&self.kind);
                self.left = u64::from(len);
                self.phase = if len == 0 { PngPhase::Crc } else { PngPhase::Data };
            }
            PngPhase::Crc => {
                let expected = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let actual = std::mem::take(&mut self.crc).finalize();
                if expected != actual {
                    let name = String::from_utf8_lossy(&self.kind).into_owned();
                    return Err(format!("the PNG's {name} chunk ending at byte {at} fails its CRC (damaged)"));
                }
                self.chunks += 1;
                self.ended = &self.kind == b"IEND";
                self.phase = PngPhase::Header;
            }
            PngPhase::Data => {}
        }
        Ok(())
    }
}

/// A JPEG: marker segments (skipped by their lengths), then entropy-coded data scanned for the
/// next marker (`FF 00` is a stuffed byte, `FF D0`–`D7` a restart), through `EOI` (`FF D9`).
#[derive(Debug, Default)]
struct Jpeg {
    phase: JpegPhase,
    /// Bytes of a segment still to skip.
    skip: u64,
    /// The first byte of a segment's length, when only one has come.
    len_hi: Option<u8>,
    /// The segment being skipped is a start of scan: entropy-coded data follows it.
    scan: bool,
    ended: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum JpegPhase {
    /// `FF D8`.
    #[default]
    Soi0,
    Soi1,
    /// Expecting `FF` (fill bytes included) before a marker.
    Marker,
    /// After `FF`: the marker's code.
    Code,
    Length,
    Segment,
    Entropy,
    /// `FF` inside entropy-coded data.
    EntropyFf,
}

impl Jpeg {
    fn update(&mut self, bytes: &[u8], at: u64) -> Result<(), String> {
        let mut i = 0;
        while i < bytes.len() && !self.ended {
            let b = bytes[i];
            match self.phase {
                JpegPhase::Soi0 | JpegPhase::Soi1 => {
                    let want = if self.phase == JpegPhase::Soi0 { 0xFF } else { 0xD8 };
                    if b != want {
                        return Err("the JPEG does not start with its start marker (damaged)".to_owned());
                    }
                    self.phase = if self.phase == JpegPhase::Soi0 { JpegPhase::Soi1 } else { JpegPhase::Marker };
                }
                JpegPhase::Marker => {
                    if b != 0xFF {
                        return Err(format!("the JPEG has no marker at byte {} (damaged)", at + i as u64));
                    }
                    self.phase = JpegPhase::Code;
                }
                JpegPhase::Code => self.code(b),
                JpegPhase::Length => match self.len_hi.take() {
                    None => self.len_hi = Some(b),
                    Some(hi) => {
                        let len = u16::from_be_bytes([hi, b]);
                        if len < 2 {
                            return Err(format!(
                                "the JPEG has a bad segment length at byte {} (damaged)",
                                at + i as u64
                            ));
                        }
                        self.skip = u64::from(len - 2);
                        self.phase = if self.skip == 0 { self.after_segment() } else { JpegPhase::Segment };
                    }
                },
                JpegPhase::Segment => {
                    let take = self.skip.min((bytes.len() - i) as u64) as usize;
                    self.skip -= take as u64;
                    i += take;
                    if self.skip == 0 {
                        self.phase = self.after_segment();
                    }
                    continue;
                }
                JpegPhase::Entropy => match memchr::memchr(0xFF, &bytes[i..]) {
                    Some(ff) => {
                        i += ff + 1;
                        self.phase = JpegPhase::EntropyFf;
                        continue;
                    }
                    None => break,
                },
                JpegPhase::EntropyFf => match b {
                    0x00 | 0xD0..=0xD7 => self.phase = JpegPhase::Entropy,
                    0xFF => {}
                    code => self.code(code),
                },
            }
            i += 1;
        }
        Ok(())
    }

    /// A marker's code: EOI ends the image, standalone markers stand alone, the rest have a
    /// length (a start of scan is followed by entropy-coded data).
    fn code(&mut self, code: u8) {
        match code {
            0xFF => self.phase = JpegPhase::Code,
            0xD9 => self.ended = true,
            0x01 | 0xD0..=0xD8 => self.phase = JpegPhase::Marker,
            _ => {
                self.scan = code == 0xDA;
                self.phase = JpegPhase::Length;
            }
        }
    }

    fn after_segment(&mut self) -> JpegPhase {
        if std::mem::take(&mut self.scan) { JpegPhase::Entropy } else { JpegPhase::Marker }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Integrity;
    use crate::mock::images::{ImageCache, ImageKey, full_bytes};

    fn png() -> Vec<u8> {
        full_bytes(
            &ImageCache::default().get(ImageKey { width: 96, height: 64, style: 1, jpeg: false, pad_to: 20_000 }),
            "t",
        )
    }

    fn jpeg() -> Vec<u8> {
        full_bytes(&ImageCache::default().get(ImageKey { width: 96, height: 64, style: 2, jpeg: true, pad_to: 0 }), "t")
    }

    fn webp() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 200, 30]));
        let mut out = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .encode(img.as_raw(), 16, 8, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn in_pieces(bytes: &[u8], piece: usize) -> Result<(), String> {
        let mut integrity = Integrity::new();
        for chunk in bytes.chunks(piece.max(1)) {
            integrity.update(chunk);
        }
        integrity.finish()
    }

    #[test]
    fn whole_images_pass_and_cut_ones_fail() {
        for (name, bytes) in [("png", png()), ("jpeg", jpeg()), ("webp", webp())] {
            assert_eq!(Integrity::check(&bytes), Ok(()), "{name}");
            for cut in [1, 2, 11, 12, 13, bytes.len() / 2, bytes.len() - 1] {
                let e = Integrity::check(&bytes[..bytes.len() - cut]).unwrap_err();
                assert!(e.contains("cut short") || e.contains("damaged"), "{name} -{cut}: {e}");
            }
        }
    }

    #[test]
    fn a_changed_png_byte_fails_its_crc() {
        let mut bytes = png();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        let e = Integrity::check(&bytes).unwrap_err();
        assert!(e.contains("fails its CRC"), "{e}");
    }

    #[test]
    fn trailing_bytes_after_the_end_are_tolerated_and_other_types_are_not_checked() {
        let mut bytes = png();
        bytes.extend_from_slice(b"trailing");
        assert_eq!(Integrity::check(&bytes), Ok(()));
        assert_eq!(Integrity::check(b"GIF89a and more"), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_pieces_give_the_same_verdict(piece in 1usize..5000, cut in 0usize..3000, kind in 0u8..3) {
            let bytes = match kind { 0 => png(), 1 => jpeg(), _ => webp() };
            let cut = cut.min(bytes.len() - 1);
            let bytes = &bytes[..bytes.len() - cut];
            prop_assert_eq!(in_pieces(bytes, piece), Integrity::check(bytes));
            prop_assert_eq!(Integrity::check(bytes).is_ok(), cut == 0);
        }
    }
}
