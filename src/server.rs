//! The listener: accepts TCP connections (optionally TLS), serves HTTP/1.1 and HTTP/2 on
//! each (ALPN over TLS, prior knowledge in cleartext), tells every request about its
//! connection, protects itself from slow and idle clients, and drains on shutdown.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio_php::server::Server;
//!
//! # async fn run(router: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Server::default()
//!     .header_timeout(Duration::from_secs(5))
//!     .max_connections(1000)
//!     .serve(listener, router, tokio_php::server::shutdown_signal())
//!     .await
//! # }
//! ```

mod balance;
mod connection;
mod rewind;
pub mod tls;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use tls::{TlsConfig, TlsError};

use crate::config::{self, Config, ServerSettings};
use crate::scoreboard::{self, OpenConnection};
use connection::{Limits, Shared};

/// How long in-flight requests may take to finish after shutdown starts.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = config::DEFAULT_DRAIN_TIMEOUT;

/// HTTP/2 streams one connection may have open at once.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 250;
/// Streams a client may open and reset before the server accepts them (rapid reset,
/// CVE-2023-44487); more and the connection is closed.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset because of client errors before it closes the connection.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Unanswered HTTP/2 PING after which a connection is considered dead.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How a listener serves its connections: TLS, and the timeouts, limits and draining of
/// [`ServerSettings`]. Start from [`Server::default`] (or [`Server::from_config`]) and
/// change what you need.
#[derive(Debug, Clone, Default)]
pub struct Server {
    tls: Option<TlsConfig>,
    settings: ServerSettings,
    /// Balance accepts with the other serving processes of a supervisor.
    balance_accepts: bool,
}

impl Server {
    /// The listener settings of `config`, with its TLS certificate and key loaded.
    pub fn from_config(config: &Config) -> Result<Self, TlsError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
            _ => None,
        };
        Ok(Self {
            tls,
            settings: config.server.clone(),
            balance_accepts: false,
        })
    }

    /// Serves TLS with `tls` (HTTP/2 through ALPN).
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Time a new connection has to send its first request (TLS handshake included), and
    /// any HTTP/1 request its head.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Time a connection may have no request in flight before it is closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Time a response write may make no progress — the client stopped reading — before
    /// the connection is closed (its script then stops at its next output).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Largest request head (HTTP/1) or header list (HTTP/2), in bytes; larger gets 431.
    /// At least 8 KiB.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.settings.max_header_size = bytes.max(config::MIN_MAX_HEADER_SIZE);
        self
    }

    /// Longest request target (path and query), in bytes; longer gets 414.
    pub fn max_uri_length(mut self, bytes: usize) -> Self {
        self.settings.max_uri_length = bytes;
        self
    }

    /// Connections served at once; further ones wait to be accepted. 0 = no limit.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.settings.max_connections = connections;
        self
    }

    /// Time in-flight requests get to finish once shutdown starts.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Leaves new connections to a less loaded serving process of the supervisor first
    /// (see `balance`); without other serving processes it changes nothing.
    pub(crate) fn balance_accepts(mut self) -> Self {
        self.balance_accepts = true;
        self
    }

    /// The TLS configuration, if the listener serves TLS.
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves `router` on `listener` until `shutdown` completes; then stops accepting,
    /// lets open connections finish their requests for up to the drain timeout, and
    /// returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let listener = balance::Listener::new(listener, self.balance_accepts)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            http1: self.http1_builder(),
            http2: self.http2_builder(),
            router,
            limits: Limits {
                header_timeout: self.settings.header_timeout,
                idle_timeout: self.settings.idle_timeout,
                write_timeout: self.settings.write_timeout,
                max_uri_length: self.settings.max_uri_length,
            },
            tls: self.tls.clone(),
            local,
        });
        let max_connections = self.settings.max_connections;
        let limit = (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections)));
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut saturated = false;
        loop {
            let permit = match &limit {
                Some(limit) => {
                    if limit.available_permits() == 0 && !saturated {
                        tracing::warn!(
                            max_connections,
                            "connection limit reached (MAX_CONNECTIONS); new connections wait to be accepted"
                        );
                    }
                    saturated = limit.available_permits() == 0;
                    tokio::select! {
                        permit = Arc::clone(limit).acquire_owned() => match permit {
                            Ok(permit) => Some(permit),
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
                None => None,
            };
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %err, "accept failed; retrying shortly");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            tokio::spawn(connection::run(
                Arc::clone(&shared),
                stream,
                remote,
                drain_rx.clone(),
                permit,
                OpenConnection::opened(),
            ));
        }
        drop(listener);
        if self.balance_accepts {
            scoreboard::mark_not_accepting();
        }
        drop(drain_rx);
        let open = drain_tx.receiver_count();
        tracing::info!(
            listener = %local,
            open_connections = open,
            "no longer accepting connections; draining open requests"
        );
        drain_tx.send_replace(true);
        tokio::select! {
            () = drain_tx.closed() => tracing::info!(listener = %local, "all connections closed"),
            () = tokio::time::sleep(self.settings.drain_timeout) => {
                tracing::warn!(
                    listener = %local,
                    timeout_secs = self.settings.drain_timeout.as_secs(),
                    open_connections = drain_tx.receiver_count(),
                    "drain timeout reached (DRAIN_TIMEOUT_SECS); closing the remaining connections"
                );
            }
        }
        Ok(())
    }

    fn http1_builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            // The connection watchdog times request heads (hyper's own timer would also
            // close idle keep-alive connections after the header timeout).
            .header_read_timeout(None)
            .max_buf_size(self.settings.max_header_size);
        builder
    }

    fn http2_builder(&self) -> http2::Builder<TokioExecutor> {
        let header_list_size = u32::try_from(self.settings.max_header_size).unwrap_or(u32::MAX);
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS)
            .max_header_list_size(header_list_size)
            .keep_alive_interval(self.settings.idle_timeout)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT);
        builder
    }
}

/// Serves `router` on `listener` with the default limits until `shutdown` completes, then
/// waits up to `drain_timeout` for open requests to finish. [`Server`] sets the rest.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> io::Result<()> {
    Server::default()
        .drain_timeout(drain_timeout)
        .serve(listener, router, shutdown)
        .await
}

/// A signal that asks the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    /// The exit code of a process ended by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let signal = next_signal().await;
    tracing::info!(?signal, "shutting down");
}

/// Waits for the next SIGINT or SIGTERM and says which it was.
pub async fn next_signal() -> Signal {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => Signal::Interrupt,
        () = terminate => Signal::Terminate,
    }
}
