//! Thought signatures the emulator issues and checks.
//!
//! A real signature is opaque encrypted bytes (a protobuf starting with `0x12`, so its base64
//! starts with `E`). Ours is `0x12 0x20` + SHA-256(secret, the part's payload), where the payload
//! is sampled (length, first 64 and last 256 bytes) so that checking a 10 MB image part costs
//! nothing. A signature moved to another part, or a part altered, fails the check, as on the
//! real API ("Corrupted thought signature").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

pub fn sign(secret: &[u8], payload: &[u8]) -> String {
    let tail = &payload[payload.len().saturating_sub(TAIL)..];
    sign_sampled(secret, payload.len(), &payload[..payload.len().min(HEAD)], tail)
}

/// Signs a payload known only by its length, first [`HEAD`] and last [`TAIL`] bytes (the
/// emulator never holds a response's image string in one piece).
pub fn sign_sampled(secret: &[u8], len: usize, head: &[u8], tail: &[u8]) -> String {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&digest(secret, len, head, tail));
    STANDARD.encode(bytes)
}

/// Whether `signature` is the one this emulator issued for `payload` (or a documented dummy).
pub fn verify(secret: &[u8], payload: &[u8], signature: &str) -> bool {
    // The documented dummy values skip validation for history the model did not produce.
    if signature == "skip_thought_signature_validator" || signature == "context_engineering_is_the_way_to_go" {
        return true;
    }
    let Ok(bytes) = STANDARD.decode(signature) else { return false };
    let tail = &payload[payload.len().saturating_sub(TAIL)..];
    let want = digest(secret, payload.len(), &payload[..payload.len().min(HEAD)], tail);
    bytes.len() == 34 && bytes[..2] == [0x12, 0x20] && bytes[2..] == want
}

pub const HEAD: usize = 64;
pub const TAIL: usize = 256;

fn digest(secret: &[u8], len: usize, head: &[u8], tail: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update((len as u64).to_le_bytes());
    h.update(head);
    h.update(tail);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::{sign, verify};

    #[test]
    fn signatures_bind_to_their_part() {
        let s = sign(b"secret", b"payload one");
        assert!(s.starts_with('E'));
        assert!(verify(b"secret", b"payload one", &s));
        assert!(!verify(b"secret", b"payload two", &s));
        assert!(!verify(b"other", b"payload one", &s));
    }
}
