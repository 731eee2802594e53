//! The HTTP endpoints a platform probes: `/healthz` (the process is alive),
//! `/readyz` (rules are loaded and SQS answered within the last minute) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How recent the last successful SQS poll must be for `/readyz`.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// What readiness is judged on, updated by the worker.
#[derive(Debug, Default)]
pub struct Health {
    rules_loaded: AtomicBool,
    last_poll: std::sync::Mutex<Option<Instant>>,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn set_rules_loaded(&self, v: bool) {
        self.rules_loaded.store(v, Ordering::SeqCst);
    }

    pub fn poll_ok(&self) {
        *self.last_poll.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn poll_failed(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.rules_loaded.load(Ordering::SeqCst) {
            return Err("rules not loaded".into());
        }
        let last = *self.last_poll.lock().unwrap_or_else(|e| e.into_inner());
        match last {
            Some(t) if t.elapsed() <= READY_WITHIN => Ok(()),
            _ => {
                let err = self
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Err(match err {
                    Some(e) => format!("no successful SQS poll in the last minute: {e}"),
                    None => "no successful SQS poll in the last minute".into(),
                })
            }
        }
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

/// Serves the endpoints on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                match s.health.readiness() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    ),
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    s.metrics.render_prometheus(),
                )
            }),
        )
        .with_state(AppState { health, metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            crate::worker::stopped(&mut shutdown).await;
        })
        .await
}
