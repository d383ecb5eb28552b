//! Text fields a person reads (names, display names): [`check`] refuses what a reader cannot see.
//!
//! Control characters and the invisible format characters below change how text reads without
//! showing: bidirectional overrides and isolates (the "Trojan Source" controls), zero-width spaces
//! and joiners, the BOM, the soft hyphen. `Admin` with a zero-width joiner looks like `Admin` in an
//! admin's list; a right-to-left override reverses what follows it. Such a field is refused.
//!
//! The OpenAPI side is one convention: a text field declares `pattern = "\\S"` (not blank) and
//! [`crate::openapi::document`] writes [`PATTERN`] in its place, so the committed spec states exactly
//! what [`check`] accepts.

/// Characters refused anywhere in a text field (besides `char::is_control`).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The characters [`check`] refuses, as a regular expression class body (ECMA-262 and Python agree).
const REFUSED: &str =
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff";

/// The JSON Schema `pattern` of a text field: one visible character at least, none refused.
pub static PATTERN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("^[^{REFUSED}]*[^\\s{REFUSED}][^{REFUSED}]*$"));

/// Why a text field was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Empty or only whitespace.
    Blank,
    /// A control character.
    Control,
    /// An invisible or text-direction character.
    Invisible,
}

impl Refused {
    /// The `detail` of the field's error.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Blank => "must not be blank",
            Self::Control => "must not contain control characters",
            Self::Invisible => "must not contain invisible or text-direction characters",
        }
    }
}

/// `Ok` when `text` has a visible character and no control or invisible one.
pub fn check(text: &str) -> Result<(), Refused> {
    if text.chars().any(char::is_control) {
        Err(Refused::Control)
    } else if text.chars().any(is_invisible) {
        Err(Refused::Invisible)
    } else if text.trim().is_empty() {
        Err(Refused::Blank)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{PATTERN, Refused, check};

    #[test]
    fn visible_text_passes_and_hidden_characters_do_not() {
        for ok in ["Alice", " Zoë ∂ 山田 ", "O'Brien-Smith", "🙂"] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check("   "), Err(Refused::Blank));
        assert_eq!(check(""), Err(Refused::Blank));
        for control in ["a\tb", "a\u{0}", "x\u{85}", "\u{1c}a"] {
            assert_eq!(check(control), Err(Refused::Control), "{control:?}");
        }
        for hidden in ["Ad\u{200D}min", "\u{202E}nimdA", "Ali\u{00AD}ce", "\u{FEFF}a", "a\u{2066}b"] {
            assert_eq!(check(hidden), Err(Refused::Invisible), "{hidden:?}");
        }
    }

    #[test]
    fn the_pattern_is_anchored_and_names_every_refused_range() {
        assert!(PATTERN.starts_with("^[^") && PATTERN.ends_with("]*$"), "{}", *PATTERN);
        for range in [r"\x00-\x1f", r"\x7f-\x9f", r"\u200b-\u200f", r"\u202a-\u202e", r"\u2066-\u2069"] {
            assert!(PATTERN.contains(range), "{range} missing from {}", *PATTERN);
        }
    }
}
