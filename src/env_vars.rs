//! Every environment variable nanobatch reads.

/// The API key (Google's SDKs read both; `GOOGLE_API_KEY` wins when both are set).
pub const GEMINI_API_KEY: &str = "GEMINI_API_KEY";
pub const GOOGLE_API_KEY: &str = "GOOGLE_API_KEY";
/// Base URL override (the SDK's variable): a proxy or the emulator.
pub const GOOGLE_GEMINI_BASE_URL: &str = "GOOGLE_GEMINI_BASE_URL";
/// Log filter for `tracing` (e.g. `nanobatch=debug`).
pub const NANOBATCH_LOG: &str = "NANOBATCH_LOG";
/// Disables colour.
pub const NO_COLOR: &str = "NO_COLOR";
/// `0` writes images through the page cache; by default they are written with direct I/O where
/// the file system allows it (see `checkpoint::store`).
pub const NANOBATCH_DIRECT_IO: &str = "NANOBATCH_DIRECT_IO";

/// Reads a variable; empty counts as unset.
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
