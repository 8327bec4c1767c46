//! The `mlbridge.v1` API generated at build time by `build.rs`, for crates that prefer
//! generating over depending on the checked-in `mlbridge-proto` crate.

/// Messages, `ml_bridge_client`, `ml_bridge_server` and the other services of
/// `proto/ml_bridge.proto`.
#[allow(missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("mlbridge.v1");
}

/// The generated module exactly as written to `OUT_DIR`, for comparison in tests.
pub const GENERATED_SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/mlbridge.v1.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn out_dir_output_equals_the_checked_in_generated_crate() {
        let checked_in = include_str!("../../../generated/rust/src/mlbridge.v1.rs");
        assert!(
            super::GENERATED_SOURCE == checked_in,
            "build.rs output differs from generated/rust/src/mlbridge.v1.rs; \
             run `cargo xtask codegen` if the generator changed"
        );
    }

    #[test]
    fn generated_types_are_usable() {
        let request = super::v1::PingRequest {
            message: "hi".to_owned(),
        };
        let bytes = prost::Message::encode_to_vec(&request);
        let back: super::v1::PingRequest = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, request);
    }
}
