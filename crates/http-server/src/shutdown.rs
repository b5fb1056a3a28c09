//! Stopping: the OS signals that ask for it, and the signal that ends long-polls and event streams
//! early when the server shuts down gracefully (so the in-flight requests it waits for do finish).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::watch;

/// Raised once by `serve` when shutdown begins; carried to handlers as a request extension.
#[derive(Clone)]
pub(crate) struct Stopping(watch::Sender<bool>);

impl Stopping {
    pub(crate) fn new() -> Self {
        Stopping(watch::channel(false).0)
    }

    pub(crate) fn raise(&self) {
        self.0.send_replace(true);
    }
}

/// A handler's view of [`Stopping`]: waits until shutdown begins, forever when the router runs
/// without `serve` (in-process tests).
pub(crate) struct Stop(Option<watch::Receiver<bool>>);

impl Stop {
    /// The view of a request with these extensions (which carry [`Stopping`] when served by `serve`).
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Self {
        Stop(extensions.get::<Stopping>().map(|s| s.0.subscribe()))
    }

    /// Resolves when the server begins to shut down.
    pub(crate) async fn wait(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                // An error means the sender is gone, i.e. the server is gone: stop as well.
                let _ = rx.wait_for(|stopping| *stopping).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Stop {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Stop::of(&parts.extensions))
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM: pass it to [`crate::serve`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = terminate => tracing::info!("SIGTERM received; shutting down"),
    }
}
