//! Percent-encoding as the signatures need it (RFC 3986) and strict decoding of
//! `application/x-www-form-urlencoded` text (query strings and form bodies).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is escaped, with
/// uppercase hex; a space becomes `%20`, never `+`.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// One `name=value` pair that could not be decoded; carries the raw name for the error message.
#[derive(Debug, PartialEq, Eq)]
pub struct MalformedPair(pub String);

/// Decodes `a=1&b=%20x&c` into pairs, in order. `+` means a space (form encoding); a pair
/// without `=` has an empty value; empty segments are skipped.
///
/// Hand-written because the usual decoders silently pass malformed escapes and invalid UTF-8
/// through, while the gateway must refuse them with an error naming the parameter.
pub fn decode_pairs(text: &str) -> Result<Vec<(String, String)>, MalformedPair> {
    text.split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            let bad = || MalformedPair(name.to_owned());
            Ok((
                decode_component(name).ok_or_else(bad)?,
                decode_component(value).ok_or_else(bad)?,
            ))
        })
        .collect()
}

fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/e+f=g"), "a%20b%2Ac~d%2Fe%2Bf%3Dg");
        assert_eq!(
            percent_encode("2016-02-23T12:46:24Z"),
            "2016-02-23T12%3A46%3A24Z"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn decodes_pairs_keeping_empty_values() {
        let pairs = decode_pairs("A=1&SignatureType=&B&C=a+b%2Bc&&").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("SignatureType".into(), "".into()),
                ("B".into(), "".into()),
                ("C".into(), "a b+c".into()),
            ]
        );
    }

    #[test]
    fn rejects_malformed_escapes() {
        assert_eq!(decode_pairs("A=%zz"), Err(MalformedPair("A".into())));
        assert_eq!(decode_pairs("A=%4"), Err(MalformedPair("A".into())));
        assert_eq!(decode_pairs("A=%FF"), Err(MalformedPair("A".into())));
    }
}
