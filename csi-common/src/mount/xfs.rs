//! The size of an XFS filesystem, read without `xfs_info`. `xfs_info` (through `xfs_spaceman`)
//! stats every mount in the table before it answers, so a single NFS or FUSE mount anywhere on the
//! node whose server is gone hangs it, in a state no signal ends, and every later call leaves one
//! more such process behind. Here the size comes from our own filesystem only: the geometry ioctl
//! on its mount point when mounted (the live size, which an online growth changes before the
//! on-disk superblock catches up), else the primary superblock on the device.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::MountError;

/// `struct xfs_fsop_geom_v1` of `<xfs/xfs_fs.h>`: every kernel with XFS answers it.
#[repr(C)]
#[derive(Debug, Default)]
struct GeometryV1 {
    blocksize: u32,
    rtextsize: u32,
    agblocks: u32,
    agcount: u32,
    logblocks: u32,
    sectsize: u32,
    inodesize: u32,
    imaxpct: u32,
    datablocks: u64,
    rtblocks: u64,
    rtextents: u64,
    logstart: u64,
    uuid: [u8; 16],
    sunit: u32,
    swidth: u32,
    version: i32,
    flags: u32,
    logsectsize: u32,
    rtsectsize: u32,
    dirblocksize: u32,
}

// XFS_IOC_FSGEOMETRY_V1 = _IOR('X', 100, struct xfs_fsop_geom_v1).
nix::ioctl_read!(fs_geometry_v1, b'X', 100, GeometryV1);

fn io(path: &Path, what: &'static str, source: std::io::Error) -> MountError {
    MountError::Io {
        path: path.display().to_string(),
        what,
        source,
    }
}

/// Data blocks × block size of the XFS filesystem mounted at `mount_point`.
pub fn mounted_size(mount_point: &Path) -> Result<u64, MountError> {
    let dir = File::open(mount_point).map_err(|e| io(mount_point, "opening the mount point", e))?;
    let mut geometry = GeometryV1::default();
    // SAFETY: the descriptor is open for the call's duration, and `geometry` is a properly
    // aligned `struct xfs_fsop_geom_v1` the kernel fills (the ioctl's size is that struct's).
    #[allow(unsafe_code)]
    unsafe { fs_geometry_v1(dir.as_raw_fd(), &mut geometry) }
        .map_err(|e| io(mount_point, "reading the XFS geometry", e.into()))?;
    u64::from(geometry.blocksize)
        .checked_mul(geometry.datablocks)
        .ok_or_else(|| invalid(mount_point, "the XFS geometry overflows"))
}

fn invalid(path: &Path, detail: &str) -> MountError {
    io(
        path,
        "reading the filesystem size",
        std::io::Error::new(std::io::ErrorKind::InvalidData, detail.to_owned()),
    )
}

/// Data blocks × block size from the primary superblock of an XFS filesystem on `device`
/// (big-endian `sb_blocksize` at byte 4, `sb_dblocks` at byte 8, after the magic `XFSB`).
pub fn superblock_size(device: &Path) -> Result<u64, MountError> {
    let mut head = [0u8; 16];
    File::open(device)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| io(device, "reading the XFS superblock", e))?;
    let (magic, rest) = head.split_at(4);
    if magic != b"XFSB" {
        return Err(invalid(device, "no XFS superblock"));
    }
    let (block, blocks) = rest.split_at(4);
    let block = u32::from_be_bytes(block.try_into().map_err(|_| invalid(device, "short"))?);
    let blocks = u64::from_be_bytes(blocks.try_into().map_err(|_| invalid(device, "short"))?);
    u64::from(block)
        .checked_mul(blocks)
        .ok_or_else(|| invalid(device, "the XFS superblock's size overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_geometry_struct_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<GeometryV1>(), 112);
    }

    #[test]
    fn a_superblock_gives_blocks_times_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("sb");
        let mut head = b"XFSB".to_vec();
        head.extend(4096u32.to_be_bytes());
        head.extend(262_144u64.to_be_bytes());
        std::fs::write(&image, &head).unwrap();
        assert_eq!(superblock_size(&image).unwrap(), 1 << 30);
        std::fs::write(&image, b"EXT4 not xfs at all").unwrap();
        assert!(superblock_size(&image).is_err());
        std::fs::write(&image, b"XFSB").unwrap();
        assert!(superblock_size(&image).is_err());
    }

    #[test]
    fn a_mkfs_xfs_image_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("xfs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let status = std::process::Command::new("mkfs.xfs")
            .args(["-q", "-f"])
            .arg(&image)
            .status()
            .expect("mkfs.xfs (apt-get install xfsprogs)");
        assert!(status.success());
        assert_eq!(superblock_size(&image).unwrap(), 512 << 20);
    }
}
