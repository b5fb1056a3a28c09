//! `outpost quicksync publish` and `pull` end to end with the real binary: a pull over HTTP killed
//! with SIGKILL at random moments (while downloading and while applying), rerun each time, ends
//! identical to a clean bootstrap; and applying a large snapshot keeps the process's memory flat.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outpost_api::{Attributes, InfoReader, Limits, NewTable, RecordWriter, ReplicaSource, TableWriter, Value, WriteOp};

mod common;
use common::{entries, json_of, outpost, Rng};

/// A database file with `records` records of about 450 bytes, every seventh deleted.
async fn source(path: &Path, records: usize) {
    let db = outpost_sqlite::create_file(path, "src", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "items".into(), ..NewTable::default() }).await.unwrap();
    for chunk in (0..records).collect::<Vec<_>>().chunks(1000) {
        let ops = chunk
            .iter()
            .map(|&i| {
                let attributes = Attributes::new()
                    .with("n", Value::Int(i as i64))
                    .with("text", Value::string(format!("{i:x}").repeat(40)));
                let put = outpost_api::PutRecord {
                    id: Some(format!("item-{i:06}")),
                    rev: None,
                    attributes,
                    resolves: vec![],
                };
                WriteOp::put("items", put)
            })
            .collect();
        for r in db.write_batch(ops).await.unwrap() {
            r.unwrap();
        }
    }
    for i in (0..records).step_by(7) {
        db.delete_record("items", &format!("item-{i:06}"), None).await.unwrap();
    }
}

