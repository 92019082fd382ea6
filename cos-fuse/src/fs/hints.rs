//! Lookups answered from a directory's first pages.
//!
//! A lookup the mount cannot answer asks the store twice (HEAD of the key, LIST of `key/`), and
//! a program that opens many files of one directory by name (a data loader, a build) pays that
//! for every file before its GET. After a second such miss in one directory within the listing
//! freshness, the mount lists the directory's first [`HINT_PAGES`] pages once, in the
//! background; the next lookups of names on them cost no request.
//!
//! Such a listing (a hint) only ever says that a name exists and what it is. It never says a
//! name is absent, since it may not hold the whole directory, and since a name another client
//! adds must be found by the next lookup of it, as without hints. Nor does `readdir` use it.
//! It is filled like a `readdir` listing (`Listings::begin`, `extend`), so this mount's own
//! changes made while it is fetched drop it rather than be undone by it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::paths::listable;
use super::state::Inner;
use super::table::Entry;
use super::types::FileKind;
use crate::store::{ListPage, ObjectStore};

/// The most LIST pages one hint fetches (1000 keys each).
pub(super) const HINT_PAGES: usize = 4;
/// The most LIST pages of a directory whose whole listing a lookup refreshes.
const REFRESH_PAGES: usize = 2;
/// The most entries of an expired listing a lookup refreshes: what [`REFRESH_PAGES`] hold (a
/// LIST page has up to 1000 keys).
pub(super) const REFRESH_MAX_ENTRIES: usize = REFRESH_PAGES * 1000;

/// The entries of one LIST page of the directory with key prefix `dkey` (a directory wins over a
/// file of its name), and whether the directory's own marker `dkey` is on it. Directories get
/// `dir_mtime`: a prefix has no time of its own.
pub(super) fn page_entries(
    page: &ListPage,
    dkey: &str,
    dir_mtime: SystemTime,
) -> (BTreeMap<String, Entry>, bool) {
    let mut entries = BTreeMap::new();
    let mut has_marker = false;
    for o in &page.objects {
        let Some(name) = o.key.strip_prefix(dkey) else {
            continue;
        };
        if name.is_empty() {
            has_marker = true;
            continue;
        }
        if listable(name) {
            entries.insert(
                name.to_owned(),
                Entry {
                    kind: FileKind::File,
                    size: o.size,
                    mtime: o.last_modified,
                    etag: Some(o.etag.clone()),
                },
            );
        }
    }
    for cp in &page.common_prefixes {
        let Some(name) = cp.strip_prefix(dkey).and_then(|n| n.strip_suffix('/')) else {
            continue;
        };
        if listable(name) {
            entries.insert(
                name.to_owned(),
                Entry {
                    kind: FileKind::Dir,
                    size: 0,
                    mtime: dir_mtime,
                    etag: None,
                },
            );
        }
    }
    (entries, has_marker)
}

/// The last key or prefix of a page: a file `name` sorting before it whose `name/` sorts after
/// it may still turn out to be a directory on a later page.
pub(super) fn page_last(page: &ListPage) -> Option<String> {
    page.objects
        .last()
        .map(|o| o.key.clone())
        .into_iter()
        .chain(page.common_prefixes.last().cloned())
        .max()
}

impl<S: ObjectStore> Inner<S> {
    /// Fills the hint `generation` of directory `dir` (begun by the lookup that decided on it)
    /// with its first pages, in the background. Best effort: a failure or a change of the
    /// directory drops it.
    pub(super) async fn fetch_hint(self: Arc<Self>, dir: String, generation: u64) {
        self.fill(&dir, generation, false).await;
    }

    /// Lists again directory `dir`, whose whole listing expired, as the listing `generation`
    /// begun for it; `true` once it is fresh again. Only a directory of at most
    /// [`REFRESH_PAGES`] pages is refreshed this way; a larger one, a failure or a change of the
    /// directory meanwhile leave it unlisted.
    pub(super) async fn refresh_listing(self: &Arc<Self>, dir: &str, generation: u64) -> bool {
        self.fill(dir, generation, true).await
    }

    /// Lists `dir` page by page into the listing `generation`: all of it (`whole`, at most
    /// [`REFRESH_PAGES`]), or its first [`HINT_PAGES`] as a hint.
    async fn fill(&self, dir: &str, generation: u64, whole: bool) -> bool {
        let dkey = self.dir_key(dir);
        let mut token = None;
        let mut marker = false;
        let pages = if whole { REFRESH_PAGES } else { HINT_PAGES };
        for _ in 0..pages {
            let page = match self
                .ctx
                .store
                .list(&dkey, Some("/"), token.as_deref(), None)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(dir = %dkey, error = %e, "could not list a directory for lookups");
                    self.table().listings.abandon(dir, generation);
                    return false;
                }
            };
            let (mut entries, has_marker) = page_entries(&page, &dkey, self.mount_time);
            marker |= has_marker;
            if page.next_token.is_some() && !whole {
                // A later page may hold `name/`: such files are left to their own lookups.
                let last = page_last(&page);
                entries.retain(|name, e| {
                    e.kind == FileKind::Dir
                        || last
                            .as_deref()
                            .is_some_and(|l| format!("{dkey}{name}/").as_str() < l)
                });
            }
            if !self
                .table()
                .listings
                .extend(dir, generation, entries.iter())
            {
                return false;
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let until = Instant::now() + self.ctx.cfg.list_ttl;
        let mut t = self.table();
        match (whole, token.is_none()) {
            (true, true) => {
                t.listings.finish(dir, generation, marker, until);
                true
            }
            (true, false) => {
                t.listings.abandon(dir, generation);
                false
            }
            (false, _) => {
                t.listings.finish_hint(dir, generation, marker, until);
                false
            }
        }
    }
}
