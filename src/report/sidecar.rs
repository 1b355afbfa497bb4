//! The sidecar written next to every image (`<name>.json`): everything needed to know where the
//! image came from and what it cost, without the journal. Nothing secret: no key, no URL with a
//! key, no request headers.

use serde::Serialize;

use crate::catalog::{Tier, TokenCounts, Usd};

pub const SIDECAR_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct Sidecar<'a> {
    pub sidecar_version: u32,
    pub tool: &'static str,
    pub task_id: &'a str,
    pub fingerprint: &'a str,
    pub job: &'a str,
    pub key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'a str>,
    pub variant: u32,
    /// The prompt of this turn as sent.
    pub prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'a str>,
    pub variables: Vec<(&'a str, &'a str)>,
    pub model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<&'a str>,
    pub aspect_ratio: &'a str,
    pub image_size: &'a str,
    pub expected_pixels: (u32, u32),
    pub pixels: (u32, u32),
    pub mime_type: &'a str,
    /// The MIME type the response declared, when it differs from the bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_mime_type: Option<&'a str>,
    /// The image's BLAKE3 (hex; `b3sum` prints the same).
    pub blake3: &'a str,
    pub references: Vec<SidecarRef<'a>>,
    pub usage: TokenCounts,
    pub cost_usd: Usd,
    pub tier: Tier,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<&'a str>,
    /// The model's visible text.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub text: &'a str,
    /// Sources the model grounded on; they must be shown with the image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grounding: Vec<SidecarSource<'a>>,
    pub created: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SidecarRef<'a> {
    pub path: &'a str,
    pub sha256: String,
    pub kind: &'static str,
    /// Set for images taken from another task (`from:` edges, earlier turns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SidecarSource<'a> {
    pub uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_uri: Option<&'a str>,
}

/// What a sidecar says about its image, read back: to adopt a finished output the journal does
/// not know, and to name a superseded one. Unknown fields are ignored; a sidecar that does not
/// parse, or is of a newer version, is as good as none.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SidecarRead {
    pub sidecar_version: u32,
    pub task_id: String,
    pub fingerprint: String,
    /// Sidecars from before BLAKE3 carry `sha256`.
    #[serde(default)]
    pub blake3: String,
    #[serde(default)]
    pub sha256: String,
    pub mime_type: String,
    pub pixels: (u32, u32),
    #[serde(default)]
    pub expected_pixels: Option<(u32, u32)>,
    #[serde(default)]
    pub usage: TokenCounts,
    #[serde(default)]
    pub cost_usd: Usd,
    pub tier: Tier,
    pub attempt: u32,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub response_id: Option<String>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub grounding: Vec<SourceRead>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct SourceRead {
    pub uri: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub image_uri: Option<String>,
}

impl SidecarRead {
    /// The sidecar at `path`, if there is a readable one of a version this build knows.
    pub fn read(path: &std::path::Path) -> Option<SidecarRead> {
        let bytes = std::fs::read(path).ok()?;
        let sidecar: SidecarRead = serde_json::from_slice(&bytes).ok()?;
        (sidecar.sidecar_version <= SIDECAR_VERSION).then_some(sidecar)
    }

    /// The recorded content hash of the image and how to check it.
    pub fn content_hash(&self) -> (crate::digest::Algorithm, &str) {
        if self.blake3.is_empty() {
            (crate::digest::Algorithm::Sha256, &self.sha256)
        } else {
            (crate::digest::Algorithm::Blake3, &self.blake3)
        }
    }
}
