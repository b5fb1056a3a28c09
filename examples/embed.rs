//! Embed Outpost: two SQLite database files, written apart (two devices offline), then replicated
//! both ways; the record edited on both sides keeps both versions as a conflict, and one write
//! resolves it.
//!
//! ```text
//! cargo run --example embed
//! ```

use outpost::replication::Options;
use outpost::{
    Attributes, GetOptions, InfoReader, NewTable, PutRecord, RecordReader, RecordWriter, Result, TableWriter, Value,
};

fn note(text: &str) -> Attributes {
    Attributes::new().with("text", Value::String(text.into()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tablet = outpost::sqlite::create_file(&dir.path().join("tablet.outpost"), "tablet", Default::default()).await?;
    let office = outpost::sqlite::create_file(&dir.path().join("office.outpost"), "office", Default::default()).await?;

    // The tablet defines a table and writes a note; one pass gives the office both.
    tablet.create_table(NewTable { name: "notes".into(), ..Default::default() }).await?;
    let first = PutRecord { id: Some("n1".into()), attributes: note("check the pump"), ..Default::default() };
    let rev = tablet.put_record("notes", first).await?.rev;
    let report = outpost::replicate(&tablet, &office, &Options::default()).await?;
    println!("tablet → office: {} revisions written", report.progress.revisions_written);

    // Both edit the same note while apart.
    let edit =
        |text: &str| PutRecord { id: Some("n1".into()), rev: Some(rev), attributes: note(text), ..Default::default() };
    tablet.put_record("notes", edit("pump checked, fine")).await?;
    office.put_record("notes", edit("pump replaced")).await?;

    // Reconciled, both hold both versions; the same winner everywhere, the other kept as a conflict.
    let (ab, ba) = outpost::sync(&tablet, &office, &Options::default()).await?;
    println!("sync: {} and {} revisions written", ab.progress.revisions_written, ba.progress.revisions_written);
    let with_conflicts = GetOptions { conflicts: true, ..Default::default() };
    let on_tablet = tablet.get_record("notes", "n1", with_conflicts.clone()).await?;
    let on_office = office.get_record("notes", "n1", with_conflicts.clone()).await?;
    assert_eq!(on_tablet.rev, on_office.rev, "both peers pick the same winner");
    let losers = on_tablet.conflicts.clone().unwrap_or_default();
    println!("winner {:?}, {} conflict(s) kept", on_tablet.attributes.get("text"), losers.len());
    assert_eq!(losers.len(), 1);

    // One side resolves: a write on the winner that closes the other branch; a pass carries it over.
    let resolve = PutRecord {
        id: Some("n1".into()),
        rev: Some(on_tablet.rev),
        attributes: note("pump replaced and checked"),
        resolves: losers,
    };
    tablet.put_record("notes", resolve).await?;
    outpost::replicate(&tablet, &office, &Options::default()).await?;
    let settled = office.get_record("notes", "n1", with_conflicts).await?;
    println!("resolved: {:?}, conflicts {:?}", settled.attributes.get("text"), settled.conflicts.unwrap_or_default());
    let (t, o) = (tablet.info().await?, office.info().await?);
    println!(
        "tablet: {} records at seq {}; office: {} records at seq {}",
        t.record_count, t.update_seq, o.record_count, o.update_seq
    );
    Ok(())
}
