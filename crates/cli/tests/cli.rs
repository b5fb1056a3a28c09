//! The `outpost` binary end to end: each test runs the real binary in a fresh temporary directory.

use std::process::Command;

use serde_json::Value;

const DB: &str = "field.outpost";

/// What one run of the binary did.
struct Run {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "outpost {}\nstdout: {}\nstderr: {}", self.args, self.stdout, self.stderr);
        self
    }
    fn ok(self) -> Self {
        self.expect(0)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("outpost {}: stdout is not JSON ({e}): {}", self.args, self.stdout))
    }
}

/// A temporary working directory holding a database `field.outpost` with a table `people`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn empty() -> Self {
        Scratch { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    fn with_table() -> Self {
        let s = Scratch::empty();
        s.run(&["db", "create", DB]).ok();
        s.run(&["table", "create", DB, "people", "--description", "who is who"]).ok();
        s
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("OUTPOST_LOG")
            .env_remove("OUTPOST_USER")
            .output()
            .expect("the outpost binary runs");
        Run {
            args: args.join(" "),
            code: out.status.code().expect("an exit code"),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }

    /// Put with `--json` and return the new rev.
    fn put(&self, args: &[&str]) -> String {
        let mut all = vec!["put", DB, "people"];
        all.extend_from_slice(args);
        all.push("--json");
        let run = self.run(&all).ok();
        run.json()["rev"].as_str().expect("a rev").to_owned()
    }

    fn get_json(&self, id: &str) -> Value {
        self.run(&["get", DB, "people", id, "--json"]).ok().json()
    }
}

#[test]
fn records_are_written_from_pairs_plain_json_and_wire_json() {
    let s = Scratch::with_table();
    s.put(&["ann", "name=Ann", "size=4", "ok=true", r#"tags=["a"]"#]);
    s.put(&["bob", "--plain", r#"{"name": "Bob", "price": 12.50}"#]);
    s.put(&["cy", "--wire", r#"{"when": {"timestamp": "2026-01-01T00:00:00.500Z"}, "n": {"int": "007"}}"#]);

    let cases = [
        ("ann", r#"{"name":{"string":"Ann"},"ok":{"bool":true},"size":{"int":"4"},"tags":{"list":[{"string":"a"}]}}"#),
        ("bob", r#"{"name":{"string":"Bob"},"price":{"decimal":"12.5"}}"#),
        ("cy", r#"{"n":{"int":"7"},"when":{"timestamp":"2026-01-01T00:00:00.5Z"}}"#),
    ];
    for (id, attributes) in cases {
        let record = s.get_json(id);
        assert_eq!(record["attributes"], serde_json::from_str::<Value>(attributes).unwrap(), "{id}");
        assert_eq!(record["id"], id);
        assert!(record["rev"].as_str().unwrap().starts_with("1-"), "{record}");
    }

    // A generated id comes back in the result.
    let run = s.run(&["put", DB, "people", "name=Dee", "--json"]).ok();
    let id = run.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get_json(&id)["attributes"]["name"]["string"], "Dee");
}

#[test]
fn get_prints_the_rev_then_plain_attributes() {
    let s = Scratch::with_table();
    let rev = s.put(&["ann", "name=Ann", "size=4"]);
    let human = s.run(&["get", DB, "people", "ann", "--conflicts"]).ok();
    assert_eq!(human.stdout, format!("rev {rev}\n{{\n  \"name\": \"Ann\",\n  \"size\": 4\n}}\nconflicts: none\n"));

    let plain = s.run(&["get", DB, "people", "ann", "--plain", "--revs"]).ok().json();
    assert_eq!(plain["attributes"], serde_json::json!({"name": "Ann", "size": 4}));
    assert_eq!(plain["revisions"], serde_json::json!([rev]));
}

#[test]
fn a_stale_rev_is_a_conflict_that_names_the_current_rev() {
    let s = Scratch::with_table();
    let first = s.put(&["ann", "name=Ann"]);
    let second = s.put(&["ann", "--rev", &first, "name=Annie"]);
    assert!(second.starts_with("2-"), "{second}");

    let run = s.run(&["put", DB, "people", "ann", "--rev", &first, "name=Anne"]).expect(4);
    assert!(run.stderr.starts_with("error: conflict: "), "{}", run.stderr);
    assert!(run.stderr.contains(&second), "names the current rev: {}", run.stderr);
    // Creating over an existing record without a rev is the same conflict.
    let run = s.run(&["put", DB, "people", "ann", "name=Anne"]).expect(4);
    assert!(run.stderr.contains(&second), "{}", run.stderr);
    // The old revision is still readable by rev.
    let old = s.run(&["get", DB, "people", "ann", "--rev", &first, "--json"]).ok().json();
    assert_eq!(old["attributes"]["name"]["string"], "Ann");
}

#[test]
fn deleted_and_missing_records_are_not_found() {
    let s = Scratch::with_table();
    s.put(&["ann", "name=Ann"]);
    let tombstone = s.run(&["delete", DB, "people", "ann", "--json"]).ok().json();
    assert!(tombstone["rev"].as_str().unwrap().starts_with("2-"));

    for args in [
        &["get", DB, "people", "ann"][..],
        &["get", DB, "people", "nobody"],
        &["delete", DB, "people", "nobody"],
        &["get", DB, "nowhere", "ann"],
        &["put", DB, "nowhere", "ann", "a=1"],
    ] {
        let run = s.run(args).expect(3);
        assert!(run.stderr.starts_with("error: not_found: "), "{}", run.stderr);
    }
    let listed = s.run(&["ls", DB, "people", "--deleted", "--json"]).ok().json();
    assert_eq!(listed["records"][0]["deleted"], true);
}

#[test]
fn ls_pages_through_records_in_id_order() {
    let s = Scratch::with_table();
    for i in 1..=5 {
        s.put(&[&format!("r{i}"), &format!("n={i}")]);
    }
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut args = vec!["ls", DB, "people", "--limit", "2", "--json"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = s.run(&args).ok().json();
        let ids: Vec<String> =
            page["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
        pages.push(ids);
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, vec![vec!["r1", "r2"], vec!["r3", "r4"], vec!["r5"]]);

    let human = s.run(&["ls", DB, "people", "--limit", "2"]).ok();
    assert_eq!(human.stdout.lines().count(), 2, "{}", human.stdout);
    assert!(human.stdout.starts_with("r1  1-"), "{}", human.stdout);
    assert!(human.stderr.contains("more records: --after r2"), "{}", human.stderr);
}

#[test]
fn changes_resume_from_since() {
    let s = Scratch::with_table();
    s.put(&["ann", "name=Ann"]);
    let first = s.run(&["changes", DB, "--json"]).ok().json();
    let seqs: Vec<u64> = first["changes"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2], "the table definition, then ann");
    let last = first["last_seq"].as_u64().unwrap();
    assert_eq!((last, first["pending"].as_u64()), (2, Some(0)));

    s.put(&["bob", "name=Bob"]);
    let next = s.run(&["changes", DB, "--since", &last.to_string(), "--json"]).ok().json();
    let ids: Vec<&str> = next["changes"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["bob"]);

    let human = s.run(&["changes", DB, "--since", "1", "--tables", "people"]).ok();
    assert!(human.stdout.starts_with("2  people/ann  1-"), "{}", human.stdout);
    assert!(human.stderr.contains("last_seq 3, pending 0"), "{}", human.stderr);
}

#[test]
fn databases_are_created_inspected_checked_and_reidentified() {
    let s = Scratch::with_table();
    s.put(&["ann", "name=Ann"]);

    let info = s.run(&["db", "info", DB, "--json"]).ok().json();
    assert_eq!(info["name"], "field");
    assert_eq!(info["backend"], "sqlite");
    assert_eq!(info["update_seq"], 2);
    assert_eq!(info["record_count"], 1);
    assert_eq!(info["epochs"].as_array().unwrap().len(), 1);

    let check = s.run(&["db", "check", DB]).ok();
    assert!(check.stdout.starts_with("ok: 2 revision events read"), "{}", check.stdout);
    assert_eq!(s.run(&["db", "check", DB, "--json"]).ok().json()["ok"], true);

    let epoch = s.run(&["db", "reidentify", DB, "--json"]).ok().json();
    assert_eq!(epoch["start_seq"], 3);
    let info = s.run(&["db", "info", DB, "--json"]).ok().json();
    assert_eq!(info["uuid"], epoch["uuid"]);
    assert_eq!(info["epochs"].as_array().unwrap().len(), 2);

    s.run(&["db", "create", "other.outpost", "--name", "second-db"]).ok();
    std::fs::write(s.dir.path().join("notes.txt"), "not a database").unwrap();
    let listed = s.run(&["db", "list", ".", "--json"]).ok().json();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["info"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["field", "second-db"]);
    let human = s.run(&["db", "list", "."]).ok();
    assert!(human.stdout.lines().nth(1).unwrap().starts_with("field "), "{}", human.stdout);
}

#[tokio::test]
async fn db_check_names_a_tampered_revision_and_exits_1() {
    let s = Scratch::with_table();
    let rev = s.put(&["ann", "name=Ann"]);
    {
        let path = s.dir.path().join(DB);
        let db = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await.unwrap();
        // Rewrite a stored body behind the engine's back, as disk corruption or a bad tool would.
        let sql = "UPDATE _events SET body = '{\"name\":{\"string\":\"Mallory\"}}' WHERE id = 'ann'";
        db.storage().with_connection(|c| c.execute_batch(sql)).await.unwrap();
    }
    let run = s.run(&["db", "check", DB]).expect(1);
    assert!(
        run.stdout.contains(&format!("revision {rev} of people/ann (seq 2) does not match its body")),
        "{}",
        run.stdout
    );
    let report = s.run(&["db", "check", DB, "--json"]).expect(1).json();
    assert_eq!(report["ok"], false);
    // The tampered revision. The body is stored once (format 3): the record's state reads it from
    // that same revision, so the state still matches its tree.
    let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(problems[0].contains("does not match its body"), "{report}");
}

#[tokio::test]
async fn db_check_compares_the_stored_live_record_count_with_the_records() {
    let s = Scratch::with_table();
    s.put(&["ann", "name=Ann"]);
    s.put(&["bob", "name=Bob"]);
    let report = s.run(&["db", "check", DB, "--json"]).ok().json();
    assert_eq!((report["ok"].as_bool(), report["live_records"].as_u64()), (Some(true), Some(2)), "{report}");
    {
        let path = s.dir.path().join(DB);
        let db = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await.unwrap();
        // A count gone wrong (a bug, or a hand-edited file): `info` would answer it as it is.
        let sql = "UPDATE _meta SET value = 5 WHERE key = 'record_count'";
        db.storage().with_connection(|c| c.execute_batch(sql)).await.unwrap();
    }
    let run = s.run(&["db", "check", DB]).expect(1);
    assert!(
        run.stdout.contains("the stored live-record count is 5, but the records hold 2 live ones"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn db_compact_drops_old_bodies_reports_them_and_returns_the_space() {
    let s = Scratch::with_table();
    s.run(&["table", "create", DB, "notes", "--keep-bodies", "3"]).ok();
    let shown = s.run(&["table", "show", DB, "notes", "--json"]).ok().json();
    assert_eq!(shown["keep_bodies"], 3);
    // Ten records of twenty revisions each, a few KiB a body, in one batch per round.
    {
        let path = s.dir.path().join(DB);
        let db = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await.unwrap();
        let mut revs: Vec<Option<outpost_api::RevId>> = vec![None; 10];
        for round in 0..20 {
            let ops = (0..10)
                .map(|i| {
                    let attributes = outpost_api::Attributes::from_plain(&serde_json::json!({
                        "round": round, "pad": "x".repeat(4000)
                    }))
                    .unwrap();
                    let put = outpost_api::PutRecord {
                        id: Some(format!("p{i}")),
                        rev: revs[i],
                        attributes,
                        resolves: vec![],
                    };
                    outpost_api::WriteOp::put("people", put)
                })
                .collect();
            let results = outpost_api::RecordWriter::write_batch(&db, ops).await.unwrap();
            for (i, r) in results.into_iter().enumerate() {
                revs[i] = Some(r.unwrap().rev);
            }
        }
    }
    s.put(&["--id", "x", "round=1"]);
    let report = s.run(&["db", "compact", DB, "--table", "people", "--json"]).ok().json();
    assert_eq!(report["bodies_dropped"], 10 * 19, "{report}");
    assert!(report["body_bytes"].as_u64().unwrap() > 10 * 19 * 4000, "{report}");
    let (before, after) = (report["size_before"].as_u64().unwrap(), report["size_after"].as_u64().unwrap());
    assert!(after * 3 < before, "the file shrinks: {report}");
    let check = s.run(&["db", "check", DB, "--json"]).ok().json();
    assert_eq!((check["ok"].as_bool(), check["compacted"].as_u64()), (Some(true), Some(190)), "{check}");
    let current = s.get_json("p3");
    assert_eq!(current["attributes"]["round"], serde_json::json!({"int": "19"}));
    let human = s.run(&["db", "compact", DB, "--keep-bodies", "0"]).ok();
    assert!(human.stdout.starts_with("11 records read, 0 bodies dropped"), "{}", human.stdout);
    let vacuumed = s.run(&["db", "compact", DB, "--vacuum", "--json"]).ok().json();
    assert!(vacuumed["size_after"].as_u64().unwrap() <= after, "{vacuumed}");
    let err = s.run(&["db", "compact", DB, "--table", "nope"]).expect(3);
    assert!(err.stderr.contains("nope"), "{}", err.stderr);
}

async fn auto_vacuum(db: &outpost_sqlite::SqliteDatabase) -> i64 {
    db.storage().with_connection(|c| c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap()).await
}

#[test]
fn a_table_update_changes_only_what_is_given() {
    let s = Scratch::with_table();
    let def = s.run(&["table", "update", DB, "people", "--keep-bodies", "5", "--json"]).ok().json();
    assert_eq!((def["keep_bodies"].as_u64(), def["description"].as_str()), (Some(5), Some("who is who")), "{def}");
    let def = s.run(&["table", "update", DB, "people", "--keep-all-bodies", "--couch", "--json"]).ok().json();
    assert_eq!((def["keep_bodies"].is_null(), def["couch"].as_bool()), (true, Some(true)), "{def}");
    let refused = s.run(&["table", "update", DB, "people", "--policy", "merge-fields"]).expect(5);
    assert!(refused.stderr.contains("keep-conflicts"), "{}", refused.stderr);
    let shown = s.run(&["table", "update", DB, "people", "--no-couch", "--description", "staff"]).ok();
    assert!(shown.stdout.contains("staff") && !shown.stdout.contains("couch"), "{}", shown.stdout);
    let nothing = s.run(&["table", "update", DB, "people"]).expect(5);
    assert!(nothing.stderr.contains("nothing to change"), "{}", nothing.stderr);
}

/// A file made before Outpost returned space by itself (auto_vacuum off) keeps its free pages after a
/// compaction; `--vacuum` rewrites it once and switches it over.
#[tokio::test]
async fn db_compact_vacuum_converts_a_file_made_without_incremental_vacuum() {
    let s = Scratch::with_table();
    let pad = format!("pad={}", "x".repeat(4000));
    let mut rev = s.put(&["ann", "round=0", &pad]);
    for round in 1..12 {
        rev = s.put(&["ann", &format!("round={round}"), &pad, "--rev", &rev]);
    }
    let path = s.dir.path().join(DB);
    {
        let db = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await.unwrap();
        assert_eq!(auto_vacuum(&db).await, 2, "a new file vacuums incrementally");
        let old = "PRAGMA auto_vacuum = NONE; VACUUM;";
        db.storage().with_connection(|c| c.execute_batch(old)).await.unwrap();
        assert_eq!(auto_vacuum(&db).await, 0);
    }
    let report = s.run(&["db", "compact", DB, "--json"]).ok().json();
    assert_eq!(report["bodies_dropped"], 11, "{report}");
    let kept = report["size_after"].as_u64().unwrap();
    assert!(kept * 10 > report["size_before"].as_u64().unwrap() * 9, "the free pages stay in the file: {report}");
    let vacuumed = s.run(&["db", "compact", DB, "--vacuum", "--json"]).ok().json();
    assert!(vacuumed["size_after"].as_u64().unwrap() + 11 * 4000 <= kept, "the bodies' pages are returned: {vacuumed}");
    let db = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await.unwrap();
    assert_eq!(auto_vacuum(&db).await, 2, "switched to incremental vacuum");
    drop(db);
    assert_eq!(s.run(&["db", "check", DB, "--json"]).ok().json()["ok"], true);
}

#[test]
fn tables_are_created_listed_and_shown() {
    let s = Scratch::with_table();
    let def = s
        .run(&[
            "table",
            "create",
            DB,
            "orders",
            "--policy",
            "merge-fields",
            "--field",
            "qty:int:required",
            "--field",
            "note:string",
            "--created-by",
            "ann",
            "--metadata",
            r#"{"owner": "ops"}"#,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(def["policy"], "merge-fields");
    assert_eq!(def["fields"]["qty"], serde_json::json!({"type": "int", "required": true}));
    assert_eq!(def["created_by"], "ann");

    let list = s.run(&["table", "list", DB]).ok();
    assert_eq!(list.stdout, "orders  merge-fields\npeople  keep-conflicts  who is who\n");
    let show = s.run(&["table", "show", DB, "orders"]).ok();
    assert!(show.stdout.contains("fields       note: string, qty: int (required)"), "{}", show.stdout);

    // Declared fields are checked on writes.
    let run = s.run(&["put", DB, "orders", "o1", "note=x"]).expect(5);
    assert!(run.stderr.contains("requires field \"qty\""), "{}", run.stderr);
    s.run(&["put", DB, "orders", "o1", "qty=2"]).ok();
}

#[test]
fn errors_have_one_exit_code_per_kind() {
    let s = Scratch::with_table();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["table", "create", DB, "Bad"], 5, "error: invalid_input: invalid table name \"Bad\""),
        (&["table", "create", DB, "_tables"], 5, "reserved"),
        (&["table", "create", DB, "people"], 6, "error: already_exists: "),
        (&["db", "create", DB], 6, "error: already_exists: "),
        (&["db", "create", "Field.outpost"], 5, "--name"),
        (&["db", "create", "missing/dir.outpost"], 3, "does not exist"),
        (&["db", "info", "missing.outpost"], 3, "error: not_found: "),
        (&["db", "list", "no-such-dir"], 3, "error: not_found: "),
        (&["db", "info", "postgres://localhost/x"], 5, "--db NAME"),
        (&["db", "info", "http://localhost:7070/dbs/Bad"], 5, "invalid database name"),
        (&["put", DB, "people", "ann", "--plain", "[1]"], 5, "object"),
        (&["put", DB, "people", "ann", "_sys=1"], 5, "reserved"),
        (&["put", DB, "people", "ann", "--rev", "not-a-rev"], 2, "invalid revision id"),
        (&["ls", DB, "people", "--limit", "0"], 5, "limit"),
        (&["table", "create", DB, "t", "--field", "qty:integer"], 2, "unknown type"),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, needle) in cases {
        let run = s.run(args).expect(*code);
        assert!(run.stderr.contains(needle), "outpost {}: {}", run.args, run.stderr);
    }
}

/// `outpost demo` (SPEC §18) runs every scene and each comes out as narrated, in words and in JSON.
#[test]
fn the_demo_comes_out_as_narrated() {
    let s = Scratch::empty();
    let told = s.run(&["demo"]).ok();
    assert!(told.stdout.contains("All 5 scenes came out as narrated."), "{}", told.stdout);
    assert!(!told.stdout.contains("FAILED"), "{}", told.stdout);
    let account = s.run(&["demo", "--json", "--keep"]).ok().json();
    assert_eq!(account["ok"], true, "{account}");
    let scenes = account["scenes"].as_array().expect("scenes");
    assert_eq!(scenes.len(), 5);
    for scene in scenes {
        let checks: Vec<&Value> =
            scene["steps"].as_array().unwrap().iter().flat_map(|st| st["checks"].as_array().unwrap()).collect();
        assert!(checks.len() >= 3, "{scene}");
        assert!(checks.iter().all(|c| c["ok"] == true), "{scene}");
    }
    let kept = std::path::PathBuf::from(account["dir"].as_str().expect("the kept directory"));
    assert!(kept.join("tablet.outpost").is_file() && kept.join("files").join("manifest.csv").is_file());
    std::fs::remove_dir_all(kept).unwrap();
}

#[test]
fn every_subcommand_has_help() {
    let s = Scratch::empty();
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["demo"],
        &["db"],
        &["db", "create"],
        &["db", "info"],
        &["db", "list"],
        &["db", "check"],
        &["db", "reidentify"],
        &["db", "compact"],
        &["table"],
        &["table", "create"],
        &["table", "list"],
        &["table", "show"],
        &["table", "update"],
        &["put"],
        &["get"],
        &["delete"],
        &["ls"],
        &["changes"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let run = s.run(&args).ok();
        assert!(run.stdout.contains("Usage: outpost"), "outpost {}: {}", run.args, run.stdout);
        assert!(run.stdout.contains("Exit codes:"), "outpost {}: {}", run.args, run.stdout);
    }
    let serve = s.run(&["serve", "--help"]).ok();
    for needle in ["--quicksync <DIR>", "OUTPOST_QUICKSYNC", "<data>/quicksync"] {
        assert!(serve.stdout.contains(needle), "outpost serve --help names {needle}: {}", serve.stdout);
    }
}
