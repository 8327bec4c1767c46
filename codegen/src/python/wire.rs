//! Just enough of the protobuf wire format to reproduce the descriptor bytes that protoc
//! embeds in `_pb2.py`: walk encoded descriptors, drop fields protoc leaves out, and find
//! each element's bytes and options without re-encoding (which could reorder options).

/// One field of an encoded message: its number and the bytes of its value (for
/// length-delimited fields, the payload without the length prefix).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireField<'a> {
    pub number: u32,
    pub wire_type: u8,
    /// The whole field, tag included, as it stands in the message.
    pub raw: &'a [u8],
    /// The payload of a length-delimited field; empty for other wire types.
    pub payload: &'a [u8],
}

/// Splits an encoded message into its fields, in encoded order.
///
/// The input comes from our own encoder, so malformed bytes are a bug, not user error.
pub(crate) fn fields(mut bytes: &[u8]) -> Vec<WireField<'_>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let tag = read_varint(&mut bytes);
        let number = u32::try_from(tag >> 3).expect("field number fits in u32");
        let wire_type = (tag & 7) as u8;
        let payload: &[u8] = match wire_type {
            0 => {
                read_varint(&mut bytes);
                &[]
            }
            1 => {
                bytes = &bytes[8..];
                &[]
            }
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)).expect("length fits in usize");
                let (payload, rest) = bytes.split_at(len);
                bytes = rest;
                payload
            }
            5 => {
                bytes = &bytes[4..];
                &[]
            }
            other => panic!("unsupported wire type {other} in an encoded descriptor"),
        };
        let raw = &start[..start.len() - bytes.len()];
        out.push(WireField {
            number,
            wire_type,
            raw,
            payload,
        });
    }
    out
}

/// The payloads of every occurrence of length-delimited field `number`.
pub(crate) fn repeated(bytes: &[u8], number: u32) -> Vec<&[u8]> {
    fields(bytes)
        .into_iter()
        .filter(|f| f.number == number && f.wire_type == 2)
        .map(|f| f.payload)
        .collect()
}

/// The payload of the last occurrence of length-delimited field `number`, if present.
pub(crate) fn single(bytes: &[u8], number: u32) -> Option<&[u8]> {
    repeated(bytes, number).pop()
}

fn read_varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().expect("truncated varint");
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes")
}

/// Appends a varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field.
pub(crate) fn write_len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    write_varint(out, (u64::from(number) << 3) | 2);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_fields() {
        let mut msg = Vec::new();
        write_len_field(&mut msg, 1, b"abc");
        msg.extend_from_slice(&[0x10, 0x96, 0x01]); // field 2, varint 150
        write_len_field(&mut msg, 1, b"de");
        let f = fields(&msg);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].payload, b"abc");
        assert_eq!(f[1].number, 2);
        assert_eq!(f[1].raw, &[0x10, 0x96, 0x01]);
        assert_eq!(repeated(&msg, 1), vec![&b"abc"[..], &b"de"[..]]);
        assert_eq!(single(&msg, 1), Some(&b"de"[..]));
    }
}
