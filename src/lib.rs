//! nanobatch: run large, unattended batches of Gemini image generation from YAML manifests.
//!
//! The pipeline is `manifest` (YAML + CSV + reference images → validated model) → `plan` (a DAG
//! of tasks with fingerprints and exact estimates) → `exec` (bounded concurrency, rate limits,
//! retries, budget, journal) → images, sidecars and reports. See ARCHITECTURE.md for the map.

pub mod api;
pub mod catalog;
pub mod fsutil;
pub mod manifest;
pub mod media;
pub mod plan;
pub mod redact;
