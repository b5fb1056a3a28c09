//! `outpost demo` (SPEC §18): the scenarios Outpost grew from, run for real on SQLite files in a
//! temporary directory and narrated step by step — what happens, what to look at, and the figure that
//! proves it. Each step's claim is checked; the demo exits non-zero when one does not come out as
//! narrated. `--json` gives the same account for machines.
//!
//! The scenes: `conflicts.rs` (offline edits, a conflict kept and resolved, a merge), `quicksync.rs`
//! (bootstrapping from files, a long-offline peer, the walk back after a restore), `regions.rs`
//! (transitive fast-forward and its trap, a copied file re-identified).

mod conflicts;
mod quicksync;
mod regions;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use outpost_api::{ChangesRequest, Database, Error, Limits, NewTable, ReconcilePolicy, Result};
use outpost_sqlite::SqliteDatabase;
use serde::Serialize;
use serde_json::Value;

use crate::output;

/// The account of a run: every scene, step, figure and check.
#[derive(Serialize)]
struct Account {
    ok: bool,
    dir: Option<PathBuf>,
    scenes: Vec<Scene>,
}

#[derive(Serialize)]
struct Scene {
    title: String,
    about: String,
    steps: Vec<Step>,
    /// Set when the scene stopped on an error before its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Step {
    said: String,
    figures: Vec<Figure>,
    checks: Vec<Check>,
}

#[derive(Serialize)]
struct Figure {
    name: String,
    value: Value,
}

#[derive(Serialize)]
struct Check {
    claim: String,
    ok: bool,
}

/// Tells the story as it happens (unless `--json`), and keeps the account.
pub(crate) struct Narrator {
    json: bool,
    dir: PathBuf,
    scenes: Vec<Scene>,
}

/// The few words the scenes use, said once before them.
const WORDS: &str = "A few words first. Every write is a revision, named `generation-hash` (2-bca5… is the \
    second version of its record), and takes the database's next seq: 1, 2, 3… A chain hash over all \
    revisions up to a seq fingerprints that history, so two databases compare histories in one step. A \
    database is named by a uuid, and (uuid, seq) must always mean one state: a database that starts a \
    different history (restored from a backup, copied) takes a new uuid from its next seq on — a new \
    epoch. When a replication pass has read a peer to the end, the receiver records how far: knowledge \
    that it holds everything of that peer up to that seq, which it passes on with its data.";

/// Where the narration wraps.
const WIDTH: usize = 96;

impl Narrator {
    /// Begin a scene: its title and what it is about.
    fn scene(&mut self, title: &str, about: &str) {
        if !self.json {
            let n = self.scenes.len() + 1;
            println!("\n{n}. {title}\n");
            print!("{}", wrap(about, "   ", "   "));
        }
        let scene = Scene { title: title.into(), about: about.into(), steps: Vec::new(), error: None };
        self.scenes.push(scene);
    }

    /// Begin a step: what happens now.
    fn say(&mut self, text: &str) {
        if !self.json {
            println!();
            print!("{}", wrap(text, "   > ", "     "));
        }
        let step = Step { said: text.into(), figures: Vec::new(), checks: Vec::new() };
        self.current().steps.push(step);
    }

    /// A figure to look at.
    fn show(&mut self, name: &str, value: impl Serialize + Display) {
        if !self.json {
            println!("       {name}: {value}");
        }
        let value = serde_json::to_value(&value).unwrap_or(Value::Null);
        self.step().figures.push(Figure { name: name.into(), value });
    }

    /// A claim the step makes, checked: a ✓, or a ✗ that fails the demo.
    fn check(&mut self, ok: bool, claim: &str) {
        if !self.json {
            let mark = if ok { "ok " } else { "FAILED:" };
            print!("{}", wrap(claim, &format!("       {mark} "), "           "));
        }
        self.step().checks.push(Check { claim: claim.into(), ok });
    }

    fn current(&mut self) -> &mut Scene {
        if self.scenes.is_empty() {
            self.scene("", "");
        }
        self.scenes.last_mut().expect("a scene")
    }

    fn step(&mut self) -> &mut Step {
        if self.current().steps.is_empty() {
            self.say("");
        }
        self.current().steps.last_mut().expect("a step")
    }

    /// A path in the demo's directory.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new SQLite database file `<name>.outpost` in the demo's directory.
    async fn db(&self, name: &str) -> Result<SqliteDatabase> {
        outpost_sqlite::create_file(&self.path(&format!("{name}.outpost")), name, Limits::default()).await
    }
}

