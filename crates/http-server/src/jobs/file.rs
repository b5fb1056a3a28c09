//! The jobs file: the definitions of the running continuous jobs, so that a restarted server resumes
//! them. Replaced atomically (temp file, fsync, rename, fsync of the directory): a crash leaves the
//! old list or the new one, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

use outpost_api::{Error, Result};
use serde::{Deserialize, Serialize};

use super::spec::JobSpec;

/// The file's format version.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    version: u32,
    jobs: Vec<JobSpec>,
}

/// The job definitions in `path`; none when the file does not exist. A file that cannot be read or
/// parsed is an error (starting without it would drop the jobs it lists at the next write).
pub(crate) fn load(path: &Path) -> Result<Vec<JobSpec>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::unavailable(format!("cannot read the replication jobs file {}: {e}", path.display())))
        }
    };
    let corrupt =
        |why: String| Error::corrupt(format!("the replication jobs file {} {why}; fix or remove it", path.display()));
    let file: JobsFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("is not valid: {e}")))?;
    if file.version != VERSION {
        return Err(corrupt(format!("has version {}; this server reads version {VERSION}", file.version)));
    }
    Ok(file.jobs)
}

/// Replace `path` with a file listing `jobs`.
pub(crate) fn store(path: &Path, jobs: &[JobSpec]) -> std::io::Result<()> {
    let file = JobsFile { version: VERSION, jobs: jobs.to_vec() };
    let mut bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let temp = temp_path(path);
    // Owner-only (SPEC §14): the file names the servers this one replicates with.
    // A stale temp file (a crash mid-write) is removed; a new one is created, never opened through a link.
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&temp)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temp, path)?;
    // The rename is durable once the directory entry is (a no-op where directories cannot be opened).
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use outpost_api::ErrorKind;

    use super::*;
    use crate::jobs::spec::DEFAULT_BATCH_SIZE;

    fn spec(id: &str) -> JobSpec {
        JobSpec {
            id: id.into(),
            source: "a".into(),
            target: "http://127.0.0.1:1/dbs/b".into(),
            continuous: true,
            bidirectional: true,
            tables: Some(vec!["t".into()]),
            batch_size: 7,
            create_target: true,
        }
    }

    #[test]
    fn jobs_round_trip_and_replace_the_file_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("replication-jobs.json");
        assert_eq!(load(&path).expect("no file"), Vec::new());
        store(&path, &[spec("1"), spec("2")]).expect("store");
        assert_eq!(load(&path).expect("load"), vec![spec("1"), spec("2")]);
        store(&path, &[spec("2")]).expect("store");
        assert_eq!(load(&path).expect("load"), vec![spec("2")]);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["replication-jobs.json"], "no temp file is left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the jobs file is the owner's only");
        }
    }

    #[test]
    fn left_out_fields_take_their_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.json");
        std::fs::write(&path, r#"{"version": 1, "jobs": [{"id": "1", "source": "a", "target": "b"}]}"#).unwrap();
        let jobs = load(&path).expect("load");
        assert_eq!(jobs[0].batch_size, DEFAULT_BATCH_SIZE);
        assert!(!jobs[0].continuous && !jobs[0].create_target && jobs[0].tables.is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.json");
        for (text, reason) in [
            ("{\"version\": 1, \"jobs\": [", "is not valid"),
            ("{\"version\": 2, \"jobs\": []}", "version 2"),
            ("{\"version\": 1, \"jobs\": [{\"id\": 1}]}", "is not valid"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load(&path).expect_err(text);
            assert_eq!(e.kind, ErrorKind::Corrupt, "{text}");
            assert!(e.message.contains(reason) && e.message.contains("fix or remove it"), "{text}: {e}");
        }
    }
}
