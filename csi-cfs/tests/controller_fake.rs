//! The CFS controller in process, against the in-memory `FakeCfs`: whole file systems (long names,
//! repeats), shared-instance subdirectories (owner records, the three delete policies, takeover of
//! a retained directory), ListVolumes paging, injected cloud failures, and the order of request
//! checks. No socket and no simulator.
//!
//! Shared instances are mounted for real: `NfsMounter::SimExports` resolves a file system's mount
//! target through an export table laid out as the simulator's (`<exports>/<ip>` links to the file
//! system's directory, `<exports>/<ip>.fsid` holds its FSID) and runs `mount --bind`, so these tests
//! need root, as CI runs them. Each test owns a temporary directory; [`Env`] unmounts the
//! controller's work directory when it goes, even when the test fails, and [`Env::finish`] checks
//! that no mount under that directory is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi_cfs::controller::{
    ControllerConfig, ControllerService, MAX_FS_NAME, TAG_CAPACITY, TAG_DRIVER, TAG_SHARED,
    TAG_VOLUME_NAME, quota_gid, unmount_work_dir,
};
use csi_cfs::nfs::{NfsMounter, Programs};
use csi_cfs::params::Defaults;
use csi_common::csi::pb;
use csi_common::csi::pb::controller_server::Controller;
use csi_common::mount::LinuxMounter;
use pb::volume_capability::access_mode::Mode;
use tcloud::cfs::{
    CfsApi, CreateFileSystemRequest, DescribeFileSystemsRequest, DescribeFileSystemsResponse,
    MountTarget, ResourceTag,
};
use tcloud::fake::{CfsOp, FakeCfs, FakeFileSystem};
use tcloud::{CloudError, short_name};
use tokio::time::Instant;
use tonic::{Code, Request, Status};

const DRIVER: &str = "com.tencent.cloud.csi.cfs";
const ZONE: &str = "ap-guangzhou-3";
const GIB: i64 = 1 << 30;
/// The subdir-pattern under which two claims can meet in one directory.
const NS_NAME: &str = "${pvc.metadata.namespace}-${pvc.metadata.name}";

/// `FakeCfs` with the simulator's data plane: a file system's directory and its export appear when
/// its mount target is described, which the controller always does before it mounts.
#[derive(Debug, Clone)]
struct Exported {
    cfs: FakeCfs,
    exports: PathBuf,
    data: PathBuf,
}

impl Exported {
    fn publish(&self, target: &MountTarget) {
        let dir = self.data.join(&target.file_system_id);
        std::fs::create_dir_all(&dir).unwrap();
        let link = self.exports.join(&target.ip_address);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&dir, &link).unwrap();
        }
        let fsid = self.exports.join(format!("{}.fsid", target.ip_address));
        std::fs::write(fsid, &target.fsid).unwrap();
    }
}

impl CfsApi for Exported {
    async fn create_file_system(
        &self,
        request: &CreateFileSystemRequest,
        deadline: Option<Instant>,
    ) -> Result<String, CloudError> {
        self.cfs.create_file_system(request, deadline).await
    }

    async fn describe_file_systems(
        &self,
        request: &DescribeFileSystemsRequest,
        deadline: Option<Instant>,
    ) -> Result<DescribeFileSystemsResponse, CloudError> {
        self.cfs.describe_file_systems(request, deadline).await
    }

