//! Drop-in compatibility: the parameters of every CBS StorageClass in Tencent's examples
//! (TencentCloud/kubernetes-csi-tencentcloud, `deploy/cbs/examples/`) and in the TKE
//! documentation (`/work/shared/seeds/002_e11d0189c0bce81e.txt`) parse, mean what they meant,
//! and provision on the in-memory `FakeCbs`. Then the old keys one at a time: `diskZones`
//! selection, PREPAID without a period, `cdcid`, multi-disk `devicemapper` classes, and the
//! `--unknown-parameters` policy. The classes are written out here as data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use csi_cbs::controller::{ControllerConfig, ControllerService};
use csi_cbs::params::{CbsParams, DeviceMapper, MultiDisk};
use csi_cbs::topology::TOPOLOGY_KEY;
use csi_common::cli::UnknownParameters;
use csi_common::csi::pb;
use csi_common::csi::pb::controller_server::Controller;
use pb::volume_capability::access_mode::Mode;
use tcloud::fake::{CbsOp, FakeCbs};
use tonic::{Code, Request};

const GIB: i64 = 1 << 30;
/// The controller's own zone, where a class naming none goes.
const HOME: &str = "ap-shanghai-2";
const ZONES: &[(&str, &str)] = &[
    ("ap-shanghai-1", "200001"),
    ("ap-shanghai-2", "200002"),
    ("ap-shanghai-3", "200003"),
];

/// Where a class's disk goes.
#[derive(Debug, Clone, Copy)]
enum Zone {
    /// The topology's, else the controller's own zone.
    Default,
    One(&'static str),
    AnyOf(&'static [&'static str]),
}

/// What a class means.
#[derive(Debug, Clone, Copy)]
struct Meaning {
    zone: Zone,
    disk_type: &'static str,
    charge: &'static str,
    period: Option<u32>,
    fs_type: Option<&'static str>,
    multi_disk: Option<MultiDisk>,
}

const PLAIN: Meaning = Meaning {
    zone: Zone::Default,
    disk_type: "CLOUD_PREMIUM",
    charge: "POSTPAID_BY_HOUR",
    period: None,
    fs_type: None,
    multi_disk: None,
};

struct OldClass {
    /// The file (and for the docs, the line) the class comes from.
    source: &'static str,
    name: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    meaning: Meaning,
}

const EXAMPLES: &str = "kubernetes-csi-tencentcloud deploy/cbs/examples";
const TKE_DOCS: &str = "/work/shared/seeds/002_e11d0189c0bce81e.txt";

