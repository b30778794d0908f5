//! The listener's TLS: the certificate and key read from `server.tls_cert`
//! and `server.tls_key`, and a certificate resolver that a reload can swap.
//!
//! [`load`] reads and checks the PEM files (certificate chain, then a PKCS#8,
//! PKCS#1 or SEC1 key that must match the first certificate) and touches
//! nothing else, so a new generation can be validated before it is used.
//! [`CertResolver`] hands every new handshake the current certificate; a
//! reload stores a new one and connections already established keep the
//! one they were accepted with. Refused: a file without a certificate, a key
//! in another PEM block, a key that does not match the certificate.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::error::ConfigError;

/// Reads `cert` and `key` (PEM) into a certificate ready to serve; errors
/// name `config` and the key at fault.
pub(crate) fn load(
    config: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let read = |p: &Path, name: &str| {
        std::fs::read(p).map_err(|e| ConfigError::at(config, name, format!("{}: {e}", p.display())))
    };
    let chain = pem::parse_many(read(cert, "server.tls_cert")?)
        .map_err(|e| ConfigError::at(config, "server.tls_cert", e))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect::<Vec<_>>();
    if chain.is_empty() {
        return Err(ConfigError::at(
            config,
            "server.tls_cert",
            format!("{}: no CERTIFICATE block", cert.display()),
        ));
    }
    let key_pem = pem::parse(read(key, "server.tls_key")?)
        .map_err(|e| ConfigError::at(config, "server.tls_key", e))?;
    let der = match key_pem.tag() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(key_pem.into_contents().into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(key_pem.into_contents().into()),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(key_pem.into_contents().into()),
        other => {
            return Err(ConfigError::at(
                config,
                "server.tls_key",
                format!("unsupported PEM block {other:?}"),
            ));
        }
    };
    let certified = CertifiedKey::from_der(chain, der, &provider())
        .map_err(|e| ConfigError::at(config, "server.tls_key", e))?;
    Ok(Arc::new(certified))
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The certificate new handshakes get; swapped by a reload.
#[derive(Debug)]
pub(crate) struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// Serves `first` until [`CertResolver::store`] replaces it.
    pub(crate) fn new(first: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(first),
        }
    }

    /// New handshakes get `next` from now on.
    pub(crate) fn store(&self, next: Arc<CertifiedKey>) {
        self.current.store(next);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A TLS acceptor (TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`) whose
/// certificate comes from `resolver`.
pub(crate) fn acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, rustls::Error> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}
