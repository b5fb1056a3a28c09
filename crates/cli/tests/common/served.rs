//! A running `outpost serve --config FILE` for the end-to-end tests that need a server process with a
//! config (TLS, tokens, limits): its address from the first line it prints, its log (at debug level)
//! in a file, stopped with SIGTERM or killed when dropped, so no test leaves a process behind.
// Each test crate that includes this uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Served {
    child: Child,
    /// `http(s)://host:port`.
    pub url: String,
    /// Everything the server logged.
    pub log: PathBuf,
}

impl Served {
    /// Start `outpost serve --config CONFIG` in `dir` with extra arguments.
    pub fn start(dir: &Path, config: &Path, extra: &[&str]) -> Served {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let log = dir.join(format!("serve-{}-{nanos}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(extra)
            .current_dir(dir)
            .env("OUTPOST_LOG", "debug")
            .env_remove("OUTPOST_DATA")
            .env_remove("OUTPOST_LISTEN")
            .env_remove("OUTPOST_QUICKSYNC")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("outpost serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://") || w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}; log: {}", std::fs::read_to_string(&log).unwrap()))
            .to_owned();
        Served { child, url, log }
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        self.url.split_once("://").map_or(self.url.as_str(), |(_, addr)| addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop with SIGTERM (a graceful shutdown) and wait for the process.
    pub fn stop(&mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
