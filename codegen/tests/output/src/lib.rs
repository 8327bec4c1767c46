//! The generator's Rust snapshots for the fixture protos, compiled: keyword names, nested
//! types, maps, oneofs, well-known types and all four RPC shapes must produce valid Rust.
#![allow(missing_docs, unreachable_pub, clippy::all)]

include!("../../snapshots/rust/mod.rs");

#[cfg(test)]
mod tests {
    use super::fixtures;

    #[test]
    fn keyword_names_are_usable() {
        let keywords = fixtures::keywords::v1::Keywords {
            r#type: "t".into(),
            r#match: "m".into(),
            self_: "s".into(),
            ..Default::default()
        };
        assert_eq!(keywords.r#type, "t");
        let _ = fixtures::keywords::v1::Type { r#in: "x".into() };
    }

    #[test]
    fn round_trips_a_kitchen() {
        use prost::Message;
        let kitchen = fixtures::kitchen::v1::Kitchen {
            id: "k".into(),
            labels: [("a".to_owned(), "b".to_owned())].into(),
            payload: Some(fixtures::kitchen::v1::kitchen::Payload::Text("t".into())),
            ..Default::default()
        };
        let back =
            fixtures::kitchen::v1::Kitchen::decode(kitchen.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, kitchen);
    }
}
