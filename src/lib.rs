//! nanobatch: run large, unattended batches of Gemini image generation from YAML manifests.
//!
//! The pipeline is `manifest` (YAML + CSV + reference images → validated model) → `plan` (a DAG
//! of tasks with fingerprints and exact estimates) → `exec` (bounded concurrency, rate limits,
//! retries, budget, journal) → images, sidecars and reports. See ARCHITECTURE.md for the map.

pub mod api;
pub mod buffers;
pub mod catalog;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod env_vars;
pub mod exec;
pub mod exit_code;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod manifest;
pub mod media;
pub mod memory;
pub mod mock;
pub mod plan;
pub mod redact;
pub mod report;
pub mod review;
pub mod ui;

/// Logs (`tracing`) go to stderr, filtered by `NANOBATCH_LOG` (default: warnings). Panics are
/// scrubbed of secrets before they are printed.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::NANOBATCH_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(redact::RedactingStderr).try_init();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned());
        match payload {
            Some(text) => {
                let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                tracing::error!("nanobatch crashed{location}: {}", redact::redact_text(&text));
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "nanobatch crashed{location}: {}\nthis is a bug; please report it\n",
                        redact::redact_text(&text)
                    )
                    .as_bytes(),
                );
            }
            None => default(info),
        }
    }));
}
