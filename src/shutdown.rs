//! Stopping, shared by every long-running part (the worker's intake, the health
//! server, the metrics publisher): one `watch` channel that turns true once.
//!
//! It lives apart from the worker so that the parts the worker starts do not
//! import the worker back.

use tokio::sync::watch;

/// Resolves once `rx` says stop (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
