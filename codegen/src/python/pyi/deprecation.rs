//! Which stub declarations carry `@deprecated(...)`, and the message they give: the same as
//! mypy-protobuf's, so a type checker says the same thing about the same code.
//!
//! An element is deprecated by its own `deprecated` option, whose comment (if any) is the
//! message, or by its file's, with a fixed message naming the file option. A deprecated
//! message, enum or service does not deprecate its members: each says so itself.

use prost_reflect::{EnumDescriptor, FileDescriptor, MessageDescriptor};
use prost_types::{EnumOptions, FileOptions, MessageOptions};

use crate::comments::Comments;
use crate::python::escape::python_str;

/// Whether `options` (of any kind of element) say `deprecated = true`.
pub(super) fn is_deprecated<O>(options: &Option<O>, deprecated: fn(&O) -> bool) -> bool {
    options.as_ref().is_some_and(deprecated)
}

/// Whether `file` says `option deprecated = true`.
pub(super) fn file_deprecated(file: &FileDescriptor) -> bool {
    is_deprecated(
        &file.file_descriptor_proto().options,
        FileOptions::deprecated,
    )
}

/// Whether the class of `message` is deprecated, by its own option or its file's.
pub(super) fn message_deprecated(message: &MessageDescriptor) -> bool {
    is_deprecated(
        &message.descriptor_proto().options,
        MessageOptions::deprecated,
    ) || file_deprecated(&message.parent_file())
}

/// Whether the class of `enumeration` is deprecated, by its own option or its file's.
pub(super) fn enum_deprecated(enumeration: &EnumDescriptor) -> bool {
    is_deprecated(
        &enumeration.enum_descriptor_proto().options,
        EnumOptions::deprecated,
    ) || file_deprecated(&enumeration.parent_file())
}

/// What kind of declaration is deprecated, which picks the fallback message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Message,
    Enum,
    EnumValue,
    Field,
    Method,
    Stub,
    Servicer,
}

impl Kind {
    /// The element's noun and the options message that marks it.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Message => ("message", "message"),
            Kind::Enum => ("enum", "enum"),
            Kind::EnumValue => ("enum value", "enum value"),
            Kind::Field => ("field", "field"),
            Kind::Method => ("method", "method"),
            Kind::Stub => ("stub", "service"),
            Kind::Servicer => ("servicer", "service"),
        }
    }

    /// The source-info path, under the element's own path, of its `deprecated` option:
    /// the element's `options` field, then the option's field in that options message.
    fn option_path(self) -> [i32; 2] {
        match self {
            Kind::Message => [7, 3],
            Kind::Enum => [3, 3],
            Kind::EnumValue => [3, 1],
            Kind::Field => [8, 3],
            Kind::Method => [4, 33],
            Kind::Stub | Kind::Servicer => [3, 33],
        }
    }
}

/// The `@deprecated` argument (a Python string literal) for the element of `kind` at
/// `path`, deprecated by its own option (`own`) or its file's; `None` if neither.
pub(super) fn deprecation(
    comments: &Comments,
    kind: Kind,
    path: &[i32],
    own: bool,
    file: bool,
) -> Option<String> {
    let (noun, options) = kind.words();
    let message = if own {
        let mut option = path.to_vec();
        option.extend(kind.option_path());
        comments.mypy_protobuf_text(&option).unwrap_or_else(|| {
            format!("This {noun} has been marked as deprecated using proto {options} options.")
        })
    } else if file {
        format!(
            "This {noun} is within a file that has been marked as deprecated using proto file options."
        )
    } else {
        return None;
    };
    Some(python_str(&message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_options_win_over_the_file_and_fall_back_to_a_fixed_message() {
        let comments = Comments::default();
        assert_eq!(
            deprecation(&comments, Kind::Stub, &[6, 0], true, true).as_deref(),
            Some("\"This stub has been marked as deprecated using proto service options.\"")
        );
        assert_eq!(
            deprecation(&comments, Kind::EnumValue, &[5, 0, 2, 1], false, true).as_deref(),
            Some(
                "\"This enum value is within a file that has been marked as deprecated using proto file options.\""
            )
        );
        assert_eq!(
            deprecation(&comments, Kind::Field, &[4, 0, 2, 0], false, false),
            None
        );
    }
}
