//! Joining the disks of a multi-disk volume into one block device on the node, and taking it
//! apart again, decided from what the disks hold so that every step is safe to repeat after a
//! crash: disks already in a volume group are reactivated (never recreated), members of an md
//! array are assembled (never recreated), and only blank disks are initialised. Taking apart only
//! deactivates or stops: it never removes a volume group or wipes a superblock.
//!
//! The tools run behind [`Assembler`], one method per command; [`super::tools`] runs them for real
//! and [`super::fake`] keeps their state in memory for tests.

use std::path::{Path, PathBuf};

use super::{Layout, LvmNames, md_device};
use crate::error::{Error, Result};

/// What a member disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Blank,
    /// An LVM physical volume, in this volume group (`None`: in none yet).
    LvmPv {
        vg: Option<String>,
    },
    /// A member of an md array.
    RaidMember,
    /// Anything else (a file system, a partition table): never touched.
    Other(String),
}

/// The node's LVM and md tools, one method per command. Every method is synchronous (they run on
/// the blocking pool) and bounded by a timeout.
pub trait Assembler: Send + Sync + std::fmt::Debug {
    /// What this node lacks to assemble `layout` (a tool, or kernel support), if anything.
    fn missing(&self, layout: Layout) -> Option<String>;
    /// What `device` holds.
    fn member(&self, device: &Path) -> Result<Member>;
    /// `pvcreate <device>`.
    fn pv_create(&self, device: &Path) -> Result<()>;
    /// `vgcreate <vg> <devices>...`.
    fn vg_create(&self, vg: &str, devices: &[PathBuf]) -> Result<()>;
    /// Whether `vg` holds the logical volume `lv`.
    fn lv_exists(&self, names: &LvmNames) -> Result<bool>;
    /// `lvcreate -l 100%FREE -n <lv> -i <stripes> <vg>`.
    fn lv_create(&self, names: &LvmNames, stripes: usize) -> Result<()>;
    /// `vgchange -ay <vg>` or `vgchange -an <vg>`.
    fn vg_change(&self, vg: &str, active: bool) -> Result<()>;
    /// `pvresize <device>`.
    fn pv_resize(&self, device: &Path) -> Result<()>;
    /// `lvextend -l +100%FREE <vg>/<lv>`; already as large as it can be is success.
    fn lv_extend(&self, names: &LvmNames) -> Result<()>;
    /// The running md array holding `device`, if any.
    fn md_holding(&self, device: &Path) -> Result<Option<PathBuf>>;
    /// `mdadm --create <md> --level=<level> --raid-devices=<n> <devices>...`.
    fn md_create(&self, md: &Path, level: u8, devices: &[PathBuf]) -> Result<()>;
    /// `mdadm --assemble <md> <devices>...`.
    fn md_assemble(&self, md: &Path, devices: &[PathBuf]) -> Result<()>;
    /// `mdadm -S <md>`.
    fn md_stop(&self, md: &Path) -> Result<()>;
    /// `mdadm --grow <md> --size=max`.
    fn md_grow(&self, md: &Path) -> Result<()>;
}

/// What NodeStage assembles: the member devices (in volume ID order), the layout blank disks get,
/// and the volume's name when known (needed only to create).
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub devices: &'a [PathBuf],
    pub layout: Layout,
    pub name: Option<&'a str>,
    pub dev_root: &'a Path,
}

fn require<A: Assembler>(a: &A, layout: Layout) -> Result<()> {
    match a.missing(layout) {
        None => Ok(()),
        Some(what) => Err(Error::FailedPrecondition(format!(
            "this node cannot assemble a multi-disk volume: {what}"
        ))),
    }
}

fn members<A: Assembler>(a: &A, devices: &[PathBuf]) -> Result<Vec<Member>> {
    devices.iter().map(|d| a.member(d)).collect()
}

/// The one volume group the devices are in, if any; disks in different groups, or some in one and
/// some not, are refused untouched.
fn group_of(devices: &[PathBuf], members: &[Member]) -> Result<Option<String>> {
    let mut group: Option<&str> = None;
    for (device, member) in devices.iter().zip(members) {
        if let Member::LvmPv { vg: Some(vg) } = member {
            match group {
                Some(g) if g != vg => {
                    return Err(Error::FailedPrecondition(format!(
                        "the disks of this volume are in different volume groups ({g} and {vg} on {}); refusing to touch them",
                        device.display()
                    )));
                }
                _ => group = Some(vg),
            }
        }
    }
    let Some(group) = group else {
        return Ok(None);
    };
    if let Some((device, _)) = devices
        .iter()
        .zip(members)
        .find(|(_, m)| !matches!(m, Member::LvmPv { vg: Some(v) } if v == group))
    {
        return Err(Error::FailedPrecondition(format!(
            "{} is not in volume group {group} with the volume's other disks; refusing to touch it",
            device.display()
        )));
    }
    Ok(Some(group.to_owned()))
}