    async fn describe_mount_targets(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<MountTarget>, CloudError> {
        let targets = self
            .cfs
            .describe_mount_targets(file_system_id, deadline)
            .await?;
        targets.iter().for_each(|t| self.publish(t));
        Ok(targets)
    }

    async fn delete_file_system(
        &self,
        file_system_id: &str,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.cfs.delete_file_system(file_system_id, deadline).await
    }

    async fn set_group_quota(
        &self,
        file_system_id: &str,
        gid: u32,
        capacity_gib: u64,
        deadline: Option<Instant>,
    ) -> Result<(), CloudError> {
        self.cfs
            .set_group_quota(file_system_id, gid, capacity_gib, deadline)
            .await
    }
}

/// Mount points under `root`, from the kernel's table.
fn mounts_under(root: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .map(str::to_owned)
        .collect()
}

/// One controller over one fake cloud, in its own temporary directory: `exports/` (the export
/// table), `fs/<fs-id>` (each file system's data, as the server holds it) and `work/` (the
/// controller's mounts). Dropping it unmounts the work directory.
struct Env {
    fake: FakeCfs,
    service: ControllerService<Exported, LinuxMounter>,
    nfs: NfsMounter,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests bind-mount shared instances with mount(8): run them as root, as CI does"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (exports, data, work) = (root.join("exports"), root.join("fs"), root.join("work"));
        for path in [&exports, &data, &work] {
            std::fs::create_dir_all(path).unwrap();
        }
        let fake = FakeCfs::new();
        let nfs = NfsMounter::SimExports {
            exports: exports.clone(),
            programs: Programs {
                mount: "mount".into(),
                umount: "umount".into(),
                timeout: Duration::from_secs(20),
            },
        };
        let cloud = Exported {
            cfs: fake.clone(),
            exports,
            data,
        };
        let service = ControllerService::new(
            Arc::new(cloud),
            Arc::new(LinuxMounter::default()),
            ControllerConfig {
                driver_name: DRIVER.into(),
                work_dir: work,
                nfs: nfs.clone(),
                default_zone: Some(ZONE.into()),
                defaults: Defaults {
                    vpc_id: Some("vpc-test0001".into()),
                    subnet_id: Some("subnet-test0001".into()),
                    ..Defaults::default()
                },
            },
        );
        Env {
            fake,
            service,
            nfs,
            root,
            _dir: dir,
        }
    }

    /// A file system's directory as the server holds it: what the controller wrote through its
    /// mount, seen without it.
    fn data(&self, fs_id: &str) -> PathBuf {
        self.root.join("fs").join(fs_id)
    }

    fn mounts(&self) -> Vec<String> {
        mounts_under(&self.root)
    }

    /// Unmounts (through `Drop`) and checks that nothing stays mounted under the test's directory.
    fn finish(self) {
        let root = self.root.clone();
        drop(self);
        let left = mounts_under(&root);
        assert!(left.is_empty(), "mounts left behind: {left:?}");
    }

    async fn create(&self, request: pb::CreateVolumeRequest) -> Result<pb::Volume, Status> {
        self.service
            .create_volume(Request::new(request))
            .await
            .map(|r| r.into_inner().volume.unwrap())
    }

    async fn delete(&self, volume_id: &str) -> Result<(), Status> {
        self.service
            .delete_volume(Request::new(pb::DeleteVolumeRequest {
                volume_id: volume_id.into(),
                ..Default::default()
            }))
            .await
            .map(|_| ())
    }

    async fn list(&self, max_entries: i32, token: &str) -> Result<(Vec<String>, String), Status> {
        let response = self
            .service
            .list_volumes(Request::new(pb::ListVolumesRequest {
                max_entries,
                starting_token: token.into(),
            }))
            .await?
            .into_inner();
        let ids = response
            .entries
            .into_iter()
            .map(|e| e.volume.unwrap().volume_id)
            .collect();
        Ok((ids, response.next_token))
    }

    /// Every volume ListVolumes reports, in one page.
    async fn listed(&self) -> Vec<String> {
        let (ids, token) = self.list(0, "").await.unwrap();
        assert_eq!(token, "", "one page holds them all");
        ids
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        unmount_work_dir(&LinuxMounter::default(), &self.nfs, &self.root.join("work"));
    }
}

