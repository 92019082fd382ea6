//! GooseFS-Lite's settings on a COS PV (`mounter: goosefs-lite`): the `core_site` attribute
//! (Hadoop-COS `fs.cosn.*` keys) and the `goosefs_lite` attribute (`goosefs.fuse.*` keys). Tencent's
//! driver read both as `key=value` items separated by commas (`fs.cosn.maxRetries=100,
//! fs.cosn.upload_thread_pool=16`) and wrote them into GooseFS-Lite's `core-site.xml` and
//! `goosefs-lite.properties`; new lines separate items here too.
//!
//! Every key with a cos-fuse equivalent becomes that `-o` option ([`KEYS`] says which); every other
//! key is returned by name, for the one warning the caller logs. Pure: no I/O, no logging.

use cos_fuse::config::{MIB, format_size};

pub const CORE_SITE: &str = "core_site";
pub const GOOSEFS_LITE: &str = "goosefs_lite";

/// GooseFS-Lite's read-ahead block when only the queue length is given (Hadoop-COS's default).
const DEFAULT_READ_AHEAD_BLOCK: u64 = MIB;
/// GooseFS-Lite's read-ahead queue when only the block size is given: Tencent's driver wrote 16
/// into every `core-site.xml` that named none.
const DEFAULT_READ_AHEAD_QUEUE: u64 = 16;

/// The keys that have a cos-fuse equivalent, `(attribute, key, cos-fuse option)`, for the README
/// and tests.
pub const KEYS: &[(&str, &str, &str)] = &[
    (CORE_SITE, "fs.cosn.upload.part.size", "multipart_size"),
    (CORE_SITE, "fs.cosn.upload_thread_pool", "parallel_count"),
    (CORE_SITE, "fs.cosn.read.ahead.block.size", "read_ahead_mb"),
    (CORE_SITE, "fs.cosn.read.ahead.queue.size", "read_ahead_mb"),
    (CORE_SITE, "fs.cosn.useHttps", "the scheme of the endpoint"),
    (
        GOOSEFS_LITE,
        "goosefs.fuse.list.entries.cache.enabled",
        "max_stat_cache_size",
    ),
    (
        GOOSEFS_LITE,
        "goosefs.fuse.list.entries.cache.max.size",
        "max_stat_cache_size",
    ),
    (
        GOOSEFS_LITE,
        "goosefs.fuse.list.entries.cache.max.expiration.time",
        "stat_cache_expire",
    ),
];

/// What `core_site` and `goosefs_lite` become.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// cos-fuse `-o` options, `(name, value)`, in a stable order.
    pub options: Vec<(&'static str, String)>,
    /// `fs.cosn.useHttps`, when given.
    pub https: Option<bool>,
    /// Keys with no cos-fuse equivalent, as `attribute: key` (never their values: `core_site` may
    /// hold keys).
    pub ignored: Vec<String>,
}

/// Text of `core_site` or `goosefs_lite` that is not `key=value` items, or a value that does not
/// fit its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume attribute {attribute}: {reason}")]
pub struct Malformed {
    pub attribute: &'static str,
    pub reason: String,
}

/// The `key=value` items of `text`, in order. Values are never echoed in errors (`core_site` may
/// carry `fs.cosn.userinfo.secretKey`).
fn items(attribute: &'static str, text: &str) -> Result<Vec<(String, String)>, Malformed> {
    let malformed = |reason: String| Malformed { attribute, reason };
    let mut out = Vec::new();
    for (index, item) in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .enumerate()
    {
        let mut parts = item.split('=');
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed(format!(
                "item {} is not key=value (items are separated by commas, e.g. \
                 fs.cosn.upload_thread_pool=16,fs.cosn.maxRetries=100)",
                index + 1
            )));
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed(format!(
                "item {} has an empty key or one with spaces",
                index + 1
            )));
        }
        out.push((key.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

fn number(attribute: &'static str, key: &str, value: &str) -> Result<u64, Malformed> {
    value.parse::<u64>().map_err(|_| Malformed {
        attribute,
        reason: format!("{key} must be a whole number, got {value:?}"),
    })
}

fn positive(attribute: &'static str, key: &str, value: &str) -> Result<u64, Malformed> {
    match number(attribute, key, value)? {
        0 => Err(Malformed {
            attribute,
            reason: format!("{key} must be at least 1"),
        }),
        n => Ok(n),
    }
}

fn boolean(attribute: &'static str, key: &str, value: &str) -> Result<bool, Malformed> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Malformed {
            attribute,
            reason: format!("{key} must be true or false, got {value:?}"),
        }),
    }
}