fn names_of_group(vg: &str, name: Option<&str>) -> Result<LvmNames> {
    if let Some(names) = LvmNames::for_group(vg) {
        return Ok(names);
    }
    match name.map(LvmNames::for_volume) {
        Some(names) if names.vg == vg => Ok(names),
        _ => Err(Error::FailedPrecondition(format!(
            "volume group {vg} was not made by this driver (its name does not end in _vg)"
        ))),
    }
}

fn needs_name<'a>(plan: &Plan<'a>, what: &str) -> Result<&'a str> {
    plan.name.ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "cannot name the {what} of this multi-disk volume: its volume context has no volumeName \
             and the staging path has no pvc- component"
        ))
    })
}

/// Assembles the volume and answers its block device: reactivates the volume group the disks are
/// in, or assembles the md array they are members of, or initialises blank disks the old driver's
/// way.
pub fn assemble<A: Assembler>(a: &A, plan: &Plan<'_>) -> Result<PathBuf> {
    // A running array (auto-assembled at boot, or a repeat of this call) is used as it is.
    if let Some(first) = plan.devices.first()
        && let Some(md) = a.md_holding(first)?
    {
        return Ok(md);
    }
    let members = members(a, plan.devices)?;
    if let Some((device, Member::Other(what))) = plan
        .devices
        .iter()
        .zip(&members)
        .find(|(_, m)| matches!(m, Member::Other(_)))
    {
        return Err(Error::FailedPrecondition(format!(
            "{} holds {what}, not part of a multi-disk volume; refusing to touch it",
            device.display()
        )));
    }
    let raid_members = members.iter().filter(|m| **m == Member::RaidMember).count();
    if raid_members > 0 {
        require(a, Layout::Raid { level: 0 })?;
        if raid_members != members.len() {
            return Err(Error::FailedPrecondition(format!(
                "only {raid_members} of the {} disks are md array members; refusing to create or assemble over the others",
                members.len()
            )));
        }
        let md = md_device(plan.dev_root, needs_name(plan, "md array")?);
        a.md_assemble(&md, plan.devices)?;
        return Ok(md);
    }
    if let Some(vg) = group_of(plan.devices, &members)? {
        require(a, Layout::Lvm)?;
        let names = names_of_group(&vg, plan.name)?;
        if !a.lv_exists(&names)? {
            a.lv_create(&names, plan.devices.len())?;
        }
        a.vg_change(&names.vg, true)?;
        return Ok(names.device(plan.dev_root));
    }
    // Blank disks (or physical volumes in no group yet: a create cut short).
    require(a, plan.layout)?;
    match plan.layout {
        Layout::Lvm => {
            let names = LvmNames::for_volume(needs_name(plan, "volume group")?);
            for (device, member) in plan.devices.iter().zip(&members) {
                if *member == Member::Blank {
                    a.pv_create(device)?;
                }
            }
            a.vg_create(&names.vg, plan.devices)?;
            a.lv_create(&names, plan.devices.len())?;
            a.vg_change(&names.vg, true)?;
            Ok(names.device(plan.dev_root))
        }
        Layout::Raid { level } => {
            if members.iter().any(|m| *m != Member::Blank) {
                return Err(Error::FailedPrecondition(
                    "the volume asks for RAID but its disks hold LVM physical volumes; refusing to touch them".into(),
                ));
            }
            let md = md_device(plan.dev_root, needs_name(plan, "md array")?);
            a.md_create(&md, level, plan.devices)?;
            Ok(md)
        }
    }
}

/// Takes the volume apart once it is unmounted: deactivates its volume group or stops its md
/// array. Nothing assembled (or no disk left on the node) is success.
pub fn disassemble<A: Assembler>(a: &A, devices: &[PathBuf]) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    if let Some(md) = a.md_holding(&devices[0])? {
        require(a, Layout::Raid { level: 0 })?;
        return a.md_stop(&md);
    }
    let members = members(a, devices)?;
    let group = members.iter().find_map(|m| match m {
        Member::LvmPv { vg: Some(vg) } => Some(vg.clone()),
        _ => None,
    });
    if let Some(vg) = group {
        require(a, Layout::Lvm)?;
        a.vg_change(&vg, false)?;
    }
    Ok(())
}

/// Grows the assembled device to its disks' new size: `pvresize` each and `lvextend`, or
/// `mdadm --grow`, and answers the grown device. The file system is grown by the caller.
pub fn grow<A: Assembler>(a: &A, plan: &Plan<'_>) -> Result<PathBuf> {
    let devices = plan.devices;
    if let Some(first) = devices.first()
        && let Some(md) = a.md_holding(first)?
    {
        require(a, Layout::Raid { level: 0 })?;
        a.md_grow(&md)?;
        return Ok(md);
    }
    let members = members(a, devices)?;
    let Some(vg) = group_of(devices, &members)? else {
        return Err(Error::FailedPrecondition(
            "the disks of this volume are neither an active md array nor in a volume group: is it staged?".into(),
        ));
    };
    require(a, Layout::Lvm)?;
    let names = names_of_group(&vg, plan.name)?;
    for device in devices {
        a.pv_resize(device)?;
    }
    a.lv_extend(&names)?;
    Ok(names.device(plan.dev_root))
}
