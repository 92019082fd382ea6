//! An in-memory [`Assembler`] for node tests: it keeps what is on each disk, the volume groups and
//! md arrays, records every command as its argument vector, and shows assembled devices to a
//! [`FakeMounter`] (sized as the sum of their disks) so staging formats and mounts them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use csi_common::mount::DeviceContent;
use csi_common::mount::fake::FakeMounter;

use super::assemble::{Assembler, Member};
use super::tools::{Argv, commands};
use super::{Layout, LvmNames};
use crate::error::{Error, Result};

#[derive(Debug, Default)]
struct Group {
    devices: Vec<PathBuf>,
    lv: Option<String>,
    active: bool,
}

#[derive(Debug, Default)]
struct State {
    members: HashMap<PathBuf, Member>,
    groups: BTreeMap<String, Group>,
    /// Arrays by their device; `true` while running.
    arrays: BTreeMap<PathBuf, (Vec<PathBuf>, bool)>,
    commands: Vec<Vec<String>>,
    missing: Option<String>,
    fail_next: Option<String>,
}

/// The fake LVM and mdadm of one node.
#[derive(Debug, Clone)]
pub struct FakeAssembler {
    state: Arc<Mutex<State>>,
    mounter: FakeMounter,
    dev_root: PathBuf,
}

impl FakeAssembler {
    /// Assembled devices appear in `mounter` under `dev_root` (`<dev_root>/mapper/...`).
    pub fn new(mounter: FakeMounter, dev_root: impl Into<PathBuf>) -> FakeAssembler {
        FakeAssembler {
            state: Arc::default(),
            mounter,
            dev_root: dev_root.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every command run so far, as argument vectors (program first).
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.lock().commands.clone()
    }

    /// Forgets the commands run so far.
    pub fn clear_commands(&self) {
        self.lock().commands.clear();
    }

    /// Makes [`Assembler::missing`] answer `what` for every layout.
    pub fn set_missing(&self, what: Option<&str>) {
        self.lock().missing = what.map(str::to_owned);
    }

    /// Makes the next command whose program is `program` fail (a crash part-way).
    pub fn fail_next(&self, program: &str) {
        self.lock().fail_next = Some(program.to_owned());
    }

    /// Puts `member` on `device` (a disk that already holds something).
    pub fn set_member(&self, device: &Path, member: Member) {
        self.lock().members.insert(device.to_owned(), member);
    }

    /// Whether the volume group exists and is active: `None` when it does not exist.
    pub fn group_active(&self, vg: &str) -> Option<bool> {
        self.lock().groups.get(vg).map(|g| g.active)
    }

    /// Whether the md array is running: `None` when it was never made.
    pub fn array_running(&self, md: &Path) -> Option<bool> {
        self.lock().arrays.get(md).map(|a| a.1)
    }

    /// Adds an existing volume group over `devices` (made by the old driver), inactive.
    pub fn add_group(&self, names: &LvmNames, devices: &[PathBuf]) {
        let mut s = self.lock();
        for d in devices {
            s.members.insert(
                d.clone(),
                Member::LvmPv {
                    vg: Some(names.vg.clone()),
                },
            );
        }
        s.groups.insert(
            names.vg.clone(),
            Group {
                devices: devices.to_vec(),
                lv: Some(names.lv.clone()),
                active: false,
            },
        );
    }

    fn record(&self, argv: Argv) -> Result<()> {
        let mut s = self.lock();
        let mut line = vec![argv.program.to_owned()];
        line.extend(argv.args);
        s.commands.push(line);
        if s.fail_next.as_deref() == Some(argv.program) {
            s.fail_next = None;
            return Err(Error::Internal(format!(
                "{} failed (injected)",
                argv.program
            )));
        }
        Ok(())
    }

    fn size_of(&self, devices: &[PathBuf]) -> u64 {
        devices
            .iter()
            .filter_map(|d| self.mounter.device(d))
            .map(|d| d.size)
            .sum()
    }

    /// Shows an assembled device to the mounter; an existing one keeps its content.
    fn show(&self, device: &Path, size: u64) {
        if self.mounter.device(device).is_some() {
            self.mounter.set_device_size(device, size);
        } else {
            self.mounter.add_device(device, size, DeviceContent::Blank);
        }
    }
}

impl Assembler for FakeAssembler {
    fn missing(&self, _layout: Layout) -> Option<String> {
        self.lock().missing.clone()
    }

    fn member(&self, device: &Path) -> Result<Member> {
        Ok(self
            .lock()
            .members
            .get(device)
            .cloned()
            .unwrap_or(Member::Blank))
    }

