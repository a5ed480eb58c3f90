//! Certificates for the HTTPS tests, made by rcgen per run: a CA, the server's
//! certificate for 127.0.0.1, client certificates naming an HSA-id the way SITHS
//! function certificates do (subject serialNumber), and the files a server reads.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA that signs server and client certificates.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key.
pub struct Leaf {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Leaf {
    pub fn der(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.der().clone()]
    }
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
    pub fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(cert, self.cert.pem()).unwrap();
        std::fs::write(key, self.key.serialize_pem()).unwrap();
    }
}

/// A self-signed CA named `name`.
pub fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

/// The server's certificate for 127.0.0.1; `cn` tells two apart.
pub fn server_cert(ca: &Ca, cn: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf { cert, key }
}

/// A client certificate: CN `cn`, and the HSA-id in the subject serialNumber if given.
pub fn client_cert(ca: &Ca, cn: &str, serial_number: Option<&str>) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(s) = serial_number {
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), s);
    }
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf { cert, key }
}

/// The files of one HTTPS server, in a temporary directory.
pub struct Files {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The server's certificate and key, and `ca` as the client CA bundle, in files.
pub fn files(ca: &Ca, server: &Leaf) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let f = Files {
        cert: dir.path().join("server.pem"),
        key: dir.path().join("server.key"),
        client_ca: dir.path().join("client-ca.pem"),
        _dir: dir,
    };
    server.write(&f.cert, &f.key);
    std::fs::write(&f.client_ca, ca.cert.pem()).unwrap();
    f
}