/// A deliberately slow static file server for a directory (so a kill can land mid-download), with
/// `Range: bytes=N-` support as a resumed download asks. Stops when dropped.
struct SlowFiles {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowFiles {
    fn start(dir: PathBuf) -> SlowFiles {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let dir = dir.clone();
                        std::thread::spawn(move || {
                            let _ = serve_one(stream, &dir);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowFiles { port, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/files/", self.port)
    }
}

impl Drop for SlowFiles {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut from = 0u64;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            from = v.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
    }
    let name = request.split_whitespace().nth(1).unwrap_or("").trim_start_matches("/files/").to_owned();
    let mut out = stream;
    let Ok(mut file) = std::fs::File::open(dir.join(&name)) else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(from))?;
    let head = if from > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{len}\r\nConnection: close\r\n\r\n",
            len - from,
            len - 1
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    out.write_all(head.as_bytes())?;
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        if name != "manifest.csv" {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The update_seq of the database file at `path`, if there is one.
async fn update_seq(path: &Path) -> Option<u64> {
    let db = outpost_sqlite::open_file(path, Limits::default()).await.ok()?;
    db.info().await.ok().map(|i| i.update_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_at_random_moments_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    source(&d.join("src.outpost"), 20_000).await;
    json_of(d, &["quicksync", "publish", "src.outpost", "pub", "--every", "3000", "--json"]);
    let end = json_of(d, &["db", "info", "src.outpost", "--json"])["update_seq"].as_u64().unwrap();
    let files = SlowFiles::start(d.join("pub"));
    let url = files.url();
    let pull = ["quicksync", "pull", url.as_str(), "dst.outpost", "--no-live", "--chunk", "200", "--json"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut in_download, mut in_apply, mut finished) = (0, 0, 0);
    for round in 0..80 {
        if in_download + in_apply >= 14 && in_download >= 3 && in_apply >= 3 {
            break;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(pull)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("outpost quicksync pull starts");
        // Early kills land in the (slow) download, later ones in verifying and applying.
        let wait = if round % 2 == 0 { 20 + rng.below(400) } else { 400 + rng.below(2500) };
        std::thread::sleep(Duration::from_millis(wait));
        if child.try_wait().expect("status").is_some() {
            finished += 1;
            // Start over from nothing so the next runs have work to interrupt.
            let _ = std::fs::remove_file(d.join("dst.outpost"));
            continue;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let partial = std::fs::read_dir(d.join("dst.outpost.quicksync-cache"))
            .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".part")))
            .unwrap_or(false);
        // A new file is bootstrapped aside: a database at the path is only ever a whole one.
        let at_path = update_seq(&d.join("dst.outpost")).await;
        assert!(
            !d.join("dst.outpost").exists() || at_path == Some(end),
            "a killed bootstrap left something other than the whole database at the path: {at_path:?}"
        );
        if partial {
            in_download += 1;
        } else if update_seq(&d.join("dst.outpost.bootstrapping")).await.is_some_and(|seq| seq > 0) {
            in_apply += 1;
        } else if at_path.is_some() {
            // Killed after the file was moved into place: start over, so later kills have work.
            finished += 1;
            let _ = std::fs::remove_file(d.join("dst.outpost"));
        }
    }
    assert!(
        in_download >= 3 && in_apply >= 3,
        "kills: {in_download} while downloading, {in_apply} while applying ({finished} finished first)"
    );
    assert!(in_download + in_apply >= 10);

    let last = json_of(d, &pull);
    assert_eq!(last["quicksync"]["end_seq"], json_of(d, &["db", "info", "src.outpost", "--json"])["update_seq"]);
    let (code, out, err) = outpost(d, &["db", "check", "dst.outpost"]);
    assert_eq!(code, 0, "{out}{err}");
    // A clean bootstrap of the same files is the reference: same events, same states.
    json_of(d, &["quicksync", "pull", "pub", "ref.outpost", "--no-live", "--json"]);
    let dst = outpost_sqlite::open_file(&d.join("dst.outpost"), Limits::default()).await.unwrap();
    let reference = outpost_sqlite::open_file(&d.join("ref.outpost"), Limits::default()).await.unwrap();
    let (a, b) = (dst.info().await.unwrap(), reference.info().await.unwrap());
    // Same number of revision events (none written twice) and the same records (chains differ:
    // each database's chain starts from its own genesis).
    assert_eq!((a.update_seq, a.record_count), (b.update_seq, b.record_count));
    let (copy, clean) = (entries(&d.join("dst.outpost")).await, entries(&d.join("ref.outpost")).await);
    assert!(copy == clean, "the interrupted bootstrap differs from a clean one");
    let again = json_of(d, &pull);
    assert_eq!(again["quicksync"]["applied"].as_array().map(Vec::len), Some(0), "nothing applied twice: {again}");
    assert_eq!(dst.info().await.unwrap().update_seq, a.update_seq);
    assert!(!d.join("dst.outpost.quicksync-cache").exists(), "the cache is removed after a completed pull");
    assert!(!dst.knowledge(None).await.unwrap().is_empty(), "the files' knowledge is recorded");
}

/// Peak memory of `outpost quicksync pull` applying a snapshot of `records` records.
async fn peak_rss_applying(d: &Path, records: usize) -> u64 {
    let name = format!("src{records}.outpost");
    source(&d.join(&name), records).await;
    let dir = format!("pub{records}");
    json_of(d, &["quicksync", "publish", &name, &dir, "--every", "1000000", "--json"]);
    let target = format!("dst{records}.outpost");
    let out = json_of(d, &["quicksync", "pull", &dir, &target, "--no-live", "--json"]);
    assert_eq!(out["quicksync"]["start"], "snapshot");
    out["peak_rss_bytes"].as_u64().expect("the peak RSS is reported on Linux")
}

/// `OUTPOST_QUICKSYNC_MEMORY_RECORDS=small,large` (default 10000,60000; a release run with
/// 100000,1000000 gives the 1M-record figure).
fn memory_sizes() -> (usize, usize) {
    let sizes = std::env::var("OUTPOST_QUICKSYNC_MEMORY_RECORDS").unwrap_or_else(|_| "10000,60000".into());
    let parsed: Vec<usize> = sizes.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    match parsed[..] {
        [small, large] if small < large => (small, large),
        _ => panic!("OUTPOST_QUICKSYNC_MEMORY_RECORDS must be two increasing counts, not {sizes:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_snapshot_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let (n_small, n_large) = memory_sizes();
    let small = peak_rss_applying(dir.path(), n_small).await;
    let large = peak_rss_applying(dir.path(), n_large).await;
    eprintln!("peak RSS applying a snapshot: {small} B for {n_small} records, {large} B for {n_large}");
    // Many times the records, about the same peak: memory is bounded by the chunk, not the file.
    assert!(large < small + (24 << 20), "peak RSS {small} B for {n_small} records, {large} B for {n_large}");
}
