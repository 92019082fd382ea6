//! A daemon run by the FUSE host, which keeps a copy of the mount's kernel connection so the
//! mount outlives the daemon: the daemon mounts the connection itself (or is handed a running
//! one: inherited after a crash of its predecessor, or taken over from a live predecessor during
//! an upgrade), answers the host's and a successor's requests on its control socket, and hands
//! the mount over when a successor asks.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cos_fuse::fuse::{FuseCounters, MountOptions, Served};
use fuse_host::control::{self, Daemon};

/// How long a hand-over waits for the requests already read to be answered.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a successor waits for its predecessor's connection.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments the FUSE host adds; hidden from `--help`, they are not for people.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SupervisedArgs {
    /// Serve a control socket here (the host's copy of the connection, hand-overs).
    #[arg(long = "control-socket", hide = true)]
    pub control_socket: Option<PathBuf>,

    /// The mount's running kernel connection is inherited as this descriptor.
    #[arg(long = "fuse-fd", hide = true, requires = "control_socket")]
    pub fuse_fd: Option<i32>,

    /// Take the mount over from the live daemon at the control socket.
    #[arg(
        long = "take-over",
        hide = true,
        requires = "control_socket",
        conflicts_with = "fuse_fd"
    )]
    pub take_over: bool,

    /// Record the inode numbers the kernel holds here, so a successor knows them.
    #[arg(long = "inode-journal", hide = true)]
    pub inode_journal: Option<PathBuf>,
}

/// Where the connection comes from, once the predecessor (if any) is out of the way.
#[derive(Debug)]
pub enum Connection {
    /// None yet: mount one.
    Fresh,
    /// A running one: inherited or taken over.
    Running(OwnedFd),
}

impl SupervisedArgs {
    /// Whether the mount is already there, on a connection this daemon is handed.
    pub fn inherits_connection(&self) -> bool {
        self.fuse_fd.is_some() || self.take_over
    }

    /// The connection to serve. With `--take-over`, this is where the predecessor stops
    /// serving: call it before anything that must not run beside the predecessor (its uploads'
    /// clean-up, its staging directory).
    pub fn connection(&self) -> Result<Connection, String> {
        if let Some(fd) = self.fuse_fd {
            return inherited(fd).map(Connection::Running);
        }
        match (&self.control_socket, self.take_over) {
            (Some(path), true) => {
                let (pid, dev) = control::fetch_connection(path, FETCH_TIMEOUT)
                    .map_err(|e| format!("cannot take the mount over: {e}"))?;
                tracing::info!(predecessor = pid, "taking the mount over");
                control::request_hand_over(path)
                    .map_err(|e| format!("the daemon {pid} did not hand the mount over: {e}"))?;
                Ok(Connection::Running(dev))
            }
            _ => Ok(Connection::Fresh),
        }
    }
}

/// Checks that descriptor `fd` is an open `/dev/fuse` (character device 10:229) and takes it.
#[allow(unsafe_code)]
fn inherited(fd: i32) -> Result<OwnedFd, String> {
    if fd < 3 {
        return Err(format!(
            "--fuse-fd {fd} is a standard stream, not a FUSE connection"
        ));
    }
    let stat = nix::sys::stat::fstat(unsafe_borrow(fd))
        .map_err(|e| format!("--fuse-fd {fd} is not open: {e}"))?;
    let is_char = stat.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let (major, minor) = (libc::major(stat.st_rdev), libc::minor(stat.st_rdev));
    if !is_char || (major, minor) != (10, 229) {
        return Err(format!(
            "--fuse-fd {fd} is not /dev/fuse (device {major}:{minor})"
        ));
    }
    // SAFETY: `fd` is open (fstat succeeded), was inherited for this purpose, and nothing else
    // in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[allow(unsafe_code)]
fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for an fstat right away; a closed number makes fstat fail with EBADF.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Serves `fs` through the kept connection, with the control socket at `path`.
pub fn serve<S: cos_fuse::ObjectStore>(
    fs: cos_fuse::Fs<S>,
    rt: &tokio::runtime::Runtime,
    connection: Connection,
    path: &Path,
    mountpoint: &Path,
    options: &MountOptions,
) -> std::io::Result<()> {
    cos_fuse::fuse::prepare_hand_over()?;
    let (dev, running) = match connection {
        Connection::Running(dev) => (dev, true),
        Connection::Fresh => (
            cos_fuse::fuse::open_and_mount(mountpoint, options, fs.config().read_only)?,
            false,
        ),
    };
    let listener = control::bind(path)?;
    let counters = Arc::clone(&options.counters);
    cos_fuse::fuse::serve(
        fs,
        rt.handle().clone(),
        dev,
        running,
        mountpoint,
        options,
        |served| {
            tracing::info!(
                control = %path.display(),
                fd = served.dev.as_raw_fd(),
                resumed = running,
                "serving a kept connection"
            );
            if let Err(e) = control::serve(listener, Kept { served, counters }) {
                tracing::error!(error = %e, "cannot serve the control socket: the mount cannot be handed over");
            }
        },
    )
}

/// The daemon side of the control socket.
struct Kept {
    served: Served,
    counters: Arc<FuseCounters>,
}

impl Daemon for Kept {
    fn connection(&self) -> std::io::Result<OwnedFd> {
        self.served.dev.try_clone()
    }

    fn hand_over(&self) -> std::io::Result<()> {
        let open = cos_fuse::fuse::hand_over(&self.served, &self.counters, HAND_OVER_TIMEOUT)?;
        if open > 0 {
            tracing::warn!(open, "handing over with requests still unanswered");
        }
        Ok(())
    }

    fn exit(&self) -> ! {
        tracing::info!("handed the mount over: exiting");
        std::process::exit(0)
    }
}
