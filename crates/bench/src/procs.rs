//! The processes a run starts: `outpost serve` on a loopback port, `outpost … --json` commands and
//! this binary's workers. Each is waited for (or killed when dropped); peak RSS comes from the OS.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::worker::{self, Measured};

pub type Result<T> = std::result::Result<T, String>;

/// Run a command to completion; its stdout parsed as JSON, or an error quoting its stderr.
pub fn json_of(mut cmd: Command, what: &str) -> Result<Value> {
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what}: {} — {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The binaries a run uses.
pub struct Tools {
    pub outpost: PathBuf,
    pub bench: PathBuf,
}

impl Tools {
    /// `outpost --json ARGS…`.
    pub fn outpost(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = Command::new(&self.outpost);
        cmd.arg("--json").args(args);
        json_of(cmd, &format!("outpost {}", args.join(" ")))
    }

    /// What `outpost-bench worker ARGS…` does under a valgrind tool: the instructions it executes
    /// (`callgrind`) or the blocks it allocates (`dhat`). Its output file goes in `dir` and is removed
    /// after; `None` when valgrind is not installed.
    pub fn valgrind(&self, tool: Valgrind, args: &[String], dir: &Path) -> Result<Option<u64>> {
        let installed = Command::new("valgrind").arg("--version").stdout(Stdio::null()).status();
        if !installed.is_ok_and(|s| s.success()) {
            return Ok(None);
        }
        let (name, count): (&str, fn(&str) -> Option<u64>) = match tool {
            Valgrind::Instructions => ("callgrind", collected),
            Valgrind::Allocations => ("dhat", allocated),
        };
        let out = dir.join(format!("{name}.out"));
        let output = Command::new("valgrind")
            .arg(format!("--tool={name}"))
            .arg(format!("--{name}-out-file={}", out.display()))
            .arg(&self.bench)
            .arg("worker")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("valgrind: cannot start: {e}"))?;
        let _ = std::fs::remove_file(&out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(format!("valgrind worker {}: {} — {}", args.join(" "), output.status, stderr.trim()));
        }
        count(&stderr).map(Some).ok_or_else(|| format!("valgrind printed no {name} summary: {stderr}"))
    }

    /// `outpost-bench worker ARGS…`: one measured write.
    pub fn worker(&self, args: &[String]) -> Result<Measured> {
        let mut cmd = Command::new(&self.bench);
        cmd.arg("worker").args(args);
        let value = json_of(cmd, &format!("worker {}", args.join(" ")))?;
        serde_json::from_value(value).map_err(|e| format!("worker output: {e}"))
    }
}

/// What a valgrind run counts.
#[derive(Clone, Copy, Debug)]
pub enum Valgrind {
    /// Instructions executed (Callgrind).
    Instructions,
    /// Heap blocks allocated (DHAT).
    Allocations,
}

/// The count of Callgrind's `==pid== Collected : 1,234` line.
fn collected(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(':').next()?.trim().replace(',', "").parse().ok()
}

/// The blocks of DHAT's `==pid== Total: 40,538,284 bytes in 288,398 blocks` line.
fn allocated(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains("Total:"))?;
    let blocks = line.split(" in ").nth(1)?.trim().strip_suffix("blocks")?;
    blocks.trim().replace(',', "").parse().ok()
}

/// A free loopback port (bound, read and released; the server binds it right after).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// An `outpost serve` over a data directory, stopped when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(outpost: &Path, data: &Path, log: &Path) -> Result<Server> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(outpost)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("outpost serve: cannot start: {e}"))?;
        let mut server = Server { child, base: format!("http://{addr}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("outpost serve exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("outpost serve did not listen within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The URL of database `name`.
    pub fn db(&self, name: &str) -> String {
        format!("{}/dbs/{name}", self.base)
    }

    /// The server's peak RSS so far (VmHWM).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        worker::rss_line(&status, "VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `outpost sync --json` or `outpost quicksync pull --json` reported, in the units a run needs.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub ms: f64,
    pub written: u64,
    pub fetched: u64,
    pub peak_rss_bytes: Option<u64>,
}

impl Pass {
    pub fn of_sync(v: &Value) -> Pass {
        Pass {
            ms: v["duration_ms"].as_f64().unwrap_or(f64::NAN),
            written: v["revisions_written"].as_u64().unwrap_or(0),
            fetched: v["revisions_fetched"].as_u64().unwrap_or(0),
            peak_rss_bytes: v["peak_rss_bytes"].as_u64(),
        }
    }

    pub fn of_pull(v: &Value) -> Pass {
        let q = &v["quicksync"];
        Pass {
            ms: q["duration_ms"].as_f64().unwrap_or(f64::NAN),
            written: q["written"].as_u64().unwrap_or(0),
            fetched: q["entries"].as_u64().unwrap_or(0),
            peak_rss_bytes: v["peak_rss_bytes"].as_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_counts_are_read_from_its_summary() {
        let stderr = "==17401== Events    : Ir\n==17401== Collected : 2,088,111,150\n==17401==\n";
        assert_eq!(collected(stderr), Some(2_088_111_150));
        assert_eq!(collected("==1== no summary"), None);
        let dhat = "==18921== Total:     40,538,284 bytes in 288,398 blocks\n==18921== At t-gmax: 6,917,123 bytes";
        assert_eq!(allocated(dhat), Some(288_398));
    }
}
