//! Listing keys as S3 does: prefix, delimiter roll-up into common prefixes, a start-after
//! marker, a page size, truncation with the marker to resume from. Also the percent-encoding of
//! `encoding-type=url` and opaque continuation tokens. Pure functions over a sorted map.

use std::collections::BTreeMap;
use std::ops::Bound;

/// What to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    /// Keys with this after the prefix roll up into one common prefix; empty means none.
    pub delimiter: Option<&'a str>,
    /// List only what sorts after this key (`start-after`, `marker`, a continuation token).
    pub after: Option<&'a str>,
    /// Most keys and common prefixes together.
    pub max: usize,
}

/// One page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage<V> {
    pub objects: Vec<V>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// When truncated: the last key or common prefix returned, to resume after.
    pub next_marker: Option<String>,
}

/// One page of `map`'s keys as `query` asks.
pub fn list<V: Clone>(map: &BTreeMap<String, V>, query: &ListQuery<'_>) -> ListPage<V> {
    let mut page = ListPage {
        objects: Vec::new(),
        common_prefixes: Vec::new(),
        truncated: false,
        next_marker: None,
    };
    if query.max == 0 {
        return page;
    }
    let prefix = query.prefix;
    let delimiter = query.delimiter.filter(|d| !d.is_empty());
    let mut cursor = match query.after {
        Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
        _ => Bound::Included(prefix.to_owned()),
    };
    let mut count = 0;
    let mut last: Option<String> = None;
    while let Some((key, value)) = map
        .range::<String, _>((cursor.clone(), Bound::Unbounded))
        .next()
    {
        // The keys with the prefix are contiguous and the cursor starts within or after them.
        if !key.starts_with(prefix) {
            break;
        }
        let rolled = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_owned())
        });
        let Some(common) = rolled else {
            if count == query.max {
                page.truncated = true;
                break;
            }
            count += 1;
            last = Some(key.clone());
            page.objects.push(value.clone());
            cursor = Bound::Excluded(key.clone());
            continue;
        };
        // Skip every key under this common prefix in one step (keys sorting after the jump but
        // still under it are caught by the checks below).
        let jump = format!("{common}{}", char::MAX);
        cursor = Bound::Excluded(if *key > jump { key.clone() } else { jump });
        let returned_before = query.after.is_some_and(|after| common.as_str() <= after)
            || page.common_prefixes.last() == Some(&common);
        if returned_before {
            continue;
        }
        if count == query.max {
            page.truncated = true;
            break;
        }
        count += 1;
        last = Some(common.clone());
        page.common_prefixes.push(common);
    }
    if page.truncated {
        page.next_marker = last;
    }
    page
}

/// Percent-encodes all but unreserved characters and `/` (`encoding-type=url`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a query-string value); `None` if the result is not UTF-8 or an
/// escape is malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The continuation token that resumes after `marker` (opaque to clients).
pub fn continuation_token(marker: &str) -> String {
    hex::encode(marker.as_bytes())
}

