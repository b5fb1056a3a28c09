//! Connections: accepted from a TCP listener, wrapped in TLS when the server has a certificate
//! (rustls with the ring provider), served as HTTP/1.1 by hyper with a header-read timeout, and shut
//! down gracefully (stop accepting, let each connection finish the request it is serving, close idle
//! ones).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use outpost_api::{Error, Result};
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to pause accepting after the listener fails (out of file descriptors, typically).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's certificate chain and key, ready to serve HTTPS.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// TLS from PEM files: `cert` holds the certificate chain (leaf first), `key` its private key
    /// (PKCS#8, PKCS#1 or SEC1). InvalidInput naming the file that is missing, unreadable or wrong.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Tls> {
        let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            Error::invalid(format!("tls: {what} {}: {e}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad("cannot read the certificate file", cert, &e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("cannot read the certificate file", cert, &e))?;
        if chain.is_empty() {
            return Err(bad("no certificate in", cert, &"expected PEM `BEGIN CERTIFICATE` blocks"));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| bad("cannot read the private key file", key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("tls: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| bad("the key does not fit the certificate, or is not usable, in", key, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// Serve `app` on `listener` (over TLS when `tls` is given) until `shutdown` resolves; then stop
/// accepting and wait for every open connection to finish what it serves. At most `max_connections`
/// are served at once: the next one is accepted when one closes (meanwhile the kernel's listen
/// backlog holds it), so a flood of connections cannot take file descriptors from the served ones.
/// `header_read_timeout` bounds both a request's headers and an idle keep-alive connection (hyper
/// starts the timer whenever a connection waits for a request head).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    app: Router,
    (header_read_timeout, max_connections, open): (Duration, usize, Gauge),
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends pass; the connections being served go on meanwhile (the slot is
                // given back as it drops).
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, watcher) = (app.clone(), tls.clone(), graceful.watcher());
        let counted = Counted::new(&open);
        tokio::spawn(async move {
            let (_slot, _counted) = (slot, counted);
            match tls {
                None => connection(stream, app, watcher, header_read_timeout).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, app, watcher, header_read_timeout).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A connection counted in the open-connections gauge while it lives.
struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection's requests, until the client closes it, it idles past the header-read timeout, or
/// the server shuts down.
async fn connection<I>(io: I, app: Router, watcher: Watcher, header_read_timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let served = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    if let Err(e) = watcher.watch(served).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
