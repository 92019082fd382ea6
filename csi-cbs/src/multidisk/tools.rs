//! The real [`Assembler`]: LVM and `mdadm` run as argument vectors (never a shell) under a
//! timeout through `csi-common`'s command layer, with the old driver's commands and names. Before
//! anything runs, the node is checked for the tools and for kernel support (`device-mapper` in
//! `/proc/misc`, `/proc/mdstat`), so a node without them answers FAILED_PRECONDITION naming what
//! is missing instead of a failed command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use csi_common::mount::command::{CommandError, run_command, run_command_any_status};

use super::Layout;
use super::LvmNames;
use super::assemble::{Assembler, Member};
use crate::device::DeviceRoots;
use crate::error::{Error, Result};

/// Each LVM or mdadm command may take this long (they return once metadata is written; an md
/// resync runs in the kernel afterwards).
pub const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Tools a layout needs on the node.
const LVM_TOOLS: [&str; 9] = [
    "blkid", "pvcreate", "vgcreate", "lvcreate", "vgchange", "pvs", "lvs", "pvresize", "lvextend",
];
const RAID_TOOLS: [&str; 2] = ["blkid", "mdadm"];
/// Where tools are looked for besides `PATH` (LVM lives in sbin, which a container's PATH may lack).
const SBIN: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// One command, as the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub program: &'static str,
    pub args: Vec<String>,
}

