//! TLS on the service listener (rustls): the server's certificate chain and key, and
//! optionally the CA bundle client certificates must chain to (then every client must
//! present one). The files are read at start and again on [`Tls::reload`] (SIGHUP):
//! new handshakes use the new files, open connections keep theirs, and a reload that
//! fails keeps the previous configuration.
//!
//! Who is calling: [`caller_hsa_id`] reads the HSA-id from a client certificate, the
//! subject's `serialNumber` (OID 2.5.4.5, as SITHS function certificates carry it),
//! else its common name.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Who is calling, as the handshake established it: attached to every request of an
/// HTTPS connection. `hsa_id` is `None` when no client certificate was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub hsa_id: Option<Arc<str>>,
}

/// The files TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CAs client certificates must chain to; `None`: no client
    /// certificates are asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up. Names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The listener's current TLS configuration, replaceable while serving.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Reads the files.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let config = server_config(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on failure the previous configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// An acceptor with the current configuration (for one handshake).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Whether clients must present a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| file_err(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", files.key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The HSA-id a client certificate names: the subject's serialNumber (2.5.4.5),
/// else its common name. `None` when the certificate has neither (or cannot be read,
/// which a verified certificate always can).
pub fn caller_hsa_id(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let subject = cert.subject();
    let serial = x509_parser::oid_registry::OID_X509_SERIALNUMBER;
    let first = |oid| {
        subject
            .iter_attributes()
            .find(|a| *a.attr_type() == oid)
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned)
    };
    first(serial).or_else(|| first(x509_parser::oid_registry::OID_X509_COMMON_NAME))
}
