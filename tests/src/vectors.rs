//! Hash test vectors (SPEC §3, §5): fixed inputs and the outputs every implementation must produce.
//! The revision and chain vectors are the ones docs/PROTOCOL.md prints; the conformance suite checks
//! that a database stores exactly these revision ids, and `tests/wire.rs` re-derives every output
//! from the spec's byte layout with blake3 directly, without the engine's code.

/// One revision: its inputs, the canonical bytes of its attributes, and its id.
#[derive(Clone, Copy, Debug)]
pub struct RevVector {
    /// The table.
    pub table: &'static str,
    /// The record id.
    pub id: &'static str,
    /// The parent revision (an earlier vector's `rev`), `None` for a first revision.
    pub parent: Option<&'static str>,
    /// Whether the revision is a tombstone.
    pub deleted: bool,
    /// The attributes in wire JSON (not necessarily in key order).
    pub attributes: &'static str,
    /// `map(attributes)` in lowercase hex.
    pub canonical: &'static str,
    /// The revision id.
    pub rev: &'static str,
}

/// Revision vectors, in an order a database can replay them (each parent comes first).
pub const REV_VECTORS: [RevVector; 4] = [
    RevVector {
        table: "orders",
        id: "o-1",
        parent: None,
        deleted: false,
        attributes: r#"{"qty":{"int":"2"},"item":{"string":"tea"}}"#,
        canonical: "0900000002000000046974656d050000000374656100000003717479020000000000000002",
        rev: "1-4690806158ee43d2832b717bd490ffc6",
    },
    RevVector {
        table: "orders",
        id: "o-1",
        parent: Some("1-4690806158ee43d2832b717bd490ffc6"),
        deleted: false,
        attributes: r#"{"qty":{"int":"3"},"item":{"string":"tea"}}"#,
        canonical: "0900000002000000046974656d050000000374656100000003717479020000000000000003",
        rev: "2-007f232842eca340e8c7ba6b05196977",
    },
    RevVector {
        table: "orders",
        id: "o-1",
        parent: Some("2-007f232842eca340e8c7ba6b05196977"),
        deleted: true,
        attributes: "{}",
        canonical: "0900000000",
        rev: "3-57de920541c650a6f4a8d712959bad18",
    },
    RevVector {
        table: "things",
        id: "every-type",
        parent: None,
        deleted: false,
        attributes: r#"{"at":{"timestamp":"2026-01-01T00:00:00.5Z"},"dims":{"map":{"h":{"bytes":"AAE="},"w":{"float":"1.5"}}},"item":{"string":"tea"},"paid":{"bool":true},"price":{"decimal":"12.5"},"qty":{"int":"3"},"tags":{"list":[{"string":"hot"},{"null":true}]}}"#,
        canonical: concat!(
            "0900000007",
            "000000026174",
            "07000000006955b9001dcd6500",
            "0000000464696d73",
            "0900000002",
            "0000000168",
            "06000000020001",
            "0000000177",
            "033ff8000000000000",
            "000000046974656d",
            "0500000003746561",
            "0000000470616964",
            "0101",
            "000000057072696365",
            "040000000431322e35",
            "00000003717479",
            "020000000000000003",
            "0000000474616773",
            "0800000002",
            "0500000003686f74",
            "00",
        ),
        rev: "1-d4c15d3d4f7a4e65b1f46a3f689a06cc",
    },
];

/// `chain(0)` of a database whose first epoch has this uuid.
#[derive(Clone, Copy, Debug)]
pub struct GenesisVector {
    /// The first epoch's uuid.
    pub first_epoch: &'static str,
    /// `blake3("outpost/genesis/v1" || uuid bytes)` in hex.
    pub chain: &'static str,
}

/// The genesis vector.
pub const GENESIS_VECTOR: GenesisVector = GenesisVector {
    first_epoch: "00000000-0000-0000-0000-000000000000",
    chain: "893cc7c14f41d297134950dcad1c431a5ae437ab4bb5348c68e468fcf5bf070c",
};

/// One step of the chain hash: the event at `seq` folded onto `prev`.
#[derive(Clone, Copy, Debug)]
pub struct ChainVector {
    /// The chain hash before the event.
    pub prev: &'static str,
    /// The event's seq.
    pub seq: u64,
    /// The event's table.
    pub table: &'static str,
    /// The event's record id.
    pub id: &'static str,
    /// The event's revision.
    pub rev: &'static str,
    /// Whether the revision is a tombstone.
    pub deleted: bool,
    /// The chain hash after the event.
    pub chain: &'static str,
}

/// The chain of the first two revision vectors stored in a database whose genesis is [`GENESIS_VECTOR`].
pub const CHAIN_VECTORS: [ChainVector; 2] = [
    ChainVector {
        prev: GENESIS_VECTOR.chain,
        seq: 1,
        table: "orders",
        id: "o-1",
        rev: REV_VECTORS[0].rev,
        deleted: false,
        chain: "8dd15a4f0c28c3c0b6e17ae3525c13df4d44743633e932c1ebea325e9f6cffae",
    },
    ChainVector {
        prev: "8dd15a4f0c28c3c0b6e17ae3525c13df4d44743633e932c1ebea325e9f6cffae",
        seq: 2,
        table: "orders",
        id: "o-1",
        rev: REV_VECTORS[1].rev,
        deleted: false,
        chain: "40eee8dd013145db23fcc0a2e8136312cf593ea903a89b888e4799d430381cb4",
    },
];