fn argv(program: &'static str, args: &[&str]) -> Argv {
    Argv {
        program,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The argument vectors, as pure functions so their exact form is pinned by tests.
pub mod commands {
    use super::*;

    pub fn probe(device: &Path) -> Argv {
        argv(
            "blkid",
            &["-p", "-s", "TYPE", "-o", "value", &path_str(device)],
        )
    }
    pub fn pv_group(device: &Path) -> Argv {
        argv("pvs", &["--noheadings", "-o", "vg_name", &path_str(device)])
    }
    pub fn pv_create(device: &Path) -> Argv {
        argv("pvcreate", &[&path_str(device), "-v"])
    }
    pub fn vg_create(vg: &str, devices: &[PathBuf]) -> Argv {
        let mut a = argv("vgcreate", &[vg]);
        a.args.extend(devices.iter().map(|d| path_str(d)));
        a.args.push("-v".into());
        a
    }
    pub fn lv_list(vg: &str) -> Argv {
        argv("lvs", &["--noheadings", "-o", "lv_name", vg])
    }
    pub fn lv_create(names: &LvmNames, stripes: usize) -> Argv {
        argv(
            "lvcreate",
            &[
                "-l",
                "100%FREE",
                "-n",
                &names.lv,
                "-i",
                &stripes.to_string(),
                &names.vg,
            ],
        )
    }
    pub fn vg_change(vg: &str, active: bool) -> Argv {
        argv("vgchange", &[if active { "-ay" } else { "-an" }, vg])
    }
    pub fn pv_resize(device: &Path) -> Argv {
        argv("pvresize", &[&path_str(device)])
    }
    pub fn lv_extend(names: &LvmNames) -> Argv {
        argv(
            "lvextend",
            &["-l", "+100%FREE", &format!("{}/{}", names.vg, names.lv)],
        )
    }
    pub fn md_create(md: &Path, level: u8, devices: &[PathBuf]) -> Argv {
        let mut a = argv(
            "mdadm",
            &[
                "--create",
                &path_str(md),
                "--run",
                &format!("--level={level}"),
                &format!("--raid-devices={}", devices.len()),
            ],
        );
        a.args.extend(devices.iter().map(|d| path_str(d)));
        a
    }
    pub fn md_assemble(md: &Path, devices: &[PathBuf]) -> Argv {
        let mut a = argv("mdadm", &["--assemble", &path_str(md)]);
        a.args.extend(devices.iter().map(|d| path_str(d)));
        a
    }
    pub fn md_stop(md: &Path) -> Argv {
        argv("mdadm", &["-S", &path_str(md)])
    }
    pub fn md_grow(md: &Path) -> Argv {
        argv("mdadm", &["--grow", &path_str(md), "--size=max"])
    }
}

/// LVM and mdadm on this node.
#[derive(Debug, Clone)]
pub struct Tools {
    roots: DeviceRoots,
    proc_root: PathBuf,
    /// Directories searched for the tools; `None`: `PATH` and the sbin directories.
    search: Option<Vec<PathBuf>>,
}

impl Tools {
    pub fn new(roots: DeviceRoots) -> Tools {
        Tools {
            roots,
            proc_root: PathBuf::from("/proc"),
            search: None,
        }
    }

    /// Reads kernel support from `proc_root` and looks for tools only in `search` (tests).
    pub fn with_roots(roots: DeviceRoots, proc_root: PathBuf, search: Vec<PathBuf>) -> Tools {
        Tools {
            roots,
            proc_root,
            search: Some(search),
        }
    }

    fn search_dirs(&self) -> Vec<PathBuf> {
        if let Some(dirs) = &self.search {
            return dirs.clone();
        }
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(SBIN.iter().map(PathBuf::from));
        dirs
    }

    fn has_tool(&self, tool: &str) -> bool {
        self.search_dirs().iter().any(|d| d.join(tool).is_file())
    }

    fn run(&self, command: Argv) -> Result<String> {
        run_command(command.program, &command.args, ASSEMBLY_TIMEOUT)
            .map(|out| out.stdout)
            .map_err(tool_error)
    }
}

fn tool_error(e: CommandError) -> Error {
    match e {
        CommandError::NotFound { program } => Error::FailedPrecondition(format!(
            "{program} is not installed on this node; multi-disk volumes need lvm2 and mdadm"
        )),
        other => Error::Internal(other.to_string()),
    }
}

/// What a kernel lacks for `layout`, read from `/proc`.
fn kernel_missing(proc_root: &Path, layout: Layout) -> Option<String> {
    match layout {
        Layout::Lvm => {
            let misc = std::fs::read_to_string(proc_root.join("misc")).unwrap_or_default();
            let has = misc
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"));
            (!has).then(|| {
                "the kernel has no device-mapper (no device-mapper in /proc/misc; load dm_mod)"
                    .to_owned()
            })
        }
        Layout::Raid { .. } => (!proc_root.join("mdstat").exists()).then(|| {
            "the kernel has no md driver (no /proc/mdstat; load md_mod and the raid modules)"
                .to_owned()
        }),
    }
}

impl Assembler for Tools {
    fn missing(&self, layout: Layout) -> Option<String> {
        let tools: &[&str] = match layout {
            Layout::Lvm => &LVM_TOOLS,
            Layout::Raid { .. } => &RAID_TOOLS,
        };
        let absent: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| !self.has_tool(t))
            .collect();
        let mut problems = Vec::new();
        if !absent.is_empty() {
            let package = match layout {
                Layout::Lvm => "lvm2",
                Layout::Raid { .. } => "mdadm",
            };
            problems.push(format!(
                "{} not found (install {package})",
                absent.join(", ")
            ));
        }
        problems.extend(kernel_missing(&self.proc_root, layout));
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    fn member(&self, device: &Path) -> Result<Member> {
        let probe = commands::probe(device);
        let out = run_command_any_status(probe.program, &probe.args, ASSEMBLY_TIMEOUT)
            .map_err(tool_error)?;
        match out.code() {
            Some(0) => {}
            // blkid: nothing found.
            Some(2) => return Ok(Member::Blank),
            _ => {
                return Err(tool_error(CommandError::failed(
                    probe.program,
                    probe.args,
                    &out,
                )));
            }
        }
        match out.stdout.trim() {
            "" => Ok(Member::Blank),
            "LVM2_member" => {
                let vg = self.run(commands::pv_group(device))?.trim().to_owned();
                Ok(Member::LvmPv {
                    vg: (!vg.is_empty()).then_some(vg),
                })
            }
            "linux_raid_member" => Ok(Member::RaidMember),
            other => Ok(Member::Other(other.to_owned())),
        }
    }

    fn pv_create(&self, device: &Path) -> Result<()> {
        self.run(commands::pv_create(device)).map(drop)
    }

    fn vg_create(&self, vg: &str, devices: &[PathBuf]) -> Result<()> {
        self.run(commands::vg_create(vg, devices)).map(drop)
    }

    fn lv_exists(&self, names: &LvmNames) -> Result<bool> {
        let out = self.run(commands::lv_list(&names.vg))?;
        Ok(out.lines().any(|l| l.trim() == names.lv))
    }

    fn lv_create(&self, names: &LvmNames, stripes: usize) -> Result<()> {
        self.run(commands::lv_create(names, stripes)).map(drop)
    }

    fn vg_change(&self, vg: &str, active: bool) -> Result<()> {
        self.run(commands::vg_change(vg, active)).map(drop)
    }

    fn pv_resize(&self, device: &Path) -> Result<()> {
        self.run(commands::pv_resize(device)).map(drop)
    }

    fn lv_extend(&self, names: &LvmNames) -> Result<()> {
        let command = commands::lv_extend(names);
        match run_command(command.program, &command.args, ASSEMBLY_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(e) if is_already_extended(&e) => Ok(()),
            Err(e) => Err(tool_error(e)),
        }
    }

    fn md_holding(&self, device: &Path) -> Result<Option<PathBuf>> {
        let Some(name) = device.file_name() else {
            return Ok(None);
        };
        let holders = self
            .roots
            .sysfs_root
            .join("block")
            .join(name)
            .join("holders");
        let Ok(entries) = std::fs::read_dir(&holders) else {
            return Ok(None);
        };
        let mut md: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with("md"))
            .collect();
        md.sort();
        Ok(md.first().map(|n| self.roots.dev_root.join(n)))
    }

    fn md_create(&self, md: &Path, level: u8, devices: &[PathBuf]) -> Result<()> {
        self.run(commands::md_create(md, level, devices)).map(drop)
    }

    fn md_assemble(&self, md: &Path, devices: &[PathBuf]) -> Result<()> {
        self.run(commands::md_assemble(md, devices)).map(drop)
    }

    fn md_stop(&self, md: &Path) -> Result<()> {
        self.run(commands::md_stop(md)).map(drop)
    }

    fn md_grow(&self, md: &Path) -> Result<()> {
        self.run(commands::md_grow(md)).map(drop)
    }
}

/// `lvextend` refuses to extend to the size the volume already has: a repeat, so success.
fn is_already_extended(e: &CommandError) -> bool {
    matches!(e, CommandError::Failed { stderr, .. } if stderr.contains("matches existing size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &Argv) -> Vec<&str> {
        std::iter::once(a.program)
            .chain(a.args.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn argument_vectors_are_the_old_drivers() {
        let names = LvmNames::for_volume("pvc-1");
        let devs = [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")];
        let md = Path::new("/dev/md/pvc-1");
        for (argv, expected) in [
            (
                commands::probe(&devs[0]),
                &["blkid", "-p", "-s", "TYPE", "-o", "value", "/dev/vdb"][..],
            ),
            (
                commands::pv_group(&devs[0]),
                &["pvs", "--noheadings", "-o", "vg_name", "/dev/vdb"],
            ),
            (
                commands::pv_create(&devs[0]),
                &["pvcreate", "/dev/vdb", "-v"],
            ),
            (
                commands::vg_create(&names.vg, &devs),
                &["vgcreate", "pvc_1_vg", "/dev/vdb", "/dev/vdc", "-v"],
            ),
            (
                commands::lv_list(&names.vg),
                &["lvs", "--noheadings", "-o", "lv_name", "pvc_1_vg"],
            ),
            (
                commands::lv_create(&names, 2),
                &[
                    "lvcreate", "-l", "100%FREE", "-n", "pvc_1_lv", "-i", "2", "pvc_1_vg",
                ],
            ),
            (
                commands::vg_change(&names.vg, true),
                &["vgchange", "-ay", "pvc_1_vg"],
            ),
            (
                commands::vg_change(&names.vg, false),
                &["vgchange", "-an", "pvc_1_vg"],
            ),
            (commands::pv_resize(&devs[1]), &["pvresize", "/dev/vdc"]),
            (
                commands::lv_extend(&names),
                &["lvextend", "-l", "+100%FREE", "pvc_1_vg/pvc_1_lv"],
            ),
            (
                commands::md_create(md, 10, &devs),
                &[
                    "mdadm",
                    "--create",
                    "/dev/md/pvc-1",
                    "--run",
                    "--level=10",
                    "--raid-devices=2",
                    "/dev/vdb",
                    "/dev/vdc",
                ],
            ),
            (
                commands::md_assemble(md, &devs),
                &[
                    "mdadm",
                    "--assemble",
                    "/dev/md/pvc-1",
                    "/dev/vdb",
                    "/dev/vdc",
                ],
            ),
            (commands::md_stop(md), &["mdadm", "-S", "/dev/md/pvc-1"]),
            (
                commands::md_grow(md),
                &["mdadm", "--grow", "/dev/md/pvc-1", "--size=max"],
            ),
        ] {
            assert_eq!(v(&argv), expected);
        }
    }

    fn tools_in(dir: &Path, tools: &[&str], misc: Option<&str>, mdstat: bool) -> Tools {
        let bin = dir.join("bin");
        let proc_root = dir.join("proc");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&proc_root).unwrap();
        for t in tools {
            std::fs::write(bin.join(t), "").unwrap();
        }
        if let Some(misc) = misc {
            std::fs::write(proc_root.join("misc"), misc).unwrap();
        }
        if mdstat {
            std::fs::write(proc_root.join("mdstat"), "Personalities :\n").unwrap();
        }
        let roots = DeviceRoots {
            by_id_dir: dir.join("by-id"),
            sysfs_root: dir.join("sys"),
            dev_root: dir.join("dev"),
        };
        Tools::with_roots(roots, proc_root, vec![bin])
    }

    #[test]
    fn missing_tools_and_kernel_support_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let t = tools_in(dir.path(), &["blkid", "mdadm"], Some(" 62 rfkill\n"), false);
        let lvm = t.missing(Layout::Lvm).unwrap();
        assert!(
            lvm.contains("pvcreate") && lvm.contains("vgchange") && lvm.contains("install lvm2"),
            "{lvm}"
        );
        assert!(lvm.contains("no device-mapper"), "{lvm}");
        let raid = t.missing(Layout::Raid { level: 1 }).unwrap();
        assert!(
            raid.contains("no /proc/mdstat") && !raid.contains("not found"),
            "{raid}"
        );

        let dir = tempfile::tempdir().unwrap();
        let t = tools_in(
            dir.path(),
            &LVM_TOOLS,
            Some(" 62 rfkill\n236 device-mapper\n"),
            true,
        );
        assert_eq!(t.missing(Layout::Lvm), None);
        let raid = t.missing(Layout::Raid { level: 1 }).unwrap();
        assert!(raid.contains("mdadm not found (install mdadm)"), "{raid}");
    }

    #[test]
    fn a_running_array_is_found_through_sysfs_holders() {
        let dir = tempfile::tempdir().unwrap();
        let t = tools_in(dir.path(), &[], None, false);
        let holders = dir.path().join("sys/block/vdb/holders");
        std::fs::create_dir_all(&holders).unwrap();
        assert_eq!(t.md_holding(Path::new("/dev/vdb")).unwrap(), None);
        std::fs::write(holders.join("md127"), "").unwrap();
        assert_eq!(
            t.md_holding(Path::new("/dev/vdb")).unwrap(),
            Some(dir.path().join("dev/md127"))
        );
        assert_eq!(t.md_holding(Path::new("/dev/vdc")).unwrap(), None);
    }
}
