//! The server under load: a URL the planner gives, or (`--embedded`, cargo feature
//! `embedded`) ei-server started in-process on `127.0.0.1:0` with a temporary data
//! directory, on its own runtime and threads so that stopping it is clean and its
//! tasks do not share the load generator's scheduler.

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
    #[error("cannot prepare the embedded server: {0}")]
    Setup(#[from] std::io::Error),
    #[cfg(feature = "embedded")]
    #[error("the embedded server failed: {0}")]
    Server(#[from] ei_server::server::ServerError),
    #[error("the embedded server's thread panicked")]
    Panicked,
}

#[cfg(feature = "embedded")]
pub use embedded::Embedded;

#[cfg(feature = "embedded")]
mod embedded {
    use super::TargetError;
    use ei_server::config::Config;
    use ei_server::server::ServerError;
    use std::thread::JoinHandle;
    use tokio::sync::oneshot;

    /// A running in-process ei-server. Stop it with [`Embedded::stop`] to see how the
    /// shutdown went; dropping it also stops it and waits for the store to close.
    pub struct Embedded {
        pub base_url: String,
        shutdown: Option<oneshot::Sender<()>>,
        thread: Option<JoinHandle<Result<(), ServerError>>>,
        _dir: tempfile::TempDir,
    }

    impl Embedded {
        /// Starts ei-server answering to `hsa_id` on a fresh temporary directory.
        pub fn start(hsa_id: &str) -> Result<Embedded, TargetError> {
            let dir = tempfile::Builder::new().prefix("capacity-ei-").tempdir()?;
            let config = Config {
                data_dir: dir.path().join("data"),
                hsa_id: hsa_id.to_owned(),
                ..Config::default()
            };
            let mut config = config;
            config.notifications.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("embedded-ei")
                .enable_all()
                .build()?;
            // Bound here so the address is known at once; handed to the server's runtime
            // below (callable from inside or outside another runtime).
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            let base_url = format!("http://{}", listener.local_addr()?);
            let (tx, rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name("embedded-ei".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let shutdown = async move {
                            let _ = rx.await;
                        };
                        ei_server::server::run(listener, config, shutdown).await
                    })
                })?;
            Ok(Embedded {
                base_url,
                shutdown: Some(tx),
                thread: Some(thread),
                _dir: dir,
            })
        }

        /// Stops the server: it drains, closes its store, and the directory goes.
        pub fn stop(mut self) -> Result<(), TargetError> {
            self.shutdown_and_join()
        }

        fn shutdown_and_join(&mut self) -> Result<(), TargetError> {
            if let Some(tx) = self.shutdown.take() {
                let _ = tx.send(());
            }
            match self.thread.take().map(JoinHandle::join) {
                Some(Ok(result)) => Ok(result?),
                Some(Err(_)) => Err(TargetError::Panicked),
                None => Ok(()),
            }
        }
    }

    impl Drop for Embedded {
        fn drop(&mut self) {
            let _ = self.shutdown_and_join();
        }
    }
}
