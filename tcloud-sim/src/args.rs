//! The command line: every flag of the `tcloud-sim` binary with its help, and the parsers of the
//! values no other module parses (`--cbs-quota`, `--cbs-auto-snapshot-policy`). The simulator is
//! built from it by `Sim::new`; it holds no state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, Parser};

use crate::cfs;
use crate::config::{InstanceSpec, ZoneSpec};
use crate::cos;
use crate::faults::FaultRule;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tcloud-sim",
    version,
    about = "Tencent Cloud simulator: TC3-signed API v3 and instance metadata, backed by local resources",
    after_help = "Endpoints: POST / (API v3; the service is taken from the signature's credential scope: \
cvm, cbs, cfs), GET /latest/meta-data/... (first instance), GET /instances/<id>/latest/meta-data/..., \
GET /_sim/stats, DELETE /_sim/stats, GET|PUT /_sim/faults, GET|PUT /_sim/cos-profile \
{latency_ms, bandwidth_mbps}, POST /_sim/cbs/stale-link {DiskId, InstanceId, Target?} (unsigned \
test control plane). GET /_sim/stats also counts COS calls, errors and body bytes per S3 operation \
under the key `cos` (requests refused before their operation is known, such as bad signatures, \
under `-`).

COS, on its own listener (--cos-listen, printed as `cos http://ADDR` after the `listening` line): \
the S3 protocol, path style (/bucket/key) or virtual-hosted style (Host: \
<bucket>.cos.<region>.myqcloud.com, or <bucket>.<anything> for a served bucket), SigV4-signed \
with the keys the API accepts (a role's temporary key with its x-amz-security-token). Buckets \
(--cos-bucket) live under --state-dir in cos/<bucket>/: objects/<sha256 of key>.json (metadata), \
data/<id> (bytes), uploads/<uploadId>/ (multipart uploads in progress). Fault rules apply to S3 \
operations too, ACTION being the operation (PutObject, UploadPart, CompleteMultipartUpload, \
GetObject, ...): an injected error answers 500 with its code, 503 for SlowDown (and rate limits), \
403 for AccessDenied.

CBS data plane, under --state-dir: disk images cbs/disks/<diskId>.img (sparse files), snapshots \
cbs/snapshots/<snapId>.img; an attached disk is a loop device, shown to its instance as \
instances/<insId>/dev/disk/by-id/virtio-<diskId> -> /dev/loopN and \
instances/<insId>/sys/block/loopN/serial (the disk ID). Point a node plugin's device directory and \
sysfs root at instances/<insId>/dev/disk/by-id and instances/<insId>/sys. Loop devices stay attached \
when the simulator stops (the cloud keeps running); a restart re-attaches what the state says is \
attached. Attaching needs root (losetup).

CFS data plane, under --state-dir: each file system is a directory cfs/fs/<FileSystemId>/ \
(created with it, removed by DeleteCfsFileSystem). The export table cfs/exports/ names each mount \
target of an available file system: cfs/exports/<IpAddress> -> the file system's directory, and \
cfs/exports/<IpAddress>.fsid holding its FSID (the NFSv3 export name). The addresses are unique \
private addresses used only as names: there is no NFS server. Point a node plugin's CFS export \
directory at cfs/exports and it bind-mounts cfs/exports/<ip>/<path> where it would mount \
<ip>:<path> over NFS. A restart restores missing exports and removes stale ones."
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free one. The chosen address is printed on stdout as
    /// `listening http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Directory for the simulator's state (created if missing); a restart with the same directory
    /// resumes where the last run stopped.
    #[arg(long)]
    pub state_dir: PathBuf,

    /// File of accepted API keys: one `SecretId SecretKey` pair per line, `#` starts a comment.
    /// Keys are read from a file so they never show in a process listing.
    #[arg(long)]
    pub keys_file: PathBuf,

    /// The region served; requests for another region get `UnsupportedRegion`.
    #[arg(long, default_value = "ap-guangzhou")]
    pub region: String,

    /// An availability zone as NAME:NUMERIC_ID (repeatable), e.g. ap-guangzhou-3:100003.
    #[arg(long = "zone", default_values = ["ap-guangzhou-3:100003", "ap-guangzhou-4:100004"])]
    pub zones: Vec<ZoneSpec>,

    /// A simulated CVM instance as INSTANCE_ID:ZONE (repeatable). Its metadata is served under
    /// /instances/INSTANCE_ID/latest/meta-data/; the first instance's also under /latest/meta-data/.
    #[arg(long = "instance", default_values = ["ins-sim00001:ap-guangzhou-3"])]
    pub instances: Vec<InstanceSpec>,

    /// A CAM role bound to every instance; the metadata service hands out its temporary keys.
    #[arg(long)]
    pub cam_role: Option<String>,

    /// Lifetime of the role's temporary keys, in seconds.
    #[arg(long, default_value_t = 7200)]
    pub role_key_ttl_secs: i64,

    /// Largest accepted difference between X-TC-Timestamp and the simulator's clock, in seconds
    /// (older signatures get `AuthFailure.SignatureExpire`).
    #[arg(long, default_value_t = 300)]
    pub max_clock_skew_secs: i64,

    /// Latency added to every API call, in milliseconds: the floor benchmarks compare against.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Inject faults: ACTION:error_rate=P,error_code=CODE,rate_limit=PER_SECOND,stuck=true,delay_ms=N,
    /// where ACTION is an action name, an S3 operation name of the COS listener (PutObject,
    /// UploadPart, ...), or * (repeatable). `delay_ms` holds the answer back. `stuck=true`: the call succeeds but the
    /// transition it starts (ATTACHING, DETACHING, EXPANDING, a CREATING snapshot, a `creating`
    /// CFS file system) does not complete while the rule is in force. Replaceable at run time with PUT /_sim/faults.
    #[arg(long = "fault")]
    pub faults: Vec<FaultRule>,

    /// Most CBS disks a zone may hold, as ZONE=N (repeatable); CreateDisks beyond it fails with
    /// `ResourceInsufficient.OverQuota`. Zones without a quota are unlimited.
    #[arg(long = "cbs-quota")]
    pub cbs_quotas: Vec<ZoneQuota>,

    /// Most CBS disks attached to one instance; AttachDisks beyond it fails with
    /// `LimitExceeded.InstanceAttachedDisk`.
    #[arg(long, default_value_t = 20)]
    pub cbs_max_attach: u64,

    /// How long an attached CBS disk stays ATTACHING, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub cbs_attach_ms: u64,

    /// How long a CBS disk stays DETACHING, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub cbs_detach_ms: u64,

    /// How long a resized CBS disk stays EXPANDING, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub cbs_resize_ms: u64,

    /// How long a new CBS snapshot stays CREATING (its Percent rising), in milliseconds. The data
    /// is copied when CreateSnapshot is called.
    #[arg(long, default_value_t = 500)]
    pub cbs_snapshot_ms: u64,

    /// An auto-snapshot policy ID (asp-...) that exists, for BindAutoSnapshotPolicy (repeatable).
    #[arg(long = "cbs-auto-snapshot-policy", value_parser = parse_policy_id)]
    pub cbs_auto_snapshot_policies: Vec<String>,

    /// A CFS permission group (pgroup-...) that exists besides pgroupbasic, for
    /// CreateCfsFileSystem's PGroupId (repeatable).
    #[arg(long = "cfs-pgroup", value_parser = cfs::parse_pgroup_id)]
    pub cfs_pgroups: Vec<String>,

    /// How long a new CFS file system stays `creating` before it is `available` and exported, in
    /// milliseconds.
    #[arg(long, default_value_t = 300)]
    pub cfs_create_ms: u64,

    /// Most CFS file systems the account may hold; CreateCfsFileSystem beyond it fails with
    /// `ResourceInsufficient.FileSystemLimitExceeded`. Unlimited by default.
    #[arg(long)]
    pub cfs_max_file_systems: Option<u64>,

    /// DescribeCfsFileSystems with an unknown FileSystemId fails with
    /// `ResourceNotFound.FileSystemNotFound` instead of answering an empty list. The empty list is
    /// the default: Tencent's own CSI driver and Terraform provider rely on it, and the SDK does
    /// not list that code for this action. The flag tests a client against the other reading.
    #[arg(long)]
    pub cfs_describe_not_found_error: bool,

    /// On SIGTERM/SIGINT, release every CBS loop device and remove the instances' device links
    /// (the state still says attached, so the next start attaches them again). Off by default: a
    /// cloud keeps its disks attached while its API restarts.
    #[arg(long)]
    pub cbs_detach_on_exit: bool,

    /// Address of the COS (S3 protocol) listener; port 0 picks a free one. The chosen address is
    /// printed on stdout as `cos http://ADDR`, right after the `listening` line.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub cos_listen: SocketAddr,

    /// A COS bucket served, created if missing (repeatable).
    #[arg(long = "cos-bucket", default_values = [cos::DEFAULT_BUCKET], value_parser = cos::parse_bucket_name)]
    pub cos_buckets: Vec<String>,

    /// Delay before the first byte of every COS response, in milliseconds. Changeable at run time
    /// with PUT /_sim/cos-profile.
    #[arg(long, default_value_t = 0)]
    pub cos_latency_ms: u64,

    /// Bandwidth of each COS request body and each response body, in megabits per second per
    /// request; 0 is unlimited. Changeable at run time with PUT /_sim/cos-profile.
    #[arg(long, default_value_t = 0.0, value_parser = cos::parse_bandwidth)]
    pub cos_bandwidth_mbps: f64,

    /// More log detail: -v debug, -vv trace.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

/// A `--cbs-quota` value: at most `max` disks in `zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneQuota {
    pub zone: String,
    pub max: u64,
}

impl FromStr for ZoneQuota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((zone, max)) if !zone.is_empty() => match max.parse() {
                Ok(max) => Ok(ZoneQuota {
                    zone: zone.to_owned(),
                    max,
                }),
                Err(_) => Err(format!("CBS quota {s:?}: {max:?} is not a number of disks")),
            },
            _ => Err(format!(
                "CBS quota {s:?} is not ZONE=N, e.g. ap-guangzhou-3=10"
            )),
        }
    }
}

fn parse_policy_id(s: &str) -> Result<String, String> {
    if s.len() > 4 && s.starts_with("asp-") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "auto-snapshot policy {s:?} is not an ID like asp-12345678"
        ))
    }
}
