//! Text from the cloud (or from anything pretending to be it) made safe to store and print.
//!
//! Every string an ECS answer puts into an [`EcsError`](crate::EcsError) — code, message,
//! RequestId, Recommend, body excerpts — goes through [`clean_text`] (and codes through
//! [`clean_code`]) when the error is built, so the error's accessors and `Display` only ever
//! return bounded, single-line, printable text. The controller uses the same function for any
//! other cloud text it puts into a status, an event or a log line.

/// Longest message kept in an error (bytes of UTF-8, the `…` included).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Longest API error code accepted as is; longer ones are not codes.
pub const MAX_CODE_CHARS: usize = 128;
/// Longest RequestId (ECS sends a 36-character UUID).
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// Longest `Recommend` (a troubleshooting URL).
pub const MAX_RECOMMEND_BYTES: usize = 512;
/// The code that stands in for a `Code` that is not of the documented shape; the raw code is
/// then quoted (cleaned and shortened) in the message.
pub const INVALID_ERROR_CODE: &str = "InvalidErrorCode";

const ELLIPSIS: char = '…';

/// `text` as one clean line of at most `max_bytes` bytes of UTF-8:
///
/// - terminal escape sequences (`ESC [ … final`, `ESC ] … BEL/ST`, other `ESC x`) are removed;
/// - every other control character — C0 (including CR, LF, TAB), DEL, C1 — and the Unicode
///   line/paragraph separators, bidirectional overrides and the BOM become a space;
/// - runs of whitespace become one space, and the result is trimmed;
/// - a longer text is cut at a character boundary and ends with `…` (the `…` counts).
///
/// One pass over the input that stops as soon as the output is full: nothing is allocated
/// beyond `max_bytes`, whatever the input's size.
pub fn clean_text(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(max_bytes.min(text.len()).min(4096));
    let mut chars = text.chars().peekable();
    let mut pending_space = false;
    let mut truncated = false;
    while let Some(c) = chars.next() {
        let c = if c == '\u{1b}' {
            skip_escape(&mut chars);
            // An escape sequence separates what is on either side of it like a space would.
            ' '
        } else if is_unsafe(c) {
            ' '
        } else {
            c
        };
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = c.len_utf8() + usize::from(pending_space);
        if out.len() + needed > max_bytes {
            truncated = true;
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    if !truncated {
        return out;
    }
    // Make room for the ellipsis at a character boundary.
    while !out.is_empty() && out.len() + ELLIPSIS.len_utf8() > max_bytes {
        out.pop();
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if out.len() + ELLIPSIS.len_utf8() <= max_bytes {
        out.push(ELLIPSIS);
    }
    out
}

/// Whether `code` has the documented shape of an API error code: 1 to 128 characters of
/// `[A-Za-z0-9._-]`.
pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An API error code as it may be stored: `Ok(code)` when it has the documented shape (surrounding
/// whitespace ignored), otherwise `Err(excerpt)` with a clean excerpt of the raw code (at most
/// 64 bytes) for a message; the caller then uses [`INVALID_ERROR_CODE`] as the code.
pub fn clean_code(code: &str) -> Result<String, String> {
    let trimmed = code.trim();
    if is_valid_code(trimmed) {
        Ok(trimmed.to_owned())
    } else {
        Err(clean_text(code, 64))
    }
}

/// Control characters and invisible characters that can forge or reorder a printed line.
fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{2028}' | '\u{2029}'          // line / paragraph separator
            | '\u{200e}' | '\u{200f}'        // LRM, RLM
            | '\u{202a}'..='\u{202e}'        // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}'        // bidi isolates
            | '\u{feff}'                     // BOM / zero-width no-break space
        )
}

/// Consumes the rest of an escape sequence whose `ESC` was just read (ECMA-48: CSI, OSC and
/// friends, or a two-character escape). Bounded by the input; never more than one sequence.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
                if !('\u{20}'..='\u{3f}').contains(&c) {
                    // Not a well-formed CSI: stop here (the character is dropped with it).
                    break;
                }
            }
        }
        Some(']' | 'P' | '^' | '_' | 'X') => {
            chars.next();
            // A string terminated by BEL or ST (`ESC \`).
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    if chars.peek() == Some(&'\\') {
                        chars.next();
                    }
                    break;
                }
            }
        }
        Some(c) if ('\u{20}'..='\u{7e}').contains(c) => {
            chars.next();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_clean(s: &str) {
        assert!(
            !s.chars().any(|c| is_unsafe(c) || c == '\u{1b}'),
            "unsafe character left in {s:?}"
        );
        assert!(!s.contains("  "), "double space in {s:?}");
        assert_eq!(s, s.trim(), "untrimmed {s:?}");
    }

    #[test]
    fn control_characters_and_line_breaks_become_spaces() {
        let cases = [
            ("a\r\nb", "a b"),
            ("a\nINFO forged log line", "a INFO forged log line"),
            ("del\u{7f}here", "del here"),
            ("c1\u{85}\u{9b}x", "c1 x"),
            ("tab\tand\u{0}nul", "tab and nul"),
            ("  lead and trail \n", "lead and trail"),
            ("sep\u{2028}ara\u{2029}tor", "sep ara tor"),
            ("bidi\u{202e}txt\u{2066}", "bidi txt"),
            ("\u{feff}bom", "bom"),
            ("ünïcödé 中文 ok", "ünïcödé 中文 ok"),
            ("", ""),
        ];
        for (raw, clean) in cases {
            let out = clean_text(raw, MAX_MESSAGE_BYTES);
            assert_eq!(out, clean, "{raw:?}");
            assert_clean(&out);
        }
    }

    #[test]
    fn terminal_escapes_are_removed() {
        let cases = [
            ("\u{1b}[31mred\u{1b}[0m text", "red text"),
            ("a\u{1b}[1;2;3Hb", "a b"),
            ("title\u{1b}]0;pwned\u{7}after", "title after"),
            ("osc\u{1b}]8;;http://x\u{1b}\\link", "osc link"),
            ("two\u{1b}cchar", "two char"),
            ("dangling\u{1b}", "dangling"),
            ("bad csi\u{1b}[12\nrest", "bad csi rest"),
        ];
        for (raw, clean) in cases {
            let out = clean_text(raw, MAX_MESSAGE_BYTES);
            assert_eq!(out, clean, "{raw:?}");
            assert_clean(&out);
        }
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_with_an_ellipsis() {
        let mib = "x".repeat(1 << 20);
        let out = clean_text(&mib, MAX_MESSAGE_BYTES);
        assert_eq!(out.len(), MAX_MESSAGE_BYTES);
        assert!(out.ends_with('…'));

        // Multi-byte characters: never split, never over the limit.
        for n in [1, 2, 3, 4, 5, 10, 1023, 1024, 1025] {
            let wide = "é中😀".repeat(1000);
            let out = clean_text(&wide, n);
            assert!(out.len() <= n, "{n}: {} bytes", out.len());
            if n >= 4 {
                assert!(out.ends_with('…'), "{n}: {out}");
            }
        }
        // Exactly at the limit: kept whole.
        assert_eq!(clean_text("abcd", 4), "abcd");
        assert_eq!(clean_text("abcde", 4), "a…");
        // Whitespace before the cut is not kept before the ellipsis.
        assert_eq!(clean_text("ab       cdefgh", 6), "ab…");
        assert_eq!(clean_text("abc", 0), "");
    }

    #[test]
    fn a_megabyte_of_controls_stays_bounded() {
        let nasty = "\u{1b}[31m\r\n\u{7f}".repeat(200_000) + "end";
        assert_eq!(clean_text(&nasty, MAX_MESSAGE_BYTES), "end");
        let mixed = "a\u{7f}".repeat(1 << 19);
        let out = clean_text(&mixed, MAX_MESSAGE_BYTES);
        assert!(out.len() <= MAX_MESSAGE_BYTES);
        assert!(out.starts_with("a a a"));
        assert_clean(&out);
    }

    #[test]
    fn codes_of_the_documented_shape_are_kept() {
        for code in [
            "InvalidInstanceId.NotFound",
            "Throttling.User",
            "Some_Code-2",
            "  IncorrectInstanceStatus  ",
        ] {
            assert_eq!(clean_code(code), Ok(code.trim().to_owned()));
        }
        let long = "A".repeat(MAX_CODE_CHARS);
        assert_eq!(clean_code(&long), Ok(long.clone()));
        for bad in [
            "",
            "   ",
            "Invalid Code",
            "a/b",
            "Código",
            "Code\u{1b}[31m",
            "Code\nINFO forged",
            "<script>",
        ] {
            let excerpt = clean_code(bad).expect_err(bad);
            assert!(excerpt.len() <= 64);
            assert_clean(&excerpt);
        }
        let too_long = "A".repeat(MAX_CODE_CHARS + 1);
        assert!(clean_code(&too_long).unwrap_err().len() <= 64);
        assert_eq!(clean_code("a/b c").unwrap_err(), "a/b c");
    }
}
