//! The gauges `/metrics` reads at scrape time, beside the counters of [`crate::metrics`]:
//! build info, the process (CPU, memory, file descriptors, from `/proc` and
//! `getrusage`), the data directory's filesystem, the writer queue and RocksDB's
//! internals ([`Store::engine_stats`]). Blocking (file reads, RocksDB properties):
//! call from `spawn_blocking`. Off Linux the `/proc` readings are left out.

use crate::metrics::LabelValue;
use crate::store::{CfStats, EngineStats, Store};
use std::fmt::Write as _;
use std::path::Path;

/// Appends every scrape-time family to `out`.
pub fn render(out: &mut String, store: &Store, data_dir: &Path) {
    family(
        out,
        "ei_build_info",
        "gauge",
        "Always 1; the version of this build in its label.",
    );
    let _ = writeln!(
        out,
        "ei_build_info{{version=\"{}\"}} 1",
        LabelValue(env!("CARGO_PKG_VERSION"))
    );
    family(
        out,
        "ei_store_write_queue_depth",
        "gauge",
        "Write requests queued for the writer thread and not yet in a group commit.",
    );
    let _ = writeln!(out, "ei_store_write_queue_depth {}", store.queue_depth());
    render_engine(out, &store.engine_stats());
    if let Some(fs) = filesystem(data_dir) {
        render_filesystem(out, &fs);
    }
    if let Some(p) = process() {
        render_process(out, &p);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// RocksDB's internals (see [`EngineStats`] for what each number is).
fn render_engine(out: &mut String, e: &EngineStats) {
    for (name, help, value) in [
        ("ei_rocksdb_write_stopped", "1 while RocksDB stops all writes (L0 files, memtables or compaction debt over their limits).", e.write_stopped),
        ("ei_rocksdb_delayed_write_rate_bytes_per_second", "The rate RocksDB slows writes to while it delays them; 0 when writes are not delayed.", e.delayed_write_rate),
        ("ei_rocksdb_running_compactions", "Compactions running now.", e.running_compactions),
        ("ei_rocksdb_running_flushes", "Memtable flushes running now.", e.running_flushes),
        ("ei_rocksdb_block_cache_capacity_bytes", "Block cache capacity of the engagements column family (block_cache_mb).", e.block_cache_capacity),
    ] {
        gauge(out, name, help, value);
    }
    family(
        out,
        "ei_rocksdb_block_cache_bytes",
        "gauge",
        "Block cache of the engagements column family: bytes in use, and of them pinned.",
    );
    for (state, v) in [
        ("usage", e.block_cache_usage),
        ("pinned", e.block_cache_pinned),
    ] {
        let _ = writeln!(out, "ei_rocksdb_block_cache_bytes{{state=\"{state}\"}} {v}");
    }
    let cfs = &e.column_families;
    family(out, "ei_rocksdb_write_stalls_total", "counter", "Write stalls since the store opened, by column family and kind (delay: writes slowed; stop: writes halted).");
    for cf in cfs {
        for (kind, v) in [("delay", cf.stall_delays), ("stop", cf.stall_stops)] {
            let _ = writeln!(
                out,
                "ei_rocksdb_write_stalls_total{{cf=\"{}\",kind=\"{kind}\"}} {v}",
                cf.name
            );
        }
    }
    type PerCf = fn(&CfStats) -> u64;
    for (name, help, f) in [
        ("ei_rocksdb_pending_compaction_bytes", "Bytes compaction has yet to rewrite to bring every level under its target, by column family.", (|c| c.pending_compaction_bytes) as PerCf),
        ("ei_rocksdb_memtable_bytes", "Active and unflushed memtables, bytes, by column family.", |c| c.memtable_bytes),
    ] {
        family(out, name, "gauge", help);
        for cf in cfs {
            let _ = writeln!(out, "{name}{{cf=\"{}\"}} {}", cf.name, f(cf));
        }
    }
    for (name, help, bytes) in [
        (
            "ei_rocksdb_sst_bytes",
            "Bytes of live SST files, by column family and LSM level.",
            true,
        ),
        (
            "ei_rocksdb_sst_files",
            "Live SST files, by column family and LSM level.",
            false,
        ),
    ] {
        family(out, name, "gauge", help);
        for cf in cfs {
            let per_level = if bytes {
                &cf.level_bytes
            } else {
                &cf.level_files
            };
            for (level, v) in per_level.iter().enumerate() {
                let _ = writeln!(out, "{name}{{cf=\"{}\",level=\"{level}\"}} {v}", cf.name);
            }
        }
    }
}

/// The data directory's filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filesystem {
    pub size: u64,
    /// Free for an unprivileged user (what the server's own user can still write).
    pub available: u64,
}

/// `statvfs` of `path`; `None` when it fails.
pub fn filesystem(path: &Path) -> Option<Filesystem> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // 64-bit Linux: every field is already u64.
    Some(Filesystem {
        size: st.f_blocks * st.f_frsize,
        available: st.f_bavail * st.f_frsize,
    })
}

