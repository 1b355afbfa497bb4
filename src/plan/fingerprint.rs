//! Task fingerprints: a SHA-256 over everything that affects a task's output.
//!
//! The fingerprint is the checkpoint key: a journaled success whose fingerprint matches the plan
//! is never requested again, and a change to any input re-runs exactly the tasks it touches. It
//! is built from four parts, each hashed on its own, so that `plan` can say *why* a task must
//! run again ("prompt changed", "reference image changed", …):
//! - `prompt`: the rendered prompt and system instruction;
//! - `refs`: the bytes of every reference image (by hash), their order and kind;
//! - `config`: model, aspect ratio, wire size, modalities, thinking, grounding, temperature,
//!   seed, and the variant number (so that `repeat` variants are distinct tasks);
//! - `upstream`: the fingerprints of the tasks whose images feed this one (`from:` edges and,
//!   for a conversation, the previous step).
//!
//! Fields are length-prefixed so that no two different inputs hash the same bytes.

use std::fmt;

use sha2::{Digest, Sha256};

/// Version of the fingerprint scheme; bumping it re-runs everything, so it changes only when
/// the request format changes in a way that changes outputs.
const SCHEME: &[u8] = b"nanobatch-fingerprint-v1";

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Fingerprint> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Fingerprint(out))
    }

    /// The first 12 hex digits, for file names and messages.
    pub fn short(self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The four part hashes (first 8 bytes each) kept in the journal to explain a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Parts {
    pub prompt: u64,
    pub refs: u64,
    pub config: u64,
    pub upstream: u64,
}

impl Parts {
    /// What differs between the journaled parts (`self`) and the plan's (`now`).
    pub fn changes(&self, now: &Parts) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.prompt != now.prompt {
            out.push("prompt changed");
        }
        if self.refs != now.refs {
            out.push("reference image changed");
        }
        if self.config != now.config {
            out.push("settings changed");
        }
        if self.upstream != now.upstream {
            out.push("upstream changed");
        }
        out
    }

    pub fn to_hex(self) -> String {
        format!("{:016x}{:016x}{:016x}{:016x}", self.prompt, self.refs, self.config, self.upstream)
    }

    pub fn from_hex(text: &str) -> Option<Parts> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let part = |i: usize| u64::from_str_radix(&text[i * 16..(i + 1) * 16], 16).ok();
        Some(Parts { prompt: part(0)?, refs: part(1)?, config: part(2)?, upstream: part(3)? })
    }
}

/// Feeds length-prefixed fields into one SHA-256.
#[derive(Default)]
pub struct FieldHasher(Sha256);

impl FieldHasher {
    pub fn new(domain: &str) -> FieldHasher {
        let mut h = FieldHasher(Sha256::new());
        h.bytes(domain.as_bytes());
        h
    }

    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    pub fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }

    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.bytes(b"\x01").str(v),
            None => self.bytes(b"\x00"),
        }
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    pub fn finish_u64(self) -> u64 {
        let full = self.finish();
        u64::from_be_bytes(full[..8].try_into().unwrap_or([0; 8]))
    }
}

/// Combines the part hashes into the task fingerprint.
pub fn combine(prompt: &[u8; 32], refs: &[u8; 32], config: &[u8; 32], upstream: &[u8; 32]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(SCHEME);
    h.update(prompt);
    h.update(refs);
    h.update(config);
    h.update(upstream);
    Fingerprint(h.finalize().into())
}

/// The first 8 bytes of a part hash, for [`Parts`].
pub fn short64(hash: &[u8; 32]) -> u64 {
    u64::from_be_bytes(hash[..8].try_into().unwrap_or([0; 8]))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::{FieldHasher, Fingerprint, Parts};

    #[test]
    fn length_prefixing_separates_fields() {
        let mut a = FieldHasher::new("t");
        a.str("ab").str("c");
        let mut b = FieldHasher::new("t");
        b.str("a").str("bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn hex_round_trips() {
        let f = Fingerprint([7; 32]);
        assert_eq!(Fingerprint::from_hex(&f.to_hex()), Some(f));
        let p = Parts { prompt: 1, refs: 2, config: u64::MAX, upstream: 0 };
        assert_eq!(Parts::from_hex(&p.to_hex()), Some(p));
        assert_eq!(Parts::from_hex("zz"), None);
    }

    #[test]
    fn changes_are_named() {
        let a = Parts { prompt: 1, refs: 2, config: 3, upstream: 4 };
        let b = Parts { prompt: 9, refs: 2, config: 3, upstream: 8 };
        assert_eq!(a.changes(&b), ["prompt changed", "upstream changed"]);
    }
}
