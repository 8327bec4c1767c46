//! Files written in an edition (`edition = "2023";`, `"2024"`): how they enter the
//! descriptor pool, and the one feature the generated stubs depend on, field presence.
//!
//! The parser (protox-parse, patched: `third_party/protox-parse/PATCHED.md`) reads them
//! with protoc's rules. prost-reflect 0.16 knows no editions, so the parser gives them as
//! their proto2 twin, marked `syntax = "proto2"` (which a proto2 file leaves unset): every
//! option, `features` included, is resolved and kept as written, and the file keeps its
//! path and source (for error positions and protox's shadowing check). What proto2 does
//! not say is recovered here: the edition (from the source, for the embedded descriptor)
//! and each field's presence (from the features, for the stubs).

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, ReflectMessage, Value};
use protox::file::File;

/// `google.protobuf.Edition` numbers.
const EDITION_2023: i32 = 1000;
const EDITION_2024: i32 = 1001;

/// `FeatureSet.field_presence` values.
const EXPLICIT: i32 = 1;
const IMPLICIT: i32 = 2;

/// The `google.protobuf.Edition` number of `file` if it is written in an edition.
pub(crate) fn edition(file: &File) -> Result<Option<i32>, protox::Error> {
    // Files given as descriptors (protox's well-known types) may say "proto2" themselves;
    // only the parser's files, which have a source, carry the marker.
    let Some(source) = file.source() else {
        return Ok(None);
    };
    if file.file_descriptor_proto().syntax.as_deref() != Some("proto2") {
        return Ok(None);
    }
    match edition_of(source) {
        Some(edition) => Ok(Some(edition)),
        None => Err(protox::Error::new(std::io::Error::other(format!(
            "{}: cannot read the edition of this file (write it as `edition = \"2023\";`)",
            file.name()
        )))),
    }
}

/// The edition a source file declares in its first statement (`edition = "2024";`, the
/// string possibly in adjacent pieces), as a `google.protobuf.Edition` number.
fn edition_of(source: &str) -> Option<i32> {
    let rest = skip_blank(source).strip_prefix("edition")?;
    let mut rest = skip_blank(skip_blank(rest).strip_prefix('=')?);
    let mut value = String::new();
    while let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let (piece, after) = rest[1..].split_once(quote)?;
        value.push_str(piece);
        rest = skip_blank(after);
    }
    match value.as_str() {
        "2023" => Some(EDITION_2023),
        "2024" => Some(EDITION_2024),
        _ => None,
    }
}

/// `text` after any whitespace and comments.
fn skip_blank(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("//") {
            text = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return text;
        }
    }
}

/// Whether `field` of a file written in an edition tracks presence (`HasField`, `None`
/// accepted by `__init__`): repeated fields never, message fields and oneof members
/// always, other fields as their `field_presence` feature says, set on the field or else
/// on the file (the only places protoc allows it; editions 2023 and 2024 default to
/// explicit).
pub(crate) fn has_presence(field: &FieldDescriptor) -> bool {
    if field.is_list() || field.is_map() {
        return false;
    }
    if matches!(field.kind(), Kind::Message(_)) || field.containing_oneof().is_some() {
        return true;
    }
    let presence = field_presence(&field.options())
        .or_else(|| field_presence(&field.parent_file().options()))
        .unwrap_or(EXPLICIT);
    presence != IMPLICIT
}

/// The `features.field_presence` these options set, if they set it.
fn field_presence(options: &DynamicMessage) -> Option<i32> {
    let features = options.get_field_by_name("features")?;
    let Value::Message(features) = features.as_ref() else {
        return None;
    };
    let presence = features.descriptor().get_field_by_name("field_presence")?;
    if !features.has_field(&presence) {
        return None;
    }
    features.get_field(&presence).as_enum_number()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edition_is_the_first_statement_after_comments() {
        assert_eq!(edition_of("edition = \"2023\";"), Some(EDITION_2023));
        assert_eq!(
            edition_of("// header\n/* block */\n  edition='2024' ;\npackage p;"),
            Some(EDITION_2024)
        );
        assert_eq!(edition_of("syntax = \"proto3\";"), None);
        assert_eq!(edition_of("edition = \"2025\";"), None);
        assert_eq!(edition_of("edition = \"20\" '23';"), Some(EDITION_2023));
    }
}
