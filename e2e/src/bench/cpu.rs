//! The CPU time a stretch of work cost, read from `/proc`: the whole machine's busy time (every
//! process and the kernel, interrupts included) and one process's (user and system, all its
//! threads). Where the simulator, the reader and a mount share a few cores, a read rate is
//! bounded by what its work costs in CPU per byte: [`CpuSpent::rate_at_full_use`] is that bound,
//! printed beside a rate so a miss can be told apart from a machine that has no more to give.

use std::time::{Duration, Instant};

use super::MIB;

/// The machine's and a process's CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuMark {
    at: Instant,
    machine: MachineTicks,
    pid: Option<u32>,
    process: Option<u64>,
}

/// What the work since a [`CpuMark`] cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CpuSpent {
    pub(super) wall: Duration,
    /// Busy CPU seconds of the whole machine.
    pub(super) machine_secs: f64,
    /// CPU seconds the hypervisor gave to others while this machine's cores wanted to run
    /// (steal): not work done here, but capacity the work did not have.
    pub(super) steal_secs: f64,
    pub(super) cores: usize,
    /// CPU seconds of the process marked, if one was.
    pub(super) process_secs: Option<f64>,
}

/// The whole machine's counters in `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MachineTicks {
    /// User, nice, system, irq and softirq (guest time is inside user already; idle and
    /// iowait are not busy).
    busy: u64,
    steal: u64,
    cores: usize,
}

fn machine_ticks(stat: &str) -> Option<MachineTicks> {
    let mut lines = stat.lines();
    let fields: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    let busy = [0, 1, 2, 5, 6].into_iter().map(at).sum();
    let cores = lines
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    (fields.len() >= 4 && cores > 0).then_some(MachineTicks {
        busy,
        steal: at(7),
        cores,
    })
}

/// User plus system ticks of a process, from its `/proc/<pid>/stat` (fields 14 and 15; the
/// command name in field 2 may hold spaces and parentheses, so fields are counted after its
/// last `)`).
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

fn read_process(pid: Option<u32>) -> Option<u64> {
    process_ticks(&std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?)
}

impl CpuMark {
    /// The counters now, and those of process `pid` if given; `None` without `/proc/stat`.
    pub(super) fn now(pid: Option<u32>) -> Option<CpuMark> {
        let machine = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(CpuMark {
            at: Instant::now(),
            machine,
            pid,
            process: read_process(pid),
        })
    }

    /// What was spent since this mark.
    pub(super) fn spent(&self) -> Option<CpuSpent> {
        let later = CpuMark::now(self.pid)?;
        let tick = ticks_per_second();
        Some(CpuSpent {
            wall: later.at.duration_since(self.at),
            machine_secs: later.machine.busy.saturating_sub(self.machine.busy) as f64 / tick,
            steal_secs: later.machine.steal.saturating_sub(self.machine.steal) as f64 / tick,
            cores: self.machine.cores,
            process_secs: match (self.process, later.process) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tick),
                _ => None,
            },
        })
    }
}

/// One timed run of a workload, and the CPU the machine spent on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Costed {
    pub(super) took: Duration,
    pub(super) cpu: Option<CpuSpent>,
}

/// Runs `work` and records what it cost the machine (and process `pid`, if given) in CPU.
pub(super) async fn run_costed<Fut>(pid: Option<u32>, work: Fut) -> anyhow::Result<Costed>
where
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mark = CpuMark::now(pid);
    let took = work.await?;
    Ok(Costed {
        took,
        cpu: mark.and_then(|m| m.spent()),
    })
}

/// [`CpuSpent::describe`], or `?` where the counters could not be read.
pub(super) fn describe_cpu(spent: Option<CpuSpent>, bytes: u64) -> String {
    spent.map_or_else(|| "?".to_owned(), |s| s.describe(bytes))
}

impl CpuSpent {
    fn core_secs(&self) -> f64 {
        (self.wall.as_secs_f64() * self.cores as f64).max(1e-9)
    }