fn capability() -> pb::VolumeCapability {
    pb::VolumeCapability {
        access_mode: Some(pb::volume_capability::AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
        access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
    }
}

/// A CreateVolume of `required_bytes` with StorageClass `parameters` (the VPC, subnet and zone
/// come from the controller's defaults).
fn request(
    name: &str,
    required_bytes: i64,
    parameters: &[(&str, &str)],
) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![capability()],
        parameters: parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// The parameters of a shared-instance StorageClass with the given `on-delete` policy.
fn shared(on_delete: &str) -> Vec<(&str, &str)> {
    vec![("subdir-share", "true"), ("on-delete", on_delete)]
}

/// The parameters of a claim `namespace/name` on a shared instance whose directories are named
/// `<namespace>-<name>`.
fn claim<'a>(on_delete: &'a str, namespace: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut parameters = shared(on_delete);
    parameters.extend([
        ("subdir-pattern", NS_NAME),
        ("csi.storage.k8s.io/pvc/namespace", namespace),
        ("csi.storage.k8s.io/pvc/name", name),
    ]);
    parameters
}

fn tag<'a>(fs: &'a FakeFileSystem, key: &str) -> Option<&'a str> {
    fs.tags
        .iter()
        .find(|t| t.tag_key == key)
        .map(|t| t.tag_value.as_str())
}

