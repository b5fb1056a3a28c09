//! Scene 1: two peers edit offline; their conflict is kept on both, listed and resolved; a
//! `merge-fields` table merges edits of different fields.

use outpost_api::{Attributes, Database, GetOptions, PutRecord, ReconcilePolicy, Record, RecordWriter, Result};
use outpost_reconciler::{sync, Options};
use serde_json::json;

use super::{table, Narrator};

fn body(json: serde_json::Value) -> Result<Attributes> {
    Attributes::from_plain(&json)
}

async fn put(
    db: &dyn Database,
    table: &str,
    id: &str,
    rev: Option<outpost_api::RevId>,
    json: serde_json::Value,
) -> Result<outpost_api::RevId> {
    let put = PutRecord { id: Some(id.into()), rev, attributes: body(json)?, resolves: vec![] };
    Ok(db.put_record(table, put).await?.rev)
}

async fn read(db: &dyn Database, table: &str, id: &str) -> Result<Record> {
    db.get_record(table, id, GetOptions { conflicts: true, ..GetOptions::default() }).await
}

fn conflicts(r: &Record) -> usize {
    r.conflicts.as_ref().map_or(0, Vec::len)
}

pub(super) async fn offline_edits(n: &mut Narrator) -> Result<()> {
    n.scene(
        "Offline edits: a conflict kept, listed and resolved, and a merge",
        "A field tablet and the office each hold their own copy of the database and write to it without \
         asking anyone. Whenever they can reach each other they sync, and both end up with the same \
         records. When both changed the same record meanwhile, nothing is thrown away.",
    );
    let (tablet, office) = (n.db("tablet").await?, n.db("office").await?);
    let both = Options::default();

    n.say("The tablet creates the tables and records a visit; one sync later the office has them too.");
    table(&tablet, "visits", ReconcilePolicy::KeepConflicts).await?;
    table(&tablet, "stock", ReconcilePolicy::MergeFields).await?;
    let v1 = put(&tablet, "visits", "pump-4", None, json!({"site": "Pump 4", "status": "open"})).await?;
    sync(&tablet, &office, &both).await?;
    n.show("visits/pump-4 on the tablet", v1);
    let at_office = read(&office, "visits", "pump-4").await?;
    n.show("visits/pump-4 at the office", at_office.rev);
    n.check(at_office.rev == v1, "the office holds the same revision");

    n.say(
        "The network goes down. On the tablet the technician closes the visit; at the office a \
         dispatcher assigns it to Ann. Each write succeeds at once, offline.",
    );
    let closed = put(&tablet, "visits", "pump-4", Some(v1), json!({"site": "Pump 4", "status": "closed"})).await?;
    let assigned =
        put(&office, "visits", "pump-4", Some(v1), json!({"site": "Pump 4", "status": "open", "assignee": "Ann"}))
            .await?;
    n.show("the tablet's revision", closed);
    n.show("the office's revision", assigned);

    n.say(
        "The network is back and they sync. Both peers pick the same winner by the same rule — the \
         higher generation, then (both are 2 here) the greater hash — and keep the other edit as a \
         conflict, listed with the record, until someone resolves it.",
    );
    sync(&tablet, &office, &both).await?;
    let (t, o) = (read(&tablet, "visits", "pump-4").await?, read(&office, "visits", "pump-4").await?);
    n.show("winner on the tablet", t.rev);
    n.show("winner at the office", o.rev);
    n.show("conflicts", serde_json::to_string(&o.conflicts).unwrap_or_default());
    n.check(t.rev == o.rev && t.attributes == o.attributes, "both peers read the same winner");
    n.check(conflicts(&t) == 1 && conflicts(&o) == 1, "both list the losing edit as a conflict: nothing was lost");

    n.say(
        "The dispatcher resolves it: one write, based on the winner, that carries the merged visit and \
         closes the other branch. After the next sync the conflict is gone on both peers.",
    );
    let loser = o.conflicts.clone().unwrap_or_default();
    let merged = body(json!({"site": "Pump 4", "status": "closed", "assignee": "Ann"}))?;
    let resolve =
        PutRecord { id: Some("pump-4".into()), rev: Some(o.rev), attributes: merged.clone(), resolves: loser };
    let resolved = office.put_record("visits", resolve).await?.rev;
    sync(&tablet, &office, &both).await?;
    let (t, o) = (read(&tablet, "visits", "pump-4").await?, read(&office, "visits", "pump-4").await?);
    n.show("visits/pump-4", format!("{} {}", resolved, merged.to_plain()));
    n.check(t.rev == resolved && o.rev == resolved, "both read the resolution");
    n.check(conflicts(&t) == 0 && conflicts(&o) == 0, "no conflict is left");

    n.say(
        "The stock table is `merge-fields`: edits of different fields merge by themselves. The tablet \
         counts the pumps, the office moves them to the truck, both offline.",
    );
    let base = put(&tablet, "stock", "pumps", None, json!({"count": 10, "location": "shed"})).await?;
    sync(&tablet, &office, &both).await?;
    n.show("stock/pumps before", json!({"count": 10, "location": "shed"}));
    put(&tablet, "stock", "pumps", Some(base), json!({"count": 8, "location": "shed"})).await?;
    put(&office, "stock", "pumps", Some(base), json!({"count": 10, "location": "truck"})).await?;
    sync(&tablet, &office, &both).await?;
    let (t, o) = (read(&tablet, "stock", "pumps").await?, read(&office, "stock", "pumps").await?);
    n.show("stock/pumps on both", t.attributes.to_plain());
    let expected = body(json!({"count": 8, "location": "truck"}))?;
    n.check(t.attributes == expected && o.attributes == expected, "each field took the edit made to it");
    let unsettled = t.field_conflicts.as_ref().map_or(0, Vec::len);
    n.check(unsettled == 0, "no field was edited on both sides, so none is reported as a field conflict");
    Ok(())
}
