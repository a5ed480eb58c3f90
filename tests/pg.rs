//! Throwaway PostgreSQL clusters for the end-to-end tests: `initdb` in a temp dir,
//! served on a unix socket in that dir only (no TCP), trust authentication, user
//! `postgres`; streaming standbys by `pg_basebackup -R`; `kill -9` of a postmaster and
//! promotion, for the failover test. As root every server command runs as user
//! `postgres` (`initdb` refuses root). A [`Cluster`] is stopped (immediate mode) and
//! its files removed when dropped, also when the test fails.
//!
//! The PostgreSQL tests run when `EI_TEST_PG` is set (`scripts/test.sh` sets it, and
//! so CI always does); without it [`enabled`] says why the test skips. The server
//! binaries come from `EI_PG_BIN`, `pg_config --bindir`, or the newest
//! `/usr/lib/postgresql/N/bin` (Debian).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the PostgreSQL tests run: `EI_TEST_PG` is set. If not, prints that `test`
/// skips and how to run it.
pub fn enabled(test: &str) -> bool {
    let on = std::env::var_os("EI_TEST_PG").is_some_and(|v| !v.is_empty());
    if !on {
        eprintln!(
            "skipping {test}: EI_TEST_PG is not set (scripts/test.sh starts a PostgreSQL \
             and sets it; or `eval \"$(scripts/pg.sh env DIR)\"` after `scripts/pg.sh start DIR`)"
        );
    }
    on
}

/// The directory of the PostgreSQL server binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EI_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, dir)| dir)
        .expect("no PostgreSQL server binaries: install Debian's postgresql (scripts/setup.sh) or set EI_PG_BIN")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command that runs as the clusters' owner (`postgres` when we are root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Hands `path` to the clusters' owner (as root); otherwise nothing to do.
fn give_to_owner(path: &Path) {
    if is_root() {
        let mut c = Command::new("chown");
        c.arg("postgres:").arg(path);
        run(c, "chown postgres");
    }
}

/// One PostgreSQL cluster in its own temp dir: data in `data/`, the socket (and
/// `server.log`) in the dir itself, port 5432 (each cluster has its own socket dir,
/// so ports never clash).
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Cluster {
    /// `initdb` of a new cluster (not started).
    pub fn init() -> Cluster {
        let cluster = Cluster::empty();
        let mut c = as_owner(&cluster.bin.join("initdb"));
        c.arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--locale=C",
            "-E",
            "UTF8",
        ]);
        run(c, "initdb");
        cluster
    }

    /// A streaming standby of the running `primary`: `pg_basebackup -R` (which writes
    /// `primary_conninfo` and `standby.signal`), under `application_name` (the name
    /// `synchronous_standby_names` can list). Not started.
    pub fn standby_of(primary: &Cluster, application_name: &str) -> Cluster {
        let cluster = Cluster::empty();
        let mut c = as_owner(&cluster.bin.join("pg_basebackup"));
        c.arg("-D")
            .arg(cluster.data())
            .arg("-d")
            .arg(format!(
                "host={} user=postgres application_name={application_name}",
                primary.socket_dir().display()
            ))
            .args(["-R", "-X", "stream", "-c", "fast"]);
        run(c, "pg_basebackup");
        cluster
    }

    fn empty() -> Cluster {
        // Short paths: the socket path must fit in 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ei-pg.")
            .tempdir_in("/tmp")
            .expect("temp dir");
        give_to_owner(dir.path());
        Cluster {
            dir,
            bin: bin_dir(),
        }
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The unix socket directory (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server with `settings` (`name`, `value`) on top of the defaults
    /// (socket in [`Cluster::socket_dir`], no TCP); waits until it accepts connections.
    pub fn start(&self, settings: &[(&str, &str)]) {
        let mut opts = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=100",
            self.socket_dir().display()
        );
        for (name, value) in settings {
            opts.push_str(&format!(" -c {name}='{value}'"));
        }
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "120", "-o", &opts, "start"]);
        c.stdout(Stdio::null());
        let out = c.stdin(Stdio::null()).output().expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    /// The last lines of the server log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A libpq URL of database `db` on this cluster alone.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres@/{db}?host={}",
            self.socket_dir().display()
        )
    }

    /// Runs `sql` through psql on database `db`; its unaligned output, trimmed.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e}"));
        out.trim().to_owned()
    }

    /// [`Cluster::psql`] that returns psql's complaint instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-X",
                "-q",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> u32 {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("postmaster.pid: is the server running?");
        pid.lines().next().unwrap().trim().parse().unwrap()
    }

    /// `kill -9` of the postmaster; returns once it is gone. Its backends notice the
    /// postmaster's death and exit by themselves, without answering what they were
    /// doing (a commit waiting for its synchronous standby is not acknowledged).
    pub fn kill9_postmaster(&self) {
        let pid = self.postmaster_pid();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill -KILL");
        assert!(status.success(), "kill -KILL {pid}");
        wait_until("the killed postmaster to be gone", || !alive(pid));
    }

    /// `pg_ctl promote`: the standby becomes a primary; waits until it takes writes.
    pub fn promote(&self) {
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.data()).args(["-W", "promote"]);
        let out = c.stdin(Stdio::null()).output().expect("pg_ctl promote");
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        let end = Instant::now() + Duration::from_secs(120);
        while !self
            .try_psql("postgres", "select pg_is_in_recovery()")
            .is_ok_and(|r| r.trim() == "f")
        {
            assert!(
                Instant::now() < end,
                "the promoted standby does not take writes; server log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `pg_ctl stop` in `mode` (`fast`, `immediate`); no error when it is not running.
    pub fn stop(&self, mode: &str) {
        if !self.data().join("postmaster.pid").exists() {
            return;
        }
        let mut c = as_owner(&self.bin.join("pg_ctl"));
        c.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        let _ = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Polls `cond` every 50 ms until it holds; panics after 120 s (a hang, not a
/// timing assertion).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
