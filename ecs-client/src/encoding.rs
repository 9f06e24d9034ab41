//! RFC 3986 percent-encoding, the one encoding of the RPC protocol: [`percent_encode`] builds
//! the canonical query both signature versions sign (in `signing`), and the forms of a security
//! token the credentials scrub from server text (in `credentials`). Depends on no other module.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 3986 unreserved characters stay literal; everything else (UTF-8 bytes) becomes `%XY`
/// with uppercase hex. Space is `%20`, `*` is `%2A`, `~` stays: what both signature versions
/// require, and unlike `application/x-www-form-urlencoded` (which `url`/`reqwest` produce).
const RFC3986_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986_RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_rfc3986() {
        let cases = [
            ("abcXYZ019-_.~", "abcXYZ019-_.~"),
            ("a b", "a%20b"),
            ("a+b", "a%2Bb"),
            ("*", "%2A"),
            ("/", "%2F"),
            ("=&", "%3D%26"),
            (":", "%3A"),
            ("%", "%25"),
            ("[\"i-1\"]", "%5B%22i-1%22%5D"),
            ("é", "%C3%A9"),
            ("中文", "%E4%B8%AD%E6%96%87"),
            ("😀", "%F0%9F%98%80"),
            ("", ""),
        ];
        for (raw, encoded) in cases {
            assert_eq!(percent_encode(raw), encoded, "{raw:?}");
        }
    }
}