/// Translates `core_site` and `goosefs_lite` (either may be absent). A later item wins over an
/// earlier one with the same key, as in the files GooseFS-Lite read.
pub fn translate(
    core_site: Option<&str>,
    goosefs_lite: Option<&str>,
) -> Result<Translation, Malformed> {
    let mut out = Translation::default();
    let (mut part, mut threads, mut block, mut queue) = (None, None, None, None);
    for (key, value) in items(CORE_SITE, core_site.unwrap_or(""))? {
        let a = CORE_SITE;
        match key.as_str() {
            "fs.cosn.upload.part.size" => part = Some(positive(a, &key, &value)?),
            "fs.cosn.upload_thread_pool" => threads = Some(positive(a, &key, &value)?),
            "fs.cosn.read.ahead.block.size" => block = Some(positive(a, &key, &value)?),
            "fs.cosn.read.ahead.queue.size" => queue = Some(positive(a, &key, &value)?),
            "fs.cosn.useHttps" => out.https = Some(boolean(a, &key, &value)?),
            _ => out.ignored.push(format!("{a}: {key}")),
        }
    }
    let (mut enabled, mut entries, mut expiry_ms) = (None, None, None);
    for (key, value) in items(GOOSEFS_LITE, goosefs_lite.unwrap_or(""))? {
        let a = GOOSEFS_LITE;
        match key.as_str() {
            "goosefs.fuse.list.entries.cache.enabled" => enabled = Some(boolean(a, &key, &value)?),
            "goosefs.fuse.list.entries.cache.max.size" => entries = Some(number(a, &key, &value)?),
            "goosefs.fuse.list.entries.cache.max.expiration.time" => {
                expiry_ms = Some(number(a, &key, &value)?)
            }
            _ => out.ignored.push(format!("{a}: {key}")),
        }
    }
    if let Some(bytes) = part {
        out.options.push(("multipart_size", format_size(bytes)));
    }
    if let Some(n) = threads {
        out.options.push(("parallel_count", n.to_string()));
    }
    if block.is_some() || queue.is_some() {
        // GooseFS-Lite reads ahead a queue of blocks: cos-fuse's window is the two multiplied.
        let window = block
            .unwrap_or(DEFAULT_READ_AHEAD_BLOCK)
            .saturating_mul(queue.unwrap_or(DEFAULT_READ_AHEAD_QUEUE));
        out.options.push(("read_ahead_mb", format_size(window)));
    }
    // A disabled list cache is one that holds no entry.
    match (enabled, entries) {
        (Some(false), _) => out.options.push(("max_stat_cache_size", "0".to_owned())),
        (_, Some(n)) => out.options.push(("max_stat_cache_size", n.to_string())),
        _ => {}
    }
    if let Some(ms) = expiry_ms {
        out.options
            .push(("stat_cache_expire", ms.div_ceil(1000).to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_keys_become_options_and_the_rest_are_named() {
        let t = translate(
            Some(
                "fs.cosn.maxRetries=100, fs.cosn.retry.interval.seconds=4,\n\
                 fs.cosn.upload.part.size=16777216,fs.cosn.upload_thread_pool=64,\
                 fs.cosn.read.ahead.block.size=2097152,fs.cosn.read.ahead.queue.size=8,\
                 fs.cosn.useHttps=false",
            ),
            Some(
                "goosefs.fuse.umount.timeout=110000,goosefs.fuse.list.entries.cache.max.size=5000,\
                 goosefs.fuse.list.entries.cache.max.expiration.time=1500",
            ),
        )
        .unwrap();
        assert_eq!(
            t.options,
            [
                ("multipart_size", "16MiB".to_owned()),
                ("parallel_count", "64".to_owned()),
                ("read_ahead_mb", "16MiB".to_owned()),
                ("max_stat_cache_size", "5000".to_owned()),
                ("stat_cache_expire", "2".to_owned()),
            ]
        );
        assert_eq!(t.https, Some(false));
        assert_eq!(
            t.ignored,
            [
                "core_site: fs.cosn.maxRetries",
                "core_site: fs.cosn.retry.interval.seconds",
                "goosefs_lite: goosefs.fuse.umount.timeout",
            ]
        );
    }

    #[test]
    fn read_ahead_takes_the_other_half_from_the_defaults_and_a_disabled_cache_holds_nothing() {
        let t = translate(
            Some("fs.cosn.read.ahead.queue.size=6"),
            Some(
                "goosefs.fuse.list.entries.cache.max.size=9,goosefs.fuse.list.entries.cache.enabled=FALSE",
            ),
        )
        .unwrap();
        assert_eq!(
            t.options,
            [
                ("read_ahead_mb", "6MiB".to_owned()),
                ("max_stat_cache_size", "0".to_owned()),
            ]
        );
        let t = translate(Some("fs.cosn.read.ahead.block.size=1048576"), None).unwrap();
        assert_eq!(t.options, [("read_ahead_mb", "16MiB".to_owned())]);
        assert_eq!(translate(None, Some("")).unwrap(), Translation::default());
    }

    #[test]
    fn malformed_text_names_the_attribute_and_never_a_value() {
        for (core_site, lite, named) in [
            ("fs.cosn.maxRetries", "", CORE_SITE),
            ("a=b=c", "", CORE_SITE),
            ("=1", "", CORE_SITE),
            ("fs.cosn.upload_thread_pool=many", "", CORE_SITE),
            ("fs.cosn.upload.part.size=0", "", CORE_SITE),
            ("fs.cosn.useHttps=yes", "", CORE_SITE),
            (
                "",
                "goosefs.fuse.list.entries.cache.enabled=1",
                GOOSEFS_LITE,
            ),
            (
                "",
                "goosefs.fuse.list.entries.cache.max.size=-1",
                GOOSEFS_LITE,
            ),
            ("fs.cosn.userinfo.secretKey=s3cr3t=x", "", CORE_SITE),
        ] {
            let err = translate(Some(core_site), Some(lite)).unwrap_err();
            assert_eq!(err.attribute, named, "{core_site} {lite}");
            assert!(err.to_string().contains(named), "{err}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn every_translated_option_is_one_cos_fuse_takes_from_csi_cos() {
        let t = translate(
            Some(
                "fs.cosn.upload.part.size=1000,fs.cosn.upload_thread_pool=1,fs.cosn.read.ahead.queue.size=1",
            ),
            Some(
                "goosefs.fuse.list.entries.cache.max.size=1,goosefs.fuse.list.entries.cache.max.expiration.time=0",
            ),
        )
        .unwrap();
        for (name, value) in &t.options {
            let option = cos_fuse::options::find(name).unwrap();
            assert_eq!(option.csi, cos_fuse::options::Csi::Acts, "{name}");
            option.check(Some(value)).unwrap();
        }
        for (_, _, option) in KEYS {
            if !option.contains(' ') {
                assert!(cos_fuse::options::find(option).is_some(), "{option}");
            }
        }
    }
}