/// `text` wrapped at [`WIDTH`], the first line after `first`, the others after `rest`.
fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// Run every scene in a fresh temporary directory (kept with `keep`), narrating on stdout, or with
/// `json` printing only the account at the end. Exit 1 when a step did not come out as narrated.
pub async fn run(json: bool, keep: bool) -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("outpost-demo-")
        .tempdir()
        .map_err(|e| Error::unavailable(format!("cannot make a temporary directory: {e}")))?;
    let mut narrator = Narrator { json, dir: dir.path().to_owned(), scenes: Vec::new() };
    if !json {
        println!("Outpost demo: every step below runs for real, on SQLite database files in");
        println!("{}, and checks that it came out as told.", dir.path().display());
        println!();
        print!("{}", wrap(WORDS, "", ""));
    }
    let scenes: [(&str, SceneFn); 5] = [
        ("offline edits", |n| Box::pin(conflicts::offline_edits(n))),
        ("quicksync", |n| Box::pin(quicksync::bootstrap_and_walk_back(n))),
        ("fast-forward", |n| Box::pin(regions::transitive_fast_forward(n))),
        ("the trap", |n| Box::pin(regions::the_trap(n))),
        ("a copied file", |n| Box::pin(regions::a_copied_file(n))),
    ];
    for (name, scene) in scenes {
        if let Err(e) = scene(&mut narrator).await {
            if !json {
                println!("       FAILED: the {name} scene stopped: {e}");
            }
            narrator.current().error = Some(e.to_string());
        }
    }
    let failed = narrator
        .scenes
        .iter()
        .filter(|s| s.error.is_some() || s.steps.iter().any(|st| st.checks.iter().any(|c| !c.ok)))
        .count();
    let kept = keep.then(|| dir.keep());
    if json {
        let account = Account { ok: failed == 0, dir: kept, scenes: narrator.scenes };
        output::emit_json(&account)?;
    } else {
        println!();
        if failed == 0 {
            println!("All {} scenes came out as narrated.", narrator.scenes.len());
        } else {
            println!("{failed} of {} scenes did NOT come out as narrated.", narrator.scenes.len());
        }
        match &kept {
            Some(dir) => println!("The databases and files are kept in {}.", dir.display()),
            None => println!("(Run `outpost demo --keep` to keep the databases and files and look at them.)"),
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

type SceneFn =
    for<'a> fn(&'a mut Narrator) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

// Helpers the scenes share.

/// Create a table.
async fn table(db: &dyn Database, name: &str, policy: ReconcilePolicy) -> Result<()> {
    db.create_table(NewTable { name: name.into(), policy, ..NewTable::default() }).await.map(drop)
}

/// How many of `from`'s leaf revisions `to` lacks (0: `to` holds everything `from` does).
async fn lacking(from: &dyn Database, to: &dyn Database) -> Result<usize> {
    let mut since = 0;
    let mut missing = 0;
    loop {
        let page = from.changes(ChangesRequest { since, limit: 1000, tables: None }).await?;
        let have = page.leaf_revs();
        if !have.is_empty() {
            missing += to.revs_diff(have).await?.iter().map(|r| r.revs.len()).sum::<usize>();
        }
        since = page.last_seq;
        if page.pending == 0 {
            return Ok(missing);
        }
    }
}

/// Write `n` records `<prefix>0000…` into `table`, or a new revision of each when they exist, in
/// batches.
async fn write_records(
    db: &dyn Database,
    table: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
    tag: &str,
) -> Result<()> {
    use outpost_api::{GetOptions, PutRecord, WriteOp};
    let ids: Vec<String> = range.map(|i| format!("{prefix}{i:04}")).collect();
    for chunk in ids.chunks(500) {
        let mut ops = Vec::with_capacity(chunk.len());
        for id in chunk {
            let rev = db.get_record(table, id, GetOptions::default()).await.ok().map(|r| r.rev);
            let attributes = outpost_api::Attributes::from_plain(&serde_json::json!({"id": id, "tag": tag}))?;
            ops.push(WriteOp::put(table, PutRecord { id: Some(id.clone()), rev, attributes, resolves: vec![] }));
        }
        for result in db.write_batch(ops).await? {
            result?;
        }
    }
    Ok(())
}
