//! JSON schemas (utoipa) of the types whose serde form is written by hand: values in their typed wire
//! form, attributes, revision ids, chain hashes, timestamps and decimals (PROTOCOL.md §1). Only with
//! the `openapi` feature; the derived schemas of the other wire types refer to these by name.

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::{Attributes, ChainHash, Decimal, RevId, Timestamp, Value};

fn text(description: &str, pattern: Option<&str>, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .examples([serde_json::Value::String(example.to_owned())])
}

fn value_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("Value"))
}

/// `{"<type>": <content>}`: the one-key object of a typed value.
fn typed(key: &str, content: impl Into<RefOr<Schema>>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(key, content)
        .required(key)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

impl PartialSchema for RevId {
    fn schema() -> RefOr<Schema> {
        text(
            "A revision id: the generation, '-', and 32 lowercase hex characters of the revision hash.",
            Some("^[1-9][0-9]*-[0-9a-f]{32}$"),
            "2-9f86d081884c7d659a2feaa0c55ad015",
        )
        .into()
    }
}

impl ToSchema for RevId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RevId")
    }
}

impl PartialSchema for ChainHash {
    fn schema() -> RefOr<Schema> {
        text(
            "A chain hash: 64 lowercase hex characters.",
            Some("^[0-9a-f]{64}$"),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        )
        .into()
    }
}

impl ToSchema for ChainHash {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ChainHash")
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        text(
            "A UTC instant in RFC 3339, written with 'Z' and no trailing fractional zeros (years 0000-9999).",
            None,
            "2026-01-01T00:00:00.5Z",
        )
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl PartialSchema for Decimal {
    fn schema() -> RefOr<Schema> {
        text(
            "An exact decimal in canonical text: no exponent, no leading or trailing fractional zeros.",
            Some("^-?(0|[1-9][0-9]*)(\\.[0-9]*[1-9])?$"),
            "12.5",
        )
        .into()
    }
}

impl ToSchema for Decimal {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Decimal")
    }
}

impl PartialSchema for Value {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
        OneOfBuilder::new()
            .description(Some(
                "A typed value: an object with exactly one key naming its type (PROTOCOL.md §1). Numbers travel \
                 as strings so that no float approximation can change a hash.",
            ))
            .item(typed("null", ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([true]))))
            .item(typed("bool", ObjectBuilder::new().schema_type(Type::Boolean)))
            .item(typed("int", string("A 64-bit signed integer in decimal.").pattern(Some("^[-+]?[0-9]+$"))))
            .item(typed("float", string("A finite 64-bit float, shortest round-trip digits.")))
            .item(typed("decimal", Decimal::schema()))
            .item(typed("string", string("UTF-8 text, kept exactly as given.")))
            .item(typed(
                "bytes",
                string("Standard base64 with padding.").format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte))),
            ))
            .item(typed("timestamp", Timestamp::schema()))
            .item(typed("list", ArrayBuilder::new().items(value_ref())))
            .item(typed("map", ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(value_ref()))))
            .examples([serde_json::json!({"int": "-1234"})])
            .into()
    }
}

impl ToSchema for Value {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Value")
    }
}

impl PartialSchema for Attributes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Attribute name (1-256 bytes, not starting with '_') to typed value. With plain JSON \
                 (`?format=plain`) the values are plain JSON instead.",
            ))
            .additional_properties(Some(value_ref()))
            .examples([serde_json::json!({"qty": {"int": "4"}, "note": {"string": "fragile"}})])
            .into()
    }
}

impl ToSchema for Attributes {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Attributes")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Value::name().into_owned(), Value::schema()));
        schemas.push((Timestamp::name().into_owned(), Timestamp::schema()));
        schemas.push((Decimal::name().into_owned(), Decimal::schema()));
    }
}
