//! TLS for the listener: rustls (ring) through axum-server's [`RustlsConfig`], TLS 1.3 and
//! 1.2, ALPN offering `h2` then `http/1.1`, and a certificate that reloads from disk (on
//! SIGHUP in the standalone server) for new connections while open ones keep theirs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ENV_TLS_CERT, ENV_TLS_KEY};

/// ALPN protocols offered, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read.
    #[error("cannot read {ENV_TLS_CERT}={path}: {source}")]
    ReadCert {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error(
        "{ENV_TLS_CERT}={path} holds no PEM certificate: expected -----BEGIN CERTIFICATE----- blocks, leaf first"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file could not be read.
    #[error("cannot read {ENV_TLS_KEY}={path}: {source}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The key file holds no usable PEM private key.
    #[error(
        "{ENV_TLS_KEY}={path} holds no PEM private key: expected an unencrypted PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("{ENV_TLS_CERT}={cert} and {ENV_TLS_KEY}={key} cannot serve TLS: {source}")]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// A certificate and key loaded from PEM files, shared by every connection of a listener.
/// Cloning shares it: [`TlsConfig::reload`] on one clone changes them all.
#[derive(Clone)]
pub struct TlsConfig {
    rustls: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl TlsConfig {
    /// Loads the PEM certificate chain `cert` (leaf first) and private key `key`.
    pub fn from_pem_files(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let config = server_config(&cert, &key)?;
        Ok(Self {
            rustls: RustlsConfig::from_config(config),
            cert,
            key,
        })
    }

    /// Reads both files again. New connections use the new certificate, open ones keep
    /// theirs; on an error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        self.rustls.reload_from_config(config);
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// axum-server's shared rustls configuration.
    pub fn rustls(&self) -> &RustlsConfig {
        &self.rustls
    }

    /// An acceptor that completes handshakes within `timeout`.
    pub(crate) fn acceptor(&self, timeout: Duration) -> RustlsAcceptor {
        RustlsAcceptor::new(self.rustls.clone()).handshake_timeout(timeout)
    }
}

/// Reloads `tls` each time the process gets SIGHUP, logging the outcome; never returns.
/// Without TLS, SIGHUP is logged and ignored (instead of ending the process).
pub async fn reload_on_sighup(tls: Option<TlsConfig>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGHUP; the TLS certificate will not reload");
                return std::future::pending().await;
            }
        };
        while hangup.recv().await.is_some() {
            match &tls {
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.cert_path().display(),
                        "SIGHUP: TLS certificate reloaded; new connections use it"
                    ),
                    Err(err) => tracing::error!(
                        "SIGHUP: TLS certificate not reloaded, the previous one stays in use: {err}"
                    ),
                },
                None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            }
        }
    }
    std::future::pending::<()>().await;
}

fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::ReadCert {
        path: cert_path.to_owned(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key_pem = std::fs::read(key_path).map_err(|source| TlsError::ReadKey {
        path: key_path.to_owned(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key_path.to_owned(),
    })?;
    let rejected = |source| TlsError::Rejected {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    };
    // An explicit provider: the process-wide default may be unset, or ambiguous when a host
    // application links another one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_path = dir.join(format!("{name}-cert.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn loads_a_pair_and_offers_h2_first() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
        let inner = tls.rustls().get_inner();
        assert_eq!(inner.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(format!("{tls:?}").contains("[redacted]"));
    }

    #[test]
    fn errors_name_the_variable_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let missing = dir.path().join("missing.pem");
        let err = TlsConfig::from_pem_files(&missing, &key).unwrap_err();
        assert!(matches!(err, TlsError::ReadCert { .. }));
        assert!(err.to_string().contains("TLS_CERT=") && err.to_string().contains("missing.pem"));
        // A key given as the certificate, and a certificate given as the key.
        let err = TlsConfig::from_pem_files(&key, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let err = TlsConfig::from_pem_files(&cert, &cert).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        assert!(err.to_string().contains("TLS_KEY="));
        // A key that does not belong to the certificate.
        let (_, other_key) = write_pair(dir.path(), "b");
        let err = TlsConfig::from_pem_files(&cert, &other_key).unwrap_err();
        assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_previous_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = TlsConfig::from_pem_files(&cert, &key).unwrap();
        let before = tls.rustls().get_inner();
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.rustls().get_inner()));
        let (new_cert, new_key) = write_pair(dir.path(), "b");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.rustls().get_inner()));
    }
}