fn render_filesystem(out: &mut String, fs: &Filesystem) {
    gauge(
        out,
        "ei_data_dir_filesystem_size_bytes",
        "Size of the filesystem holding data_dir.",
        fs.size,
    );
    gauge(
        out,
        "ei_data_dir_filesystem_available_bytes",
        "Bytes still writable by the server on the filesystem holding data_dir.",
        fs.available,
    );
}

/// This process as the operating system sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub threads: u64,
    /// Unix time of the process start.
    pub start_time_seconds: f64,
}

/// Reads this process's figures; `None` where `/proc` is missing.
pub fn process() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields = stat_fields(&stat)?;
    // Fields counted from `state` (field 3 of proc(5)) on.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    // SAFETY: sysconf and getrlimit only read; getrusage fills the struct we pass.
    let (ticks, page, rusage, nofile) = unsafe {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        let mut rl = std::mem::MaybeUninit::<libc::rlimit>::zeroed();
        let ru_ok = libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) == 0;
        let rl_ok = libc::getrlimit(libc::RLIMIT_NOFILE, rl.as_mut_ptr()) == 0;
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            ru_ok.then(|| ru.assume_init()),
            rl_ok.then(|| rl.assume_init().rlim_cur),
        )
    };
    let cpu_seconds = match rusage {
        Some(r) => timeval(r.ru_utime) + timeval(r.ru_stime),
        None => (field(14)? + field(15)?) as f64 / ticks,
    };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Process {
        cpu_seconds,
        resident_bytes: field(24)? * page,
        virtual_bytes: field(23)?,
        open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
        max_fds: nofile.unwrap_or(0),
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
    })
}

fn timeval(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so split after its last `)`), starting with `state`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn render_process(out: &mut String, p: &Process) {
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, seconds.",
    );
    let _ = writeln!(out, "process_cpu_seconds_total {}", p.cpu_seconds);
    gauge(
        out,
        "process_resident_memory_bytes",
        "Resident memory size, bytes.",
        p.resident_bytes,
    );
    gauge(
        out,
        "process_virtual_memory_bytes",
        "Virtual memory size, bytes.",
        p.virtual_bytes,
    );
    gauge(
        out,
        "process_open_fds",
        "Open file descriptors.",
        p.open_fds,
    );
    gauge(
        out,
        "process_max_fds",
        "Limit of open file descriptors (RLIMIT_NOFILE).",
        p.max_fds,
    );
    gauge(
        out,
        "process_threads",
        "Operating system threads.",
        p.threads,
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, seconds.",
    );
    let _ = writeln!(out, "process_start_time_seconds {}", p.start_time_seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (ei (x) y) S 1 4242 4242 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 9 0 123 456 78";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S", "state is field 3");
        assert_eq!(f[14 - 3], "7", "utime is field 14");
        assert_eq!(f[20 - 3], "9", "num_threads is field 20");
        assert_eq!(f[24 - 3], "78", "rss is field 24");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_from_proc() {
        let files: Vec<std::fs::File> = (0..3)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let p = process().expect("/proc is there on Linux");
        assert!(p.open_fds >= 3 + 3, "stdio plus the three files: {p:?}");
        assert!(p.max_fds >= p.open_fds);
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes);
        assert!(p.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86400.0);
        drop(files);
    }

    #[test]
    fn the_filesystem_of_a_directory_has_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let fs = filesystem(dir.path()).unwrap();
        assert!(fs.size > 0 && fs.available <= fs.size, "{fs:?}");
        assert_eq!(filesystem(&dir.path().join("missing")), None);
    }
}
