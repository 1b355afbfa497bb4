//! The built-in Gemini emulator: a faithful local stand-in for `generateContent` (and the Batch
//! and Files APIs) on loopback, used by `run --mock`, `nanobatch mock-server`, the tests and the
//! benchmarks.
//!
//! It follows `reference/gemini-api.md`: auth by header or `?key=`; the real error bodies; per
//! model validation; real images of the exact catalogue size; `usageMetadata` computed by the
//! catalogue's rules (so a plan's estimate and the emulator's usage agree); thought parts and
//! signatures on Gemini 3 models, checked when a conversation replays them; seeded fault
//! injection; and counters at `/_stats`.

pub mod batch;
mod faults;
mod generate;
pub mod hostile;
pub mod images;
pub mod request;
pub mod signature;
pub mod stats;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
pub use faults::{Directives, FaultRates, Latency};
pub use stats::Stats;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Keys accepted; `None` accepts any non-empty key.
    pub api_keys: Option<Vec<String>>,
    /// Requests per minute per model (a sliding window), answered 429 + RetryInfo beyond.
    pub rpm: Option<u32>,
    /// Requests per day per model, answered 429 with a per-day QuotaFailure beyond.
    pub rpd: Option<u32>,
    pub faults: FaultRates,
    pub latency: Latency,
    /// Pad PNGs to about this many bytes per megapixel (0: no padding). 1.45 MB/MP gives
    /// ≈1.5 MB at 1K, ≈6 MB at 2K, ≈24 MB at 4K; see also `pad_cap`.
    pub pad_per_megapixel: usize,
    /// Upper bound of a padded image (the 4K benchmark wants ≈10 MB).
    pub pad_cap: usize,
    /// Fraction of 3-pro answers sent as JPEG (the real model mixes PNG and JPEG).
    pub jpeg_rate: f64,
    /// Batch jobs: how long a job stays PENDING and RUNNING.
    pub batch_pending: Duration,
    pub batch_running: Duration,
    /// Batch fault injection: every Nth job fails / expires (0: never).
    pub batch_fail_every: u32,
    pub batch_expire_every: u32,
    pub catalog: Catalog,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            seed: 7,
            api_keys: None,
            rpm: None,
            rpd: None,
            faults: FaultRates::default(),
            latency: Latency::Zero,
            pad_per_megapixel: 0,
            pad_cap: 0,
            jpeg_rate: 0.0,
            batch_pending: Duration::from_millis(200),
            batch_running: Duration::from_millis(300),
            batch_fail_every: 0,
            batch_expire_every: 0,
            catalog: Catalog::embedded().clone(),
        }
    }
}

/// Shared state of a running emulator.
#[derive(Debug)]
pub(crate) struct MockState {
    pub config: MockConfig,
    pub images: images::ImageCache,
    pub stats: Mutex<Stats>,
    /// Times each request body was seen (fault directives count per body).
    pub seen: Mutex<HashMap<[u8; 32], u32>>,
    pub windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    pub daily: Mutex<HashMap<String, u32>>,
    pub started: Instant,
    pub secret: [u8; 16],
    pub batch: batch::BatchStore,
}

impl MockState {
    fn new(config: MockConfig) -> MockState {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&config.seed.to_le_bytes());
        MockState {
            config,
            images: images::ImageCache::default(),
            stats: Mutex::new(Stats {
                started_unix_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                ..Stats::default()
            }),
            seen: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            daily: Mutex::new(HashMap::new()),
            started: Instant::now(),
            secret,
            batch: batch::BatchStore::default(),
        }
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    pub fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<MockState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `127.0.0.1:port` (0 for any free port) and serves in the background.
    pub async fn start(config: MockConfig, port: u16) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState::new(config));
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(MockServer { addr, state, shutdown: Some(tx), task: Some(task) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.state.stats().clone()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/{version}/models/{model_action}", post(generate::model_action))
        .route(
            "/{version}/batches/{batch_action}",
            get(batch::get_batch).post(batch::post_batch).delete(batch::delete_batch),
        )
        .route("/{version}/batches", get(batch::list_batches))
        .route("/upload/{version}/files", post(batch::upload_start))
        .route("/upload/{version}/files/{upload_id}", post(batch::upload_data))
        .route("/{version}/files/{file_action}", get(batch::download))
        .route("/download/{version}/files/{file_action}", get(batch::download))
        .route("/_mock/files/{name}", get(hostile::download))
        .route("/_stats", get(generate::stats))
        .route("/_stats/reset", post(generate::reset_stats))
        .with_state(state)
        // Requests carry reference images; the real limit is 100 MB of base64.
        .layer(axum::extract::DefaultBodyLimit::max(128 << 20))
}