/// The marker a continuation token stands for.
pub fn marker_of_token(token: &str) -> Option<String> {
    String::from_utf8(hex::decode(token).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| (k.to_string(), k.to_string()))
            .collect()
    }

    fn query<'a>(
        prefix: &'a str,
        delimiter: Option<&'a str>,
        after: Option<&'a str>,
        max: usize,
    ) -> ListQuery<'a> {
        ListQuery {
            prefix,
            delimiter,
            after,
            max,
        }
    }

    const KEYS: &[&str] = &[
        "a",
        "dir/",
        "dir/x",
        "dir/sub/",
        "dir/sub/y",
        "dir/z",
        "dir2/w",
        "e/f/g",
        "z",
    ];

    #[test]
    fn delimiter_rolls_up_and_markers_show() {
        let keys = map(KEYS);
        let page = list(&keys, &query("", Some("/"), None, 1000));
        assert_eq!(page.objects, ["a", "z"]);
        assert_eq!(page.common_prefixes, ["dir/", "dir2/", "e/"]);
        assert!(!page.truncated);

        // Inside a "directory": its marker object `dir/` is listed, subdirectories roll up.
        let page = list(&keys, &query("dir/", Some("/"), None, 1000));
        assert_eq!(page.objects, ["dir/", "dir/x", "dir/z"]);
        assert_eq!(page.common_prefixes, ["dir/sub/"]);

        let page = list(&keys, &query("dir", None, None, 1000));
        assert_eq!(
            page.objects,
            ["dir/", "dir/sub/", "dir/sub/y", "dir/x", "dir/z", "dir2/w"]
        );
        let page = list(&keys, &query("nothing/", Some("/"), None, 1000));
        assert!(page.objects.is_empty() && page.common_prefixes.is_empty());
    }

    #[test]
    fn pages_resume_where_they_stopped() {
        let keys = map(KEYS);
        for delimiter in [None, Some("/")] {
            for max in 1..=4 {
                let whole = list(&keys, &query("", delimiter, None, 1000));
                let mut objects = Vec::new();
                let mut prefixes = Vec::new();
                let mut marker: Option<String> = None;
                loop {
                    let page = list(&keys, &query("", delimiter, marker.as_deref(), max));
                    assert!(page.objects.len() + page.common_prefixes.len() <= max);
                    objects.extend(page.objects);
                    prefixes.extend(page.common_prefixes);
                    if !page.truncated {
                        break;
                    }
                    marker = page.next_marker;
                    assert!(marker.is_some());
                }
                assert_eq!(objects, whole.objects, "{delimiter:?} {max}");
                assert_eq!(prefixes, whole.common_prefixes, "{delimiter:?} {max}");
            }
        }
        // Exactly full: not truncated.
        let page = list(&keys, &query("dir/sub/", None, None, 2));
        assert_eq!(page.objects.len(), 2);
        assert!(!page.truncated);
        assert_eq!(page.next_marker, None);
    }

    #[test]
    fn start_after_and_edge_cases() {
        let keys = map(KEYS);
        let page = list(&keys, &query("", None, Some("dir/x"), 1000));
        assert_eq!(page.objects, ["dir/z", "dir2/w", "e/f/g", "z"]);
        // A marker inside a rolled-up prefix does not repeat the prefix.
        let page = list(&keys, &query("", Some("/"), Some("dir/sub/y"), 1000));
        assert_eq!(page.common_prefixes, ["dir2/", "e/"]);
        // A marker before the prefix is the prefix; after all keys, nothing.
        let page = list(&keys, &query("e/", None, Some("a"), 1000));
        assert_eq!(page.objects, ["e/f/g"]);
        assert!(
            list(&keys, &query("", None, Some("zz"), 1000))
                .objects
                .is_empty()
        );
        assert!(list(&keys, &query("", None, None, 0)).objects.is_empty());
        // Multi-character delimiters and keys past char::MAX jumps.
        let odd = map(&["x--1", "x--2", "y", &format!("p/{}q", char::MAX), "p/a"]);
        let page = list(&odd, &query("", Some("--"), None, 1000));
        assert_eq!(page.common_prefixes, ["x--"]);
        assert_eq!(page.objects.len(), 3);
        let page = list(&odd, &query("", Some("/"), None, 1000));
        assert_eq!(page.common_prefixes, ["p/"]);
        assert_eq!(page.objects.len(), 3);
    }

    #[test]
    fn encodings_round_trip() {
        for s in ["plain/key.txt", "sp ace+plus", "ü/你好", "%41&=?#"] {
            let encoded = percent_encode(s);
            assert!(encoded.is_ascii());
            assert!(
                !encoded.contains(' ') && !encoded.contains('+'),
                "{encoded}"
            );
            assert_eq!(percent_decode(&encoded).as_deref(), Some(s));
            assert_eq!(marker_of_token(&continuation_token(s)).as_deref(), Some(s));
        }
        assert_eq!(percent_encode("a b/c"), "a%20b/c");
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(marker_of_token("not hex"), None);
    }
}
