//! Ctrl-C (and SIGTERM) escalation: the first signal stops dispatching and lets requests in
//! flight finish (they may be paid for); the second aborts at once.

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Cancel {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stop dispatching; finish what is in flight.
    pub fn request_stop(&self) {
        self.stop.cancel();
    }

    /// Abort now.
    pub fn request_abort(&self) {
        self.abort.cancel();
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    /// Listens for Ctrl-C and SIGTERM until the returned task is dropped: first → stop,
    /// second → abort. `on_first` is called on the first signal (to print the resume hint).
    pub fn listen(&self, on_first: impl Fn() + Send + 'static) -> tokio::task::JoinHandle<()> {
        let cancel = self.clone();
        tokio::spawn(async move {
            let mut presses = 0u32;
            loop {
                if !wait_for_signal().await {
                    return;
                }
                presses += 1;
                if presses == 1 {
                    cancel.request_stop();
                    on_first();
                } else {
                    cancel.request_abort();
                    return;
                }
            }
        })
    }
}

/// Waits for Ctrl-C or SIGTERM; `false` when signals cannot be listened to.
async fn wait_for_signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return tokio::signal::ctrl_c().await.is_ok();
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            _ = term.recv() => true,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}
