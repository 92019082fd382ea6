//! The cache's files are its user's alone: directories 0700, files 0600, whatever the umask
//! (which can only take bits away, so the modes are asked for explicitly and directories are
//! checked after creation). A directory left looser (by an older version, or an operator) is
//! tightened when the cache opens; one that cannot be (another user's) refuses the open, since
//! blocks in it would be readable by others. Nothing here decides what is cached.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The permission bits of every directory the cache makes.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The permission bits of every file the cache writes.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) 0700, and makes it 0700 if it was there already.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Makes `path` (a directory or file, symlinks followed) have exactly `mode`, unless it has.
pub(crate) fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let now = fs::metadata(path)?.permissions().mode() & 0o7777;
    if now == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{} is mode {now:o} and cannot be made {mode:o}: {e}",
                path.display()
            ),
        )
    })
}

/// Options that create a file 0600.
pub(crate) fn file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_are_made_and_tightened_to_0700() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_dir(&deep).unwrap();
        assert_eq!(
            (mode(&dir.path().join("a")), mode(&deep)),
            (DIR_MODE, DIR_MODE)
        );
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o777)).unwrap();
        create_dir(&deep).unwrap();
        assert_eq!(mode(&deep), DIR_MODE);
    }

    #[test]
    fn files_are_created_and_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        tighten(&path, FILE_MODE).unwrap();
        assert_eq!(mode(&path), FILE_MODE);
        let new = dir.path().join("g");
        file_options()
            .write(true)
            .create_new(true)
            .open(&new)
            .unwrap();
        assert_eq!(mode(&new) & !FILE_MODE, 0);
    }
}