/// The file system of a shared-instance volume ID (`cfs-xxxxxxxx/<policy>/<subdir>`).
fn fs_of(volume_id: &str) -> &str {
    volume_id.split('/').next().unwrap()
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, words: &[&str]) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    for word in words {
        assert!(
            status.message().contains(word),
            "{word:?} not in {:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_128_byte_name_makes_one_file_system_with_a_64_byte_fs_name_and_its_whole_name_in_a_tag()
{
    let env = Env::new();
    let long = format!("pvc-{}", "0123456789abcdef".repeat(8));
    let name = &long[..128];
    let volume = env.create(request(name, GIB, &[])).await.unwrap();
    let again = env.create(request(name, GIB, &[])).await.unwrap();
    assert_eq!(
        again.volume_id, volume.volume_id,
        "a repeat is the same volume"
    );
    assert_eq!(
        env.fake.calls(CfsOp::CreateFileSystem),
        1,
        "a repeat creates nothing"
    );

    let all = env.fake.file_systems();
    assert_eq!(all.len(), 1, "{all:?}");
    let fs = &all[0];
    assert_eq!(fs.file_system_id, volume.volume_id);
    assert_eq!(fs.fs_name.len(), 64, "{}", fs.fs_name);
    assert!(name.starts_with(&fs.fs_name[..47]), "{}", fs.fs_name);
    assert_eq!(tag(fs, TAG_VOLUME_NAME), Some(name));
    assert_eq!(tag(fs, TAG_DRIVER), Some(DRIVER));
    assert_eq!(tag(fs, TAG_CAPACITY), Some("1073741824"));
    let context = &volume.volume_context;
    assert_eq!(context["host"], fs.ip_address);
    assert_eq!(context["fsid"], fs.fsid);
    assert_eq!(
        (context["path"].as_str(), context["vers"].as_str()),
        ("/", "4")
    );

    // A name with the same first 47 bytes is another volume: the hash tells them apart.
    let twin = format!("{}z", &name[..127]);
    let other = env.create(request(&twin, GIB, &[])).await.unwrap();
    assert_ne!(other.volume_id, volume.volume_id);
    assert_eq!(env.fake.file_systems().len(), 2);
    // A name that fits is the FsName as it is, with no name tag.
    let short = env.create(request("pvc-short", GIB, &[])).await.unwrap();
    let fs = env.fake.file_system(&short.volume_id).unwrap();
    assert_eq!(fs.fs_name, "pvc-short");
    assert_eq!(tag(&fs, TAG_VOLUME_NAME), None);
    assert!(
        env.mounts().is_empty(),
        "whole file systems are never mounted by the controller"
    );
    env.finish();
}

/// Makes a file system behind the controller's back, named `fs_name` with `tags` (key, value).
async fn decoy(fake: &FakeCfs, fs_name: &str, tags: &[(&str, &str)]) -> String {
    let request = CreateFileSystemRequest {
        zone: ZONE.into(),
        net_interface: "VPC".into(),
        p_group_id: "pgroupbasic".into(),
        protocol: "NFS".into(),
        storage_type: "SD".into(),
        vpc_id: "vpc-test0001".into(),
        subnet_id: "subnet-test0001".into(),
        fs_name: Some(fs_name.into()),
        resource_tags: tags
            .iter()
            .map(|(k, v)| ResourceTag {
                tag_key: (*k).into(),
                tag_value: (*v).into(),
            })
            .collect(),
        client_token: None,
    };
    fake.create_file_system(&request, None).await.unwrap()
}

#[tokio::test]
async fn a_file_system_of_the_same_name_is_adopted_only_when_it_is_this_drivers_volume() {
    let env = Env::new();
    let long = "pvc-".to_owned() + &"7".repeat(124);
    let short = short_name(&long, MAX_FS_NAME).into_owned();
    let decoys = [
        // The shortened name of another whole name (a hash collision, or a hand-made file system).
        decoy(
            &env.fake,
            &short,
            &[(TAG_DRIVER, DRIVER), (TAG_VOLUME_NAME, "pvc-other")],
        )
        .await,
        // Another driver's, or nobody's.
        decoy(&env.fake, "pvc-plain", &[]).await,
        decoy(
            &env.fake,
            "pvc-foreign",
            &[(TAG_DRIVER, "other.csi.example.com")],
        )
        .await,
        // A shared instance is never one volume.
        decoy(
            &env.fake,
            "pvc-instance",
            &[(TAG_DRIVER, DRIVER), (TAG_SHARED, "key")],
        )
        .await,
    ];
    for name in [long.as_str(), "pvc-plain", "pvc-foreign", "pvc-instance"] {
        let volume = env.create(request(name, GIB, &[])).await.unwrap();
        assert!(
            !decoys.contains(&volume.volume_id),
            "{name} adopted {}",
            volume.volume_id
        );
        let fs = env.fake.file_system(&volume.volume_id).unwrap();
        assert_eq!(tag(&fs, TAG_DRIVER), Some(DRIVER), "{fs:?}");
    }
    assert_eq!(env.fake.file_systems().len(), 8);
    let listed = env.listed().await;
    assert!(
        !listed.contains(&decoys[1]) && !listed.contains(&decoys[2]),
        "{listed:?}"
    );
    env.finish();
}

#[tokio::test]
async fn a_whole_file_system_asked_again_with_another_size_is_already_exists() {
    let env = Env::new();
    let volume = env.create(request("pvc-size", GIB, &[])).await.unwrap();
    assert_status(
        env.create(request("pvc-size", 2 * GIB, &[])).await,
        Code::AlreadyExists,
        &[&volume.volume_id, "1073741824", "2147483648"],
    );
    let again = env.create(request("pvc-size", GIB, &[])).await.unwrap();
    assert_eq!(again.volume_id, volume.volume_id);
    assert_eq!(again.capacity_bytes, GIB);
    assert_eq!(env.fake.file_systems().len(), 1);
    env.finish();
}

#[tokio::test]
async fn a_shared_volume_asked_again_with_another_size_is_already_exists() {
    let env = Env::new();
    let parameters = shared("retain");
    let volume = env
        .create(request("pvc-size", GIB, &parameters))
        .await
        .unwrap();
    assert!(
        volume.volume_id.contains("/retain/pvc-size/"),
        "{}",
        volume.volume_id
    );
    assert_status(
        env.create(request("pvc-size", 2 * GIB, &parameters)).await,
        Code::AlreadyExists,
        &["pvc-size", "1073741824", "2147483648"],
    );
    let again = env
        .create(request("pvc-size", GIB, &parameters))
        .await
        .unwrap();
    assert_eq!(again.volume_id, volume.volume_id);
    assert_eq!(env.fake.file_systems().len(), 1, "one shared instance");
    assert_eq!(
        env.mounts(),
        [env.root
            .join("work")
            .join(fs_of(&volume.volume_id))
            .display()
            .to_string()],
        "the instance is mounted once, under the work directory"
    );
    env.finish();
}

#[tokio::test]
async fn a_shared_volume_is_a_directory_of_its_own_group_with_that_groups_quota() {
    let env = Env::new();
    let volume = env
        .create(request("pvc-quota", 3 * GIB, &shared("retain")))
        .await
        .unwrap();
    let fs_id = fs_of(&volume.volume_id);
    let gid = quota_gid(&volume.volume_id);
    let meta = std::fs::metadata(env.data(fs_id).join("pvc-quota")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.gid(), gid);
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o2777,
        "setgid, open to every pod"
    );
    let fs = env.fake.file_system(fs_id).unwrap();
    assert_eq!(fs.group_quotas.get(&gid), Some(&3), "{:?}", fs.group_quotas);
    assert_eq!(volume.volume_context["path"], "/pvc-quota");
    assert_eq!(volume.volume_context["host"], fs.ip_address);

    // The quota is best effort: a refused SetUserQuota still makes the volume.
    env.fake.fail_nth(CfsOp::SetGroupQuota, 1, "InternalError");
    let unquoted = env
        .create(request("pvc-unquoted", GIB, &shared("retain")))
        .await
        .unwrap();
    assert!(env.data(fs_id).join("pvc-unquoted").is_dir());
    let fs = env.fake.file_system(fs_id).unwrap();
    assert_eq!(fs.group_quotas.get(&quota_gid(&unquoted.volume_id)), None);
    env.finish();
}

#[tokio::test]
async fn a_retained_volume_keeps_its_directory_but_is_no_longer_listed() {
    let env = Env::new();
    let parameters = shared("retain");
    let volume = env
        .create(request("pvc-kept", GIB, &parameters))
        .await
        .unwrap();
    let dir = env.data(fs_of(&volume.volume_id)).join("pvc-kept");
    std::fs::write(dir.join("file"), b"data").unwrap();
    assert_eq!(env.listed().await, [volume.volume_id.as_str()]);

    env.delete(&volume.volume_id).await.unwrap();
    assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"data");
    assert_eq!(env.listed().await, Vec::<String>::new());
    env.delete(&volume.volume_id).await.unwrap();
    assert!(
        dir.join("file").exists(),
        "a second delete keeps the data too"
    );

    // The same claim made again takes its data back and is listed again.
    let again = env
        .create(request("pvc-kept", GIB, &parameters))
        .await
        .unwrap();
    assert_eq!(again.volume_id, volume.volume_id);
    assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"data");
    assert_eq!(env.listed().await, [volume.volume_id.as_str()]);
    env.finish();
}

