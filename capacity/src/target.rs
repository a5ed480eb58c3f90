//! The server under load: a URL the planner gives, or (`--embedded`, cargo feature
//! `embedded`) ei-server started in-process through its harness
//! ([`ei_server::harness`]) on `127.0.0.1:0` with a temporary data directory, on its
//! own runtime and threads so that stopping it is clean and its tasks do not share
//! the load generator's scheduler.

/// Which server to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// A running index, e.g. `http://127.0.0.1:8080`.
    Url(String),
    /// ei-server in-process on a temporary directory.
    Embedded,
}

/// Why the target could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("this capacity binary was built without the `embedded` feature")]
    NoEmbedded,
    #[cfg(feature = "embedded")]
    #[error("the embedded server failed: {0}")]
    Server(#[from] ei_server::harness::HarnessError),
}

#[cfg(feature = "embedded")]
pub use ei_server::harness::Harness;

/// Starts ei-server answering to `hsa_id` on a fresh temporary directory. Stop it with
/// [`Harness::stop`] to see how the shutdown went; dropping it also stops it and
/// waits for the store to close.
#[cfg(feature = "embedded")]
pub async fn start_embedded(hsa_id: &str) -> Result<Harness, TargetError> {
    use ei_server::harness::Options;
    let config = ei_server::config::Config {
        hsa_id: hsa_id.to_owned(),
        ..Default::default()
    };
    let options = Options {
        own_runtime: true,
        ..Options::default()
    };
    Ok(Harness::start(config, options).await?)
}
