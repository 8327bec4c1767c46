//! Python bytes literals escaped exactly as protoc escapes them (absl's `CEscape` and
//! `CHexEscape`), so that generated files match protoc's byte for byte.

/// Octal escaping, used by protoc for `_serialized_options`.
pub(crate) fn c_escape(bytes: &[u8]) -> String {
    escape(bytes, false)
}

/// Hex escaping, used by protoc for the embedded file descriptor. A hex digit right after a
/// `\xNN` escape is escaped too, as absl does.
pub(crate) fn c_hex_escape(bytes: &[u8]) -> String {
    escape(bytes, true)
}

/// A Python `str` literal (double-quoted) whose value is `text`, for any text.
pub(crate) fn python_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn escape(bytes: &[u8], hex: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    let mut last_was_hex = false;
    for &byte in bytes {
        let mut is_hex = false;
        match byte {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            _ if !(0x20..0x7f).contains(&byte) || (last_was_hex && byte.is_ascii_hexdigit()) => {
                if hex {
                    out.push_str(&format!("\\x{byte:02x}"));
                    is_hex = true;
                } else {
                    out.push_str(&format!("\\{byte:03o}"));
                }
            }
            _ => out.push(char::from(byte)),
        }
        last_was_hex = is_hex;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_absl() {
        assert_eq!(c_escape(b"8\x01"), "8\\001");
        assert_eq!(c_escape(b"\n\x13com"), "\\n\\023com");
        assert_eq!(c_hex_escape(b"\x12\x13fixtures"), "\\x12\\x13\\x66ixtures");
        assert_eq!(c_hex_escape(b"\"'\\"), "\\\"\\'\\\\");
        assert_eq!(c_hex_escape(b"\x01g"), "\\x01g");
    }

    #[test]
    fn python_strings_keep_any_text() {
        assert_eq!(python_str("plain"), "\"plain\"");
        assert_eq!(
            python_str("a \"\"\" b\\n\nc"),
            "\"a \\\"\\\"\\\" b\\\\n\\nc\""
        );
        assert_eq!(python_str("bell\u{7}"), "\"bell\\u0007\"");
    }
}