#[tokio::test]
async fn an_archived_volume_is_renamed_aside_and_no_longer_listed() {
    let env = Env::new();
    let volume = env
        .create(request("pvc-old", GIB, &shared("archive")))
        .await
        .unwrap();
    assert!(
        volume.volume_id.contains("/archive/pvc-old/"),
        "{}",
        volume.volume_id
    );
    let data = env.data(fs_of(&volume.volume_id));
    std::fs::write(data.join("pvc-old").join("file"), b"data").unwrap();

    env.delete(&volume.volume_id).await.unwrap();
    assert!(!data.join("pvc-old").exists());
    let archived: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("archived-pvc-old-")
        })
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(std::fs::read(archived[0].join("file")).unwrap(), b"data");
    assert_eq!(env.listed().await, Vec::<String>::new());
    env.delete(&volume.volume_id).await.unwrap();
    assert!(
        archived[0].join("file").exists(),
        "a second delete archives nothing more"
    );
    env.finish();
}

#[tokio::test]
async fn a_deleted_volume_removes_exactly_its_own_directory() {
    let env = Env::new();
    let parameters = shared("delete");
    let gone = env
        .create(request("pvc-gone", GIB, &parameters))
        .await
        .unwrap();
    let kept = env
        .create(request("pvc-kept", GIB, &parameters))
        .await
        .unwrap();
    let data = env.data(fs_of(&gone.volume_id));
    std::fs::write(data.join("pvc-gone").join("file"), b"data").unwrap();
    std::fs::write(data.join("pvc-kept").join("file"), b"data").unwrap();

    env.delete(&gone.volume_id).await.unwrap();
    assert!(!data.join("pvc-gone").exists());
    assert!(data.join("pvc-kept").join("file").exists());
    let names: BTreeSet<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([".csi-volumes".to_owned(), "pvc-kept".to_owned()]),
        "nothing archived, nothing else touched"
    );
    assert_eq!(env.listed().await, [kept.volume_id.as_str()]);
    env.delete(&gone.volume_id).await.unwrap();
    assert!(data.join("pvc-kept").join("file").exists());
    env.finish();
}