fn old_classes() -> Vec<OldClass> {
    vec![
        // deploy/cbs/examples/storageclass-basic.yaml
        OldClass {
            source: "storageclass-basic.yaml",
            name: "cbs-csi",
            parameters: &[],
            meaning: PLAIN,
        },
        // deploy/cbs/examples/storageclass-topology.yaml (WaitForFirstConsumer)
        OldClass {
            source: "storageclass-topology.yaml",
            name: "cbs-csi-topo",
            parameters: &[],
            meaning: PLAIN,
        },
        // deploy/cbs/examples/storageclass-examples.yaml: eight classes
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-basic",
            parameters: &[("diskType", "CLOUD_BASIC")],
            meaning: Meaning {
                disk_type: "CLOUD_BASIC",
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-premium",
            parameters: &[("diskType", "CLOUD_PREMIUM")],
            meaning: PLAIN,
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-ssd",
            parameters: &[("diskType", "CLOUD_SSD")],
            meaning: Meaning {
                disk_type: "CLOUD_SSD",
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-basic-prepaid",
            parameters: &[
                ("diskType", "CLOUD_BASIC"),
                ("diskChargeType", "PREPAID"),
                ("diskChargeTypePrepaidPeriod", "2"),
                ("diskChargePrepaidRenewFlag", "NOTIFY_AND_AUTO_RENEW"),
            ],
            meaning: Meaning {
                disk_type: "CLOUD_BASIC",
                charge: "PREPAID",
                period: Some(2),
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-basic-encrypt",
            parameters: &[("diskType", "CLOUD_BASIC"), ("encrypt", "ENCRYPT")],
            meaning: Meaning {
                disk_type: "CLOUD_BASIC",
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-shanghai-1",
            parameters: &[("diskZone", "ap-shanghai-1")],
            meaning: Meaning {
                zone: Zone::One("ap-shanghai-1"),
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-shanghai-1-2",
            parameters: &[("diskZones", "ap-shanghai-1,ap-shanghai-2")],
            meaning: Meaning {
                zone: Zone::AnyOf(&["ap-shanghai-1", "ap-shanghai-2"]),
                ..PLAIN
            },
        },
        OldClass {
            source: "storageclass-examples.yaml",
            name: "cbs-asp",
            parameters: &[("aspId", "asp-***")],
            meaning: PLAIN,
        },
        // deploy/cbs/examples/devicemapper/sc.yaml
        OldClass {
            source: "devicemapper/sc.yaml",
            name: "cbs-device-mapper-lvm",
            parameters: &[
                ("devicemapper", "LVM"),
                ("devices", "2"),
                ("fstype", "ext4"),
            ],
            meaning: Meaning {
                fs_type: Some("ext4"),
                multi_disk: Some(MultiDisk {
                    mapper: DeviceMapper::Lvm,
                    devices: 2,
                }),
                ..PLAIN
            },
        },
        // TKE docs, "StorageClass 管理云硬盘模板", the Kubectl example (line 35496).
        OldClass {
            source: "TKE docs line 35496",
            name: "cloud-premium",
            parameters: &[
                ("diskType", "CLOUD_PREMIUM"),
                ("diskChargeType", "POSTPAID_BY_HOUR"),
                ("aspid", "asp-123"),
            ],
            meaning: PLAIN,
        },
        // TKE docs, the same page's parameter table (line 35537): diskZone, and
        // diskChargeType PREPAID, with no period named anywhere on the page.
        OldClass {
            source: "TKE docs line 35537",
            name: "table-diskzone",
            parameters: &[("diskType", "CLOUD_HSSD"), ("diskZone", "ap-shanghai-3")],
            meaning: Meaning {
                zone: Zone::One("ap-shanghai-3"),
                disk_type: "CLOUD_HSSD",
                ..PLAIN
            },
        },
        OldClass {
            source: "TKE docs line 35547",
            name: "table-prepaid",
            parameters: &[("diskType", "CLOUD_SSD"), ("diskChargeType", "PREPAID")],
            meaning: Meaning {
                disk_type: "CLOUD_SSD",
                charge: "PREPAID",
                period: Some(1),
                ..PLAIN
            },
        },
        // TKE docs, the topology-aware class "cbs-topo" (line 38086): the old `type: cbs`.
        OldClass {
            source: "TKE docs line 38086",
            name: "cbs-topo",
            parameters: &[("type", "cbs")],
            meaning: PLAIN,
        },
        // TKE docs, "在线扩容云硬盘" (line 38176).
        OldClass {
            source: "TKE docs line 38176",
            name: "cbs-csi",
            parameters: &[("diskType", "CLOUD_PREMIUM")],
            meaning: PLAIN,
        },
    ]
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fake() -> FakeCbs {
    FakeCbs::new()
        .with_zones(ZONES)
        .with_auto_snapshot_policy("asp-123")
}

fn controller_with(fake: &FakeCbs, unknown: UnknownParameters) -> ControllerService<FakeCbs> {
    controller_configured(fake, unknown, None)
}

fn controller_configured(
    fake: &FakeCbs,
    unknown: UnknownParameters,
    node_zones: Option<Arc<csi_cbs::cluster_zones::ClusterZones>>,
) -> ControllerService<FakeCbs> {
    ControllerService::new(
        Arc::new(fake.clone()),
        ControllerConfig {
            driver_name: "com.tencent.cloud.csi.cbs".into(),
            attach_timeout: Duration::from_secs(120),
            default_zone: Some(HOME.into()),
            node_zones,
            unknown_parameters: unknown,
        },
    )
}

/// A controller whose cluster's Nodes are in `zones` (names or numeric IDs).
fn controller_where_nodes_are(fake: &FakeCbs, zones: &[&str]) -> ControllerService<FakeCbs> {
    use csi_cbs::cluster_zones::{ClusterZones, NodeZones};
    let source: Arc<dyn NodeZones> =
        Arc::new(NodesIn(zones.iter().map(|z| z.to_string()).collect()));
    controller_configured(
        fake,
        UnknownParameters::Refuse,
        Some(Arc::new(ClusterZones::new(source))),
    )
}

fn controller(fake: &FakeCbs) -> ControllerService<FakeCbs> {
    controller_with(fake, UnknownParameters::Refuse)
}

fn request(name: &str, parameters: &[(&str, &str)]) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(pb::CapacityRange {
            required_bytes: 20 * GIB,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![pb::VolumeCapability {
            access_mode: Some(pb::volume_capability::AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(pb::volume_capability::AccessType::Mount(Default::default())),
        }],
        parameters: map(parameters),
        ..Default::default()
    }
}

fn topology(zones: &[&str]) -> Vec<pb::Topology> {
    zones
        .iter()
        .map(|z| pb::Topology {
            segments: [(TOPOLOGY_KEY.to_owned(), z.to_string())].into(),
        })
        .collect()
}

fn with_requirement(
    mut request: pb::CreateVolumeRequest,
    preferred: &[&str],
    requisite: &[&str],
) -> pb::CreateVolumeRequest {
    request.accessibility_requirements = Some(pb::TopologyRequirement {
        preferred: topology(preferred),
        requisite: topology(requisite),
    });
    request
}

async fn create(c: &ControllerService<FakeCbs>, request: pb::CreateVolumeRequest) -> pb::Volume {
    c.create_volume(Request::new(request))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

#[test]
fn every_old_class_parses_and_means_what_it_meant() {
    for class in old_classes() {
        let origin = if class.source.starts_with("TKE") {
            TKE_DOCS
        } else {
            EXAMPLES
        };
        let at = format!("{} ({origin}: {})", class.name, class.source);
        let p = CbsParams::parse(&map(class.parameters)).unwrap_or_else(|e| panic!("{at}: {e}"));
        let m = class.meaning;
        match m.zone {
            Zone::Default => assert!(p.zone.is_none() && p.zones.is_empty(), "{at}: {p:?}"),
            Zone::One(zone) => assert_eq!(p.zone.as_deref(), Some(zone), "{at}"),
            Zone::AnyOf(zones) => assert_eq!(p.zones, zones, "{at}"),
        }
        assert_eq!(p.disk_type, m.disk_type, "{at}");
        assert_eq!(p.charge_type, m.charge, "{at}");
        assert_eq!(p.prepaid_period, m.period, "{at}");
        assert_eq!(p.fs_type.as_deref(), m.fs_type, "{at}");
        assert_eq!(p.multi_disk, m.multi_disk, "{at}");
        assert!(p.ignored.is_empty(), "{at}");
    }
    // The odd ones: the old spellings keep their meaning.
    let p = CbsParams::parse(&map(&[("diskType", "CLOUD_BASIC"), ("encrypt", "ENCRYPT")])).unwrap();
    assert!(p.encrypt);
    let p = CbsParams::parse(&map(&[("aspId", "asp-***")])).unwrap();
    assert_eq!(p.auto_snapshot_policy.as_deref(), Some("asp-***"));
    let p = CbsParams::parse(&map(&[(
        "diskChargePrepaidRenewFlag",
        "NOTIFY_AND_AUTO_RENEW",
    )]))
    .unwrap();
    assert_eq!(p.prepaid_period, None, "renewal terms alone do not prepay");
}

#[tokio::test(start_paused = true)]
async fn every_old_class_provisions_as_it_did_or_is_refused_clearly() {
    let fake = fake();
    let c = controller(&fake);
    for (i, class) in old_classes().into_iter().enumerate() {
        let at = format!("{} ({})", class.name, class.source);
        let name = format!("pvc-old-{i}");
        let result = c
            .create_volume(Request::new(request(&name, class.parameters)))
            .await;
        let m = class.meaning;
        if let Some(multi) = m.multi_disk {
            // A volume of `devices` disks, all of the class's type, in one zone.
            let volume = result
                .unwrap_or_else(|e| panic!("{at}: {e}"))
                .into_inner()
                .volume
                .unwrap();
            let ids: Vec<&str> = volume.volume_id.split(',').collect();
            assert_eq!(ids.len(), multi.devices as usize, "{at}");
            for id in &ids {
                let disk = fake.disk(id).unwrap();
                assert_eq!(disk.disk_type, m.disk_type, "{at}");
                assert_eq!(disk.charge_type, m.charge, "{at}");
                assert_eq!(disk.zone, fake.disk(ids[0]).unwrap().zone, "{at}");
            }
            assert_eq!(
                create(&c, request(&name, class.parameters)).await.volume_id,
                volume.volume_id,
                "{at}"
            );
            continue;
        }
        let volume = result
            .unwrap_or_else(|e| panic!("{at}: {e}"))
            .into_inner()
            .volume
            .unwrap();
        let disk = fake.disk(&volume.volume_id).unwrap();
        match m.zone {
            Zone::Default => assert_eq!(disk.zone, HOME, "{at}"),
            Zone::One(zone) => assert_eq!(disk.zone, zone, "{at}"),
            Zone::AnyOf(zones) => assert!(zones.contains(&disk.zone.as_str()), "{at}: {disk:?}"),
        }
        assert_eq!(disk.disk_type, m.disk_type, "{at}");
        assert_eq!(disk.charge_type, m.charge, "{at}");
        assert_eq!(
            volume.volume_context.get("fstype").map(String::as_str),
            m.fs_type,
            "{at}"
        );
        // Repeating the call answers the same disk (idempotency holds with the old keys).
        assert_eq!(
            create(&c, request(&name, class.parameters)).await.volume_id,
            volume.volume_id,
            "{at}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn disk_zones_prefer_the_topology_and_never_leave_the_requisite() {
    let fake = fake();
    let c = controller(&fake);
    let class: &[(&str, &str)] = &[("diskZones", "ap-shanghai-1, 200003")];
    // WaitForFirstConsumer: the chosen node's zone comes first in preferred.
    for (preferred, expected) in [
        (&["ap-shanghai-3", "ap-shanghai-1"], "ap-shanghai-3"),
        (&["ap-shanghai-1", "ap-shanghai-3"], "ap-shanghai-1"),
        (&["ap-shanghai-2", "ap-shanghai-1"], "ap-shanghai-1"),
    ] {
        let name = format!("pvc-pref-{expected}-{}", preferred[0]);
        let req = with_requirement(
            request(&name, class),
            preferred,
            &["ap-shanghai-1", "ap-shanghai-2", "ap-shanghai-3"],
        );
        let volume = create(&c, req).await;
        assert_eq!(fake.disk(&volume.volume_id).unwrap().zone, expected);
        assert_eq!(
            volume.accessible_topology[0].segments[TOPOLOGY_KEY],
            expected
        );
    }
    // Only requisite (numeric zone IDs, as TKE nodes are labelled): the excluded zone is never
    // picked, whatever the name.
    for i in 0..12 {
        let req = with_requirement(
            request(&format!("pvc-req-{i}"), class),
            &[],
            &["200002", "200003"],
        );
        let volume = create(&c, req).await;
        assert_eq!(fake.disk(&volume.volume_id).unwrap().zone, "ap-shanghai-3");
    }
    // None left: INVALID_ARGUMENT naming both lists, and nothing made.
    let before = fake.disks().len();
    let req = with_requirement(request("pvc-none", class), &[], &["ap-shanghai-2"]);
    let err = c.create_volume(Request::new(req)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"diskZones ["ap-shanghai-1", "ap-shanghai-3"]"#)
            && err
                .message()
                .contains(r#"requisite zones ["ap-shanghai-2"]"#),
        "{}",
        err.message()
    );
    assert_eq!(fake.disks().len(), before);
    assert_eq!(fake.calls(CbsOp::CreateDisks), before as u64);
}

#[tokio::test(start_paused = true)]
async fn disk_zones_pick_by_name_so_a_retry_picks_the_same() {
    let class: &[(&str, &str)] = &[("diskZones", "ap-shanghai-1,ap-shanghai-2,ap-shanghai-3")];
    let mut zones = std::collections::BTreeSet::new();
    for i in 0..30 {
        let name = format!("pvc-spread-{i}");
        // Two controllers (a restart in between) on two clouds: the same zone for the same name.
        let (first, second) = (fake(), fake());
        let a = create(&controller(&first), request(&name, class)).await;
        let b = create(&controller(&second), request(&name, class)).await;
        let zone = first.disk(&a.volume_id).unwrap().zone;
        assert_eq!(second.disk(&b.volume_id).unwrap().zone, zone, "{name}");
        zones.insert(zone);
    }
    assert_eq!(zones.len(), 3, "names spread over the zones: {zones:?}");
}

#[tokio::test(start_paused = true)]
async fn a_disk_outside_disk_zones_does_not_answer_a_repeat() {
    let fake = fake();
    let c = controller(&fake);
    create(&c, request("pvc-moved", &[("diskZone", "ap-shanghai-3")])).await;
    let err = c
        .create_volume(Request::new(request(
            "pvc-moved",
            &[("diskZones", "ap-shanghai-1,ap-shanghai-2")],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());
    assert!(
        err.message().contains("not one of diskZones"),
        "{}",
        err.message()
    );
}

#[tokio::test(start_paused = true)]
async fn prepaid_without_a_period_is_one_month_and_cdcid_is_cdcpaid() {
    let p = CbsParams::parse(&map(&[("diskChargeType", "prepaid")])).unwrap();
    assert_eq!(
        (p.charge_type.as_str(), p.prepaid_period),
        ("PREPAID", Some(1))
    );
    let p = CbsParams::parse(&map(&[
        ("paymode", "PREPAID"),
        ("diskChargeTypePrepaidPeriod", "36"),
    ]))
    .unwrap();
    assert_eq!(p.prepaid_period, Some(36));
    // A period without PREPAID was ignored by the old driver, and is here.
    let p = CbsParams::parse(&map(&[("diskChargeTypePrepaidPeriod", "3")])).unwrap();
    assert_eq!(
        (p.charge_type.as_str(), p.prepaid_period),
        ("POSTPAID_BY_HOUR", None)
    );

    let fake = fake();
    let c = controller(&fake);
    let prepaid = create(&c, request("pvc-prepaid", &[("diskChargeType", "PREPAID")])).await;
    assert_eq!(
        fake.disk(&prepaid.volume_id).unwrap().charge_type,
        "PREPAID"
    );

    for (i, class) in [
        &[("cdcid", "cluster-cdc1")][..],
        &[
            ("cdcid", "cluster-cdc1"),
            ("diskChargeType", "POSTPAID_BY_HOUR"),
        ][..],
        &[("cdcid", "cluster-cdc1"), ("diskChargeType", "cdcpaid")][..],
    ]
    .into_iter()
    .enumerate()
    {
        let p = CbsParams::parse(&map(class)).unwrap();
        assert_eq!(p.charge_type, "CDCPAID", "{class:?}");
        assert_eq!(p.cdc_id.as_deref(), Some("cluster-cdc1"));
        let volume = create(&c, request(&format!("pvc-cdc-{i}"), class)).await;
        assert_eq!(fake.disk(&volume.volume_id).unwrap().charge_type, "CDCPAID");
    }
    for (class, message) in [
        (
            &[("cdcid", "cluster-cdc1"), ("diskChargeType", "PREPAID")][..],
            r#"parameters diskChargeType="PREPAID" and cdcid="cluster-cdc1" conflict"#,
        ),
        (
            &[("diskChargeType", "CDCPAID")][..],
            r#"parameter diskChargeType="CDCPAID" is invalid: needs cdcid"#,
        ),
    ] {
        let err = c
            .create_volume(Request::new(request("pvc-cdc-bad", class)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(message), "{}", err.message());
    }
}

#[tokio::test(start_paused = true)]
async fn devicemapper_classes_make_each_disk_once_and_say_how_to_assemble_them() {
    let fake = fake();
    let c = controller(&fake);
    for (name, class, disks, context) in [
        (
            "pvc-lvm",
            &[
                ("devicemapper", "LVM"),
                ("devices", "2"),
                ("fstype", "ext4"),
            ][..],
            2,
            &[
                ("devicemapper", "LVM"),
                ("devices", "2"),
                ("volumeName", "pvc-lvm"),
                ("fstype", "ext4"),
            ][..],
        ),
        (
            "pvc-raid",
            &[("devicemapper", "raid"), ("devices", "4"), ("level", "10")][..],
            4,
            &[
                ("devicemapper", "RAID"),
                ("devices", "4"),
                ("level", "10"),
                ("volumeName", "pvc-raid"),
            ][..],
        ),
    ] {
        let creates = fake.calls(CbsOp::CreateDisks);
        let volume = create(&c, request(name, class)).await;
        let ids: Vec<&str> = volume.volume_id.split(',').collect();
        assert_eq!(ids.len(), disks, "{name}");
        assert_eq!(
            fake.calls(CbsOp::CreateDisks) - creates,
            disks as u64,
            "{name}"
        );
        for (i, id) in ids.iter().enumerate() {
            let disk = fake.disk(id).unwrap();
            // Each disk holds its share of the 20 GiB asked for, rounded up to the CBS step.
            assert_eq!(disk.disk_name, format!("{name}-{i}"));
            assert_eq!(disk.disk_size, 10, "{name}");
        }
        assert_eq!(volume.capacity_bytes, disks as i64 * 10 * GIB);
        for (key, value) in context {
            assert_eq!(
                volume.volume_context.get(*key).map(String::as_str),
                Some(*value),
                "{name}: {key}"
            );
        }
        // A retry answers the same disks and makes none.
        let again = create(&c, request(name, class)).await;
        assert_eq!(again.volume_id, volume.volume_id);
        assert_eq!(
            fake.calls(CbsOp::CreateDisks) - creates,
            disks as u64,
            "{name}"
        );
    }
    // A bad multi-disk class is refused for what is wrong with it.
    let before = fake.disks().len();
    let err = c
        .create_volume(Request::new(request(
            "pvc-dm",
            &[("devicemapper", "RAID"), ("devices", "2")],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"parameter level="" is invalid: required"#),
        "{}",
        err.message()
    );
    // A name that cannot name a volume group is refused before any disk is made.
    let err = c
        .create_volume(Request::new(request(
            "pvc/bad",
            &[("devicemapper", "LVM"), ("devices", "2")],
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("cannot name the volume group"),
        "{}",
        err.message()
    );
    assert_eq!(fake.disks().len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_multi_disk_create_cut_short_is_completed_not_repeated() {
    let fake = fake();
    let c = controller(&fake);
    let class = &[("devicemapper", "LVM"), ("devices", "3")][..];
    // The second disk's create fails: the first exists, the call fails.
    fake.fail_nth(CbsOp::CreateDisks, 2, "InternalError");
    let err = c
        .create_volume(Request::new(request("pvc-cut", class)))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(fake.disks().len(), 1);
    let volume = create(&c, request("pvc-cut", class)).await;
    let ids: Vec<&str> = volume.volume_id.split(',').collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(fake.disks().len(), 3);
    let names: Vec<String> = ids
        .iter()
        .map(|id| fake.disk(id).unwrap().disk_name)
        .collect();
    assert_eq!(names, ["pvc-cut-0", "pvc-cut-1", "pvc-cut-2"]);
}

/// Collects the events logged while it is the default subscriber, one line each.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(start_paused = true)]
async fn a_key_no_driver_knew_is_refused_or_warned_about_and_ignored() {
    let class: &[(&str, &str)] = &[
        ("diskType", "CLOUD_SSD"),
        ("diskSize", "10"),
        ("iops", "9000"),
    ];
    let fake = fake();
    let err = controller(&fake)
        .create_volume(Request::new(request("pvc-unknown", class)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"unknown StorageClass parameter "diskSize""#),
        "{}",
        err.message()
    );
    assert!(fake.disks().is_empty());

    let logs = Captured::default();
    let _default = tracing::subscriber::set_default(logs.clone());
    let c = controller_with(&fake, UnknownParameters::Warn);
    let volume = create(&c, request("pvc-unknown", class)).await;
    assert_eq!(fake.disk(&volume.volume_id).unwrap().disk_type, "CLOUD_SSD");
    let lines = logs.0.lock().unwrap().clone();
    let warning = lines
        .iter()
        .find(|l| l.contains("no CBS driver knows"))
        .unwrap_or_else(|| panic!("no warning among {lines:?}"));
    assert!(
        warning.starts_with("WARN")
            && warning.contains("volume=pvc-unknown")
            && warning.contains(r#"["diskSize", "iops"]"#),
        "{warning}"
    );
    // Warn only loosens unknown keys: a known key with a bad value is still refused.
    let err = c
        .create_volume(Request::new(request("pvc-bad", &[("diskType", "FLOPPY")])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains(r#"diskType="FLOPPY""#),
        "{}",
        err.message()
    );
}

/// The Nodes' zones, as a test names them.
#[derive(Debug)]
struct NodesIn(Vec<String>);

impl csi_cbs::cluster_zones::NodeZones for NodesIn {
    fn zones(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, String>> + Send + '_>>
    {
        let zones = self.0.clone();
        Box::pin(async move { Ok(zones) })
    }
}

/// A class without a zone and a request without topology: a zone among the cluster's Nodes (the
/// docs' "random zone among the cluster's nodes"), stable per volume name; the controller's own
/// zone only when no Node's zone takes disks.
#[tokio::test]
async fn a_volume_with_no_zone_goes_where_the_nodes_are() {
    for (nodes, allowed) in [
        (vec!["200003"], vec!["ap-shanghai-3"]),
        (
            vec!["ap-shanghai-1", "200003"],
            vec!["ap-shanghai-1", "ap-shanghai-3"],
        ),
        (vec!["ap-nowhere-9"], vec![HOME]),
        (vec![], vec![HOME]),
    ] {
        let fake = fake();
        let c = controller_where_nodes_are(&fake, &nodes);
        for i in 0..6 {
            let name = format!("pvc-nodes-{i}");
            let volume = create(&c, request(&name, &[])).await;
            let zone = fake.disk(&volume.volume_id).unwrap().zone;
            assert!(allowed.contains(&zone.as_str()), "{nodes:?}: {zone}");
            let again = create(&c, request(&name, &[])).await;
            assert_eq!(
                again.volume_id, volume.volume_id,
                "a retry finds the same disk"
            );
        }
    }
}

/// `diskZones` without topology: the listed zones that have Nodes come first.
#[tokio::test]
async fn disk_zones_without_topology_prefer_zones_with_nodes() {
    let fake = fake();
    let c = controller_where_nodes_are(&fake, &["200003", "ap-x-9"]);
    for i in 0..6 {
        let name = format!("pvc-listed-{i}");
        let volume = create(
            &c,
            request(
                &name,
                &[("diskZones", "ap-shanghai-1,ap-shanghai-2,ap-shanghai-3")],
            ),
        )
        .await;
        assert_eq!(
            fake.disk(&volume.volume_id).unwrap().zone,
            "ap-shanghai-3",
            "{name}"
        );
    }
}