    /// The share of the machine's cores that were busy with work.
    pub(super) fn busy_share(&self) -> f64 {
        self.machine_secs / self.core_secs()
    }

    /// The share of the machine's cores the hypervisor took.
    pub(super) fn steal_share(&self) -> f64 {
        self.steal_secs / self.core_secs()
    }

    /// Machine CPU seconds per GiB of `bytes` moved.
    pub(super) fn machine_per_gib(&self, bytes: u64) -> f64 {
        self.machine_secs * 1024.0 * MIB as f64 / bytes.max(1) as f64
    }

    /// The process's CPU seconds per GiB of `bytes` moved.
    pub(super) fn process_per_gib(&self, bytes: u64) -> Option<f64> {
        self.process_secs
            .map(|s| s * 1024.0 * MIB as f64 / bytes.max(1) as f64)
    }

    /// Per GiB of `bytes` moved: the machine's CPU, how busy its cores were, and the process's.
    pub(super) fn describe(&self, bytes: u64) -> String {
        let process = self
            .process_per_gib(bytes)
            .map_or_else(String::new, |s| format!("; its daemon {s:.2} s"));
        format!(
            "{:.2} s, cores {:.0}% busy, {:.0}% stolen by the host{process}",
            self.machine_per_gib(bytes),
            self.busy_share() * 100.0,
            self.steal_share() * 100.0
        )
    }

    /// The fastest the same work could move `bytes`, in MiB/s, at the CPU it cost per byte with
    /// every core busy throughout (none stolen): an upper bound, whatever the network or the
    /// code waits for.
    pub(super) fn rate_at_full_use(&self, bytes: u64) -> f64 {
        let core_secs = self.machine_secs / self.cores.max(1) as f64;
        bytes as f64 / MIB as f64 / core_secs.max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_count_busy_columns_steal_and_cores() {
        let stat = "cpu  100 5 50 1000 70 3 2 7 9 0\ncpu0 50 2 25 500 35 1 1 3 0 0\n\
                    cpu1 50 3 25 500 35 2 1 4 0 0\nintr 12345\nctxt 99\n";
        // user + nice + system + irq + softirq; idle, iowait and guest left out, steal apart.
        let want = MachineTicks {
            busy: 160,
            steal: 7,
            cores: 2,
        };
        assert_eq!(machine_ticks(stat), Some(want));
        assert_eq!(machine_ticks("cpu0 1 2 3 4\n"), None, "no total line");
        assert_eq!(machine_ticks("cpu  1 2 x 4\ncpu0 1 2 3 4\n"), None);
        assert_eq!(machine_ticks("cpu  1 2 3 4\n"), None, "no core lines");
    }

    #[test]
    fn process_ticks_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (cos fuse) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    731 269 0 0 20 0 9 0 123 456 789";
        assert_eq!(process_ticks(stat), Some(1000));
        assert_eq!(process_ticks("4242 (short) S 1 2"), None);
    }

    #[test]
    fn the_bound_is_the_rate_at_the_cost_per_byte_on_every_core() {
        // 1 GiB in 2 s on 2 cores, 3 CPU seconds busy: 75% busy; at 1.5 s on each of the two
        // cores the same work could take 1.5 s, so 1024 / 1.5 MiB/s at most.
        let spent = CpuSpent {
            wall: Duration::from_secs(2),
            machine_secs: 3.0,
            steal_secs: 0.4,
            cores: 2,
            process_secs: Some(1.0),
        };
        let gib = 1024 * MIB;
        assert!((spent.busy_share() - 0.75).abs() < 1e-9);
        assert!((spent.steal_share() - 0.1).abs() < 1e-9);
        assert!((spent.machine_per_gib(gib) - 3.0).abs() < 1e-9);
        assert_eq!(spent.process_per_gib(gib / 2), Some(2.0));
        assert!((spent.rate_at_full_use(gib) - 1024.0 / 1.5).abs() < 1e-6);
    }
}