#[tokio::test]
async fn a_directory_of_a_live_volume_is_never_handed_to_another_but_a_retained_one_may_be() {
    let env = Env::new();
    let first = env
        .create(request("pv-first", GIB, &claim("retain", "team", "x-data")))
        .await
        .unwrap();
    assert!(
        first.volume_id.contains("/retain/team-x-data/"),
        "{}",
        first.volume_id
    );
    let second = claim("retain", "team-x", "data");
    assert_status(
        env.create(request("pv-second", GIB, &second)).await,
        Code::AlreadyExists,
        &["team-x-data", "belongs to volume pv-first"],
    );
    assert_eq!(env.listed().await, [first.volume_id.as_str()]);

    env.delete(&first.volume_id).await.unwrap();
    let taken = env
        .create(request("pv-second", GIB, &second))
        .await
        .unwrap();
    assert_ne!(
        taken.volume_id, first.volume_id,
        "the same directory, but another volume: its ID says whose"
    );
    assert!(taken.volume_id.contains("/retain/team-x-data/"));
    assert_eq!(env.listed().await, [taken.volume_id.as_str()]);
    // Now it is the second volume's: the first one's name is refused in turn.
    assert_status(
        env.create(request("pv-first", GIB, &claim("retain", "team", "x-data")))
            .await,
        Code::AlreadyExists,
        &["belongs to volume pv-second"],
    );
    env.finish();
}