    fn pv_create(&self, device: &Path) -> Result<()> {
        self.record(commands::pv_create(device))?;
        self.lock()
            .members
            .insert(device.to_owned(), Member::LvmPv { vg: None });
        Ok(())
    }

    fn vg_create(&self, vg: &str, devices: &[PathBuf]) -> Result<()> {
        self.record(commands::vg_create(vg, devices))?;
        let mut s = self.lock();
        if s.groups.contains_key(vg) {
            return Err(Error::Internal(format!(
                "vgcreate: volume group {vg} already exists"
            )));
        }
        for d in devices {
            if s.members.get(d) != Some(&Member::LvmPv { vg: None }) {
                return Err(Error::Internal(format!(
                    "vgcreate: {} is not an unused PV",
                    d.display()
                )));
            }
            s.members.insert(
                d.clone(),
                Member::LvmPv {
                    vg: Some(vg.to_owned()),
                },
            );
        }
        s.groups.insert(
            vg.to_owned(),
            Group {
                devices: devices.to_vec(),
                lv: None,
                active: true,
            },
        );
        Ok(())
    }

    fn lv_exists(&self, names: &LvmNames) -> Result<bool> {
        self.record(commands::lv_list(&names.vg))?;
        Ok(self
            .lock()
            .groups
            .get(&names.vg)
            .is_some_and(|g| g.lv.as_deref() == Some(&names.lv)))
    }

    fn lv_create(&self, names: &LvmNames, stripes: usize) -> Result<()> {
        self.record(commands::lv_create(names, stripes))?;
        let devices = {
            let mut s = self.lock();
            let g = s.groups.get_mut(&names.vg).ok_or_else(|| {
                Error::Internal(format!("lvcreate: no volume group {}", names.vg))
            })?;
            g.lv = Some(names.lv.clone());
            g.devices.clone()
        };
        self.show(&names.device(&self.dev_root), self.size_of(&devices));
        Ok(())
    }

    fn vg_change(&self, vg: &str, active: bool) -> Result<()> {
        self.record(commands::vg_change(vg, active))?;
        let (lv, devices) = {
            let mut s = self.lock();
            let g = s.groups.get_mut(vg).ok_or_else(|| {
                Error::Internal(format!("vgchange: volume group \"{vg}\" not found"))
            })?;
            g.active = active;
            (g.lv.clone(), g.devices.clone())
        };
        if active && let Some(lv) = lv {
            let names = LvmNames {
                vg: vg.to_owned(),
                lv,
            };
            self.show(&names.device(&self.dev_root), self.size_of(&devices));
        }
        Ok(())
    }

    fn pv_resize(&self, device: &Path) -> Result<()> {
        self.record(commands::pv_resize(device))
    }

    fn lv_extend(&self, names: &LvmNames) -> Result<()> {
        self.record(commands::lv_extend(names))?;
        let devices = self
            .lock()
            .groups
            .get(&names.vg)
            .map(|g| g.devices.clone())
            .unwrap_or_default();
        self.show(&names.device(&self.dev_root), self.size_of(&devices));
        Ok(())
    }

    fn md_holding(&self, device: &Path) -> Result<Option<PathBuf>> {
        Ok(self
            .lock()
            .arrays
            .iter()
            .find(|(_, (devices, running))| *running && devices.iter().any(|d| d == device))
            .map(|(md, _)| md.clone()))
    }

    fn md_create(&self, md: &Path, level: u8, devices: &[PathBuf]) -> Result<()> {
        self.record(commands::md_create(md, level, devices))?;
        {
            let mut s = self.lock();
            for d in devices {
                s.members.insert(d.clone(), Member::RaidMember);
            }
            s.arrays.insert(md.to_owned(), (devices.to_vec(), true));
        }
        self.show(md, self.size_of(devices));
        Ok(())
    }

    fn md_assemble(&self, md: &Path, devices: &[PathBuf]) -> Result<()> {
        self.record(commands::md_assemble(md, devices))?;
        self.lock()
            .arrays
            .insert(md.to_owned(), (devices.to_vec(), true));
        self.show(md, self.size_of(devices));
        Ok(())
    }

    fn md_stop(&self, md: &Path) -> Result<()> {
        self.record(commands::md_stop(md))?;
        if let Some(array) = self.lock().arrays.get_mut(md) {
            array.1 = false;
        }
        Ok(())
    }

    fn md_grow(&self, md: &Path) -> Result<()> {
        self.record(commands::md_grow(md))?;
        let devices = self
            .lock()
            .arrays
            .get(md)
            .map(|a| a.0.clone())
            .unwrap_or_default();
        self.show(md, self.size_of(&devices));
        Ok(())
    }
}
