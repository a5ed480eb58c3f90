//! The notifier's HTTP(S) clients: rustls in every build, one client per set of TLS
//! files (client certificate and key, CA bundle), redirects never followed (a
//! notification goes where it is configured to go, or fails visibly).

use crate::config::TlsFiles;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Why a client could not be built (a TLS file missing or unreadable).
#[derive(Debug, thiserror::Error)]
#[error("TLS file {path}: {message}")]
pub struct TlsError {
    path: String,
    message: String,
}

/// Clients by their TLS files, built once each.
pub struct Clients {
    built: Mutex<HashMap<TlsFiles, reqwest::Client>>,
    /// The cap on answer bodies (read by the callers, kept here for them).
    pub max_response_bytes: usize,
}

impl Clients {
    pub fn new(max_response_bytes: usize) -> Clients {
        Clients {
            built: Mutex::new(HashMap::new()),
            max_response_bytes,
        }
    }

    /// The client for `files`, built on a blocking thread the first time (it reads the
    /// files and the system's roots); a failure is not cached, so fixed files are
    /// picked up on the next try.
    pub async fn get(&self, files: &TlsFiles) -> Result<reqwest::Client, TlsError> {
        if let Some(c) = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(files)
        {
            return Ok(c.clone());
        }
        let owned = files.clone();
        let client = tokio::task::spawn_blocking(move || build(&owned))
            .await
            .map_err(|e| TlsError {
                path: "(client)".into(),
                message: e.to_string(),
            })??;
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(files.clone(), client.clone());
        Ok(client)
    }
}

/// A rustls client with `files`, no redirects.
pub fn build(files: &TlsFiles) -> Result<reqwest::Client, TlsError> {
    let mut b = reqwest::Client::builder()
        .tls_backend_rustls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60));
    let bad = |path: &Path, message: String| TlsError {
        path: path.display().to_string(),
        message,
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| bad(path, e.to_string()));
    match (&files.tls_cert, &files.tls_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let id =
                reqwest::Identity::from_pem(&pem).map_err(|e| bad(cert, super::call::chain(&e)))?;
            b = b.identity(id);
        }
        (None, None) => {}
        (Some(p), None) | (None, Some(p)) => {
            return Err(bad(p, "tls_cert and tls_key go together".into()))
        }
    }
    if let Some(ca) = &files.tls_ca {
        let roots = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| bad(ca, super::call::chain(&e)))?;
        b = b.tls_certs_only(roots);
    }
    b.build().map_err(|e| TlsError {
        path: "(client)".into(),
        message: super::call::chain(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_file() {
        let files = TlsFiles {
            tls_cert: Some("/nonexistent/client.pem".into()),
            tls_key: Some("/nonexistent/client.key".into()),
            tls_ca: None,
        };
        let e = build(&files).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/client.pem"), "{e}");
        assert!(build(&TlsFiles::default()).is_ok());
    }
}