/// A second volume that takes the directory of a deleted one must not be touched by a late retry
/// of the first volume's DeleteVolume (its answer lost, the provisioner retrying). Were the volume
/// ID only `<fs>/<policy>/<subdir>`, both volumes would share it: with retain the retry would
/// release the live volume's record (no longer listed, and a third claim handed its directory);
/// with archive or delete it would move away or remove the live volume's data. The owner digest
/// in the ID, checked against the directory's record, tells the two apart.
#[tokio::test]
async fn a_late_delete_retry_does_not_touch_the_volume_that_took_the_directory() {
    let env = Env::new();
    let mut failures = Vec::new();
    for on_delete in ["retain", "archive", "delete"] {
        let first = env
            .create(request(
                "pv-first",
                GIB,
                &claim(on_delete, "team", "x-data"),
            ))
            .await
            .unwrap();
        env.delete(&first.volume_id).await.unwrap();
        let taken = env
            .create(request(
                "pv-second",
                GIB,
                &claim(on_delete, "team-x", "data"),
            ))
            .await
            .unwrap();
        let dir = env.data(fs_of(&taken.volume_id)).join("team-x-data");
        std::fs::write(dir.join("file"), b"data").unwrap();
        // The first volume's delete, retried late (its answer was lost).
        env.delete(&first.volume_id).await.unwrap();
        if !dir.join("file").exists() {
            failures.push(format!("{on_delete}: the live volume's data is gone"));
        }
        if !env.listed().await.contains(&taken.volume_id) {
            failures.push(format!("{on_delete}: the live volume is no longer listed"));
        }
        if env
            .create(request(
                "pv-third",
                GIB,
                &claim(on_delete, "team", "x-data"),
            ))
            .await
            .is_ok()
        {
            failures.push(format!(
                "{on_delete}: a third volume was handed the live directory"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    env.finish();
}

#[tokio::test]
async fn list_volumes_pages_through_every_volume_with_tokens_it_issued() {
    let env = Env::new();
    let mut made = BTreeSet::new();
    for name in ["pvc-p1", "pvc-p2", "pvc-p3"] {
        let volume = env
            .create(request(name, GIB, &shared("retain")))
            .await
            .unwrap();
        made.insert(volume.volume_id);
    }
    let whole = env.create(request("pvc-whole", GIB, &[])).await.unwrap();
    made.insert(whole.volume_id);

    let (mut walked, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let (ids, next) = env.list(1, &token).await.unwrap();
        assert_eq!(ids.len(), 1, "page {pages}: {ids:?}");
        walked.extend(ids);
        pages += 1;
        if next.is_empty() {
            break;
        }
        assert!(pages < 10, "the walk does not end: {walked:?}");
        token = next;
    }
    assert_eq!(pages, 4);
    assert_eq!(
        walked.iter().cloned().collect::<BTreeSet<_>>(),
        made,
        "{walked:?}"
    );
    assert_eq!(
        env.listed().await,
        walked,
        "pages follow the one-page order"
    );

    assert_status(
        env.list(1, "not-a-token").await,
        Code::Aborted,
        &["not-a-token"],
    );
    assert_status(env.list(1, "99").await, Code::Aborted, &["99"]);
    assert_status(
        env.list(-1, "").await,
        Code::InvalidArgument,
        &["max_entries"],
    );
    env.finish();
}

#[tokio::test]
async fn a_refused_or_lost_create_is_retried_into_exactly_one_file_system() {
    let env = Env::new();
    env.fake
        .fail_nth(CfsOp::CreateFileSystem, 1, "InternalError");
    assert_status(
        env.create(request("pvc-refused", GIB, &[])).await,
        Code::Unavailable,
        &["CreateCfsFileSystem", "InternalError"],
    );
    assert!(env.fake.file_systems().is_empty());
    let volume = env.create(request("pvc-refused", GIB, &[])).await.unwrap();
    assert_eq!(env.fake.file_systems().len(), 1);
    assert_eq!(env.fake.file_systems()[0].file_system_id, volume.volume_id);

    env.fake
        .lose_nth_response(CfsOp::CreateFileSystem, 1, "InternalError");
    assert!(env.create(request("pvc-lost", GIB, &[])).await.is_err());
    assert_eq!(
        env.fake.file_systems().len(),
        2,
        "the lost create took effect"
    );
    let lost = env.create(request("pvc-lost", GIB, &[])).await.unwrap();
    let all = env.fake.file_systems();
    assert_eq!(all.len(), 2, "the retry found it: {all:?}");
    assert_eq!(all[1].file_system_id, lost.volume_id);
    env.finish();
}

#[tokio::test]
async fn a_failed_describe_fails_the_create_cleanly_and_the_retry_makes_one() {
    let env = Env::new();
    // Before anything is made: nothing is.
    env.fake
        .fail_nth(CfsOp::DescribeFileSystems, 1, "InternalError");
    assert_status(
        env.create(request("pvc-early", GIB, &[])).await,
        Code::Unavailable,
        &["DescribeCfsFileSystems"],
    );
    assert_eq!(env.fake.calls(CfsOp::CreateFileSystem), 0);
    assert!(env.fake.file_systems().is_empty());

    // While waiting for the new file system: the retry finds it instead of making another.
    env.fake
        .fail_nth(CfsOp::DescribeFileSystems, 2, "InternalError");
    assert_status(
        env.create(request("pvc-late", GIB, &[])).await,
        Code::Unavailable,
        &["DescribeCfsFileSystems"],
    );
    assert_eq!(env.fake.file_systems().len(), 1);
    let late = env.create(request("pvc-late", GIB, &[])).await.unwrap();
    assert_eq!(env.fake.file_systems().len(), 1, "no second file system");
    assert_eq!(env.fake.file_systems()[0].file_system_id, late.volume_id);

    // A shared instance whose lookup fails: no instance, no directory, no mount.
    env.fake
        .fail_nth(CfsOp::DescribeFileSystems, 1, "InternalError");
    assert_status(
        env.create(request("pvc-sub", GIB, &shared("retain"))).await,
        Code::Unavailable,
        &["DescribeCfsFileSystems"],
    );
    assert_eq!(env.fake.file_systems().len(), 1);
    assert!(env.mounts().is_empty());
    let sub = env
        .create(request("pvc-sub", GIB, &shared("retain")))
        .await
        .unwrap();
    assert_eq!(env.fake.file_systems().len(), 2);
    assert!(env.data(fs_of(&sub.volume_id)).join("pvc-sub").is_dir());
    env.finish();
}

#[tokio::test]
async fn bad_requests_name_the_field_in_order_and_reach_no_cloud() {
    let env = Env::new();
    let negative = || {
        Some(pb::CapacityRange {
            required_bytes: -1,
            limit_bytes: 0,
        })
    };
    let block = pb::VolumeCapability {
        access_type: Some(pb::volume_capability::AccessType::Block(Default::default())),
        ..capability()
    };
    let good = || request("pvc-bad", GIB, &[]);
    // Each row is also wrong in every field checked after the one it names.
    let table: Vec<(pb::CreateVolumeRequest, Code, &str)> = vec![
        (
            pb::CreateVolumeRequest {
                name: String::new(),
                volume_capabilities: vec![],
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "name is required",
        ),
        (
            pb::CreateVolumeRequest {
                volume_capabilities: vec![],
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "volume_capabilities is required",
        ),
        (
            pb::CreateVolumeRequest {
                volume_capabilities: vec![capability(), block.clone()],
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "block access is not supported",
        ),
        (
            pb::CreateVolumeRequest {
                volume_capabilities: vec![pb::VolumeCapability {
                    access_mode: None,
                    ..capability()
                }],
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "volume_capability.access_mode is required",
        ),
        (
            pb::CreateVolumeRequest {
                parameters: HashMap::from([("size".to_owned(), "1".to_owned())]),
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "unknown StorageClass parameter \"size\"",
        ),
        (
            pb::CreateVolumeRequest {
                capacity_range: negative(),
                ..good()
            },
            Code::InvalidArgument,
            "capacity_range must not be negative",
        ),
        (
            pb::CreateVolumeRequest {
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: GIB,
                    limit_bytes: -1,
                }),
                ..good()
            },
            Code::InvalidArgument,
            "capacity_range must not be negative",
        ),
        (
            pb::CreateVolumeRequest {
                capacity_range: Some(pb::CapacityRange {
                    required_bytes: 2 * GIB,
                    limit_bytes: GIB,
                }),
                ..good()
            },
            Code::OutOfRange,
            "limit_bytes 1073741824 is below required_bytes 2147483648",
        ),
    ];
    for (request, code, expected) in table {
        let what = format!("{request:?}");
        let status = env.create(request).await.expect_err(&what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().contains(expected), "{what}: {status:?}");
    }
    assert_eq!(env.fake.calls(CfsOp::DescribeFileSystems), 0);
    assert_eq!(env.fake.calls(CfsOp::CreateFileSystem), 0);
    env.finish();
}
