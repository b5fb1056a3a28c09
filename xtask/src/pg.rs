//! `cargo xtask pg start|stop|url`, and the throwaway PostgreSQL that `cargo xtask ci` runs the
//! PostgreSQL tests against: a fresh cluster (initdb) in a directory under the temp dir, listening on
//! 127.0.0.1 at a free port, its URL exported to the tests as `OUTPOST_TEST_POSTGRES`.
//!
//! The binaries come from `$OUTPOST_PG_BIN`, /usr/lib/postgresql/<version>/bin (15 preferred) or
//! `pg_config --bindir`; when there are none and we are root, the Debian package `postgresql` is
//! installed. initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable the PostgreSQL tests read their server URL from.
pub const URL_VAR: &str = "OUTPOST_TEST_POSTGRES";

/// A PostgreSQL cluster started by xtask.
pub struct Cluster {
    base: PathBuf,
    bin: PathBuf,
    url: String,
}

/// A cluster that is stopped and deleted when dropped, whatever happened meanwhile (a failed test run).
pub struct Throwaway(Option<Cluster>);

impl Throwaway {
    /// The cluster's URL.
    pub fn url(&self) -> &str {
        self.0.as_ref().map_or("", |c| c.url.as_str())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take() {
            match cluster.stop() {
                Ok(()) => println!("<== postgres: stopped and removed {}", cluster.base.display()),
                Err(e) => eprintln!("xtask: stopping the throwaway postgres: {e}"),
            }
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL tool, run as the `postgres` user when we are root.
fn tool(bin: &Path, name: &str) -> Command {
    let program = bin.join(name);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("OUTPOST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|(v, _)| (*v != 15, std::cmp::Reverse(*v)));
    if let Some((_, bin)) = versions.into_iter().next() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.join("initdb").is_file().then_some(dir)
}

/// The PostgreSQL binaries, installing Debian's `postgresql` package when they are missing and we may.
fn bindir() -> Result<PathBuf, String> {
    if let Some(bin) = find_bindir() {
        return Ok(bin);
    }
    if !is_root() {
        return Err("PostgreSQL binaries not found (looked in $OUTPOST_PG_BIN, /usr/lib/postgresql/*/bin and \
                    pg_config --bindir); install PostgreSQL (Debian: apt-get install postgresql)"
            .into());
    }
    println!("==> postgres: binaries missing; installing the Debian package postgresql");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update"]).env("DEBIAN_FRONTEND", "noninteractive").status();
        if !install() {
            return Err("apt-get install postgresql failed".into());
        }
    }
    find_bindir().ok_or_else(|| "postgresql is installed but its binaries were not found".into())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Cluster {
    /// initdb a new cluster in `base` (which must not exist) and start it on a free port.
    pub fn start(base: &Path) -> Result<Cluster, String> {
        let bin = bindir()?;
        if base.exists() {
            return Err(format!("{} exists; stop the cluster there first (cargo xtask pg stop)", base.display()));
        }
        let (data, sock) = (base.join("data"), base.join("sock"));
        std::fs::create_dir_all(&sock).map_err(|e| format!("creating {}: {e}", sock.display()))?;
        let cluster = Cluster { base: base.to_owned(), bin: bin.clone(), url: String::new() };
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(base), "chown")?;
        }
        let mut initdb = tool(&bin, "initdb");
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run(&mut initdb, "initdb").inspect_err(|_| cluster.remove())?;
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c full_page_writes=off -c max_connections=300",
            sock.display()
        );
        let mut pg_ctl = tool(&bin, "pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(base.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        if let Err(e) = run(&mut pg_ctl, "pg_ctl start") {
            let log = std::fs::read_to_string(base.join("postgres.log")).unwrap_or_default();
            cluster.remove();
            return Err(format!("{e}\npostgres.log:\n{log}"));
        }
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        std::fs::write(base.join("url"), &url).map_err(|e| format!("writing the cluster's url: {e}"))?;
        Ok(Cluster { url, ..cluster })
    }

    /// Stop the server and delete the cluster's directory.
    pub fn stop(&self) -> Result<(), String> {
        let mut pg_ctl = tool(&self.bin, "pg_ctl");
        pg_ctl.arg("-D").arg(self.base.join("data")).args(["-m", "fast", "-w", "stop"]);
        let stopped = run(&mut pg_ctl, "pg_ctl stop");
        self.remove();
        stopped
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Start a cluster for `cargo xtask ci` unless the caller gave one in `OUTPOST_TEST_POSTGRES`.
pub fn throwaway() -> Result<Option<Throwaway>, String> {
    if std::env::var(URL_VAR).is_ok_and(|u| !u.is_empty()) {
        println!("==> postgres: using {URL_VAR} from the environment");
        return Ok(None);
    }
    let base = std::env::temp_dir().join(format!("outpost-pg-ci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    println!("\n==> postgres: starting a throwaway cluster in {}", base.display());
    let cluster = Cluster::start(&base)?;
    println!("<== postgres: {} ({URL_VAR})", cluster.url);
    Ok(Some(Throwaway(Some(cluster))))
}

/// The directory of the developer's cluster of this workspace (`cargo xtask pg start`).
fn dev_base(root: &Path) -> PathBuf {
    // FNV-1a of the workspace path: one cluster per checkout.
    let hash = root
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    std::env::temp_dir().join(format!("outpost-pg-{:08x}", hash as u32))
}

/// `cargo xtask pg start|stop|url`.
pub fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let base = dev_base(root);
    let url_file = base.join("url");
    match args.first().map(String::as_str) {
        Some("start") => {
            if let Ok(url) = std::fs::read_to_string(&url_file) {
                println!("{url}");
                return Ok(());
            }
            let cluster = Cluster::start(&base)?;
            println!("{}", cluster.url);
            eprintln!("run the PostgreSQL tests with: export {URL_VAR}=$(cargo xtask pg url)");
            Ok(())
        }
        Some("url") => std::fs::read_to_string(&url_file)
            .map(|url| println!("{url}"))
            .map_err(|_| "no PostgreSQL started for this workspace; run cargo xtask pg start".into()),
        Some("stop") => {
            if !base.exists() {
                return Err("no PostgreSQL started for this workspace".into());
            }
            let bin = bindir()?;
            Cluster { base: base.clone(), bin, url: String::new() }.stop()?;
            println!("stopped and removed {}", base.display());
            Ok(())
        }
        _ => Err("usage: cargo xtask pg start|stop|url".into()),
    }
}
