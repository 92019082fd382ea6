//! The report of `e2e bench cos`: one table per profile with every workload's figure for
//! cos-fuse, s3fs and the ceiling, the ratios between them, each daemon's peak memory, and the
//! issue's targets for that profile, each marked met or NOT met. It only judges and prints the
//! figures it is given; it must not measure anything.

use std::time::Duration;

use super::args::CosBenchArgs;
use super::ceiling::Ceilings;
use super::contenders::Figures;
use super::workloads::Workload;
use crate::bench::bucket::{Network, Profile};
use crate::bench::{MIB, PEAK_MEMORY_TARGET_MIB};

/// How a figure reads: a data rate over `bytes`, a time, or a rate of `count` files.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Bytes(u64),
    Seconds,
    Files(usize),
}

/// One workload's figures: cos-fuse's, s3fs's and the ceiling's, and how to show them.
#[derive(Debug)]
struct Row {
    workload: Workload,
    label: String,
    unit: Unit,
    cos: Duration,
    s3fs: Duration,
    ceiling: Option<Duration>,
}

impl Row {
    fn show(&self, took: Duration) -> String {
        let secs = took.as_secs_f64().max(1e-9);
        match self.unit {
            Unit::Bytes(bytes) => format!("{:.1} MiB/s", bytes as f64 / MIB as f64 / secs),
            Unit::Seconds => format!("{secs:.2} s"),
            Unit::Files(n) => format!("{:.0} files/s", n as f64 / secs),
        }
    }

    /// How many times faster cos-fuse did the same work than s3fs.
    fn versus_s3fs(&self) -> f64 {
        self.s3fs.as_secs_f64() / self.cos.as_secs_f64().max(1e-9)
    }

    /// cos-fuse's speed as a share of the ceiling's.
    fn of_ceiling(&self) -> Option<f64> {
        self.ceiling
            .map(|c| c.as_secs_f64() / self.cos.as_secs_f64().max(1e-9))
    }
}

fn rows(args: &CosBenchArgs, cos: &Figures, s3fs: &Figures, ceil: &Ceilings) -> Vec<Row> {
    let bytes = Unit::Bytes(args.size_mib * MIB);
    let (size, n, objects, files) = (args.size_mib, args.readers, args.objects, args.files);
    [
        (
            Workload::Write,
            format!("sequential write, {size} MiB"),
            bytes,
            Some(ceil.write),
        ),
        (
            Workload::Read,
            format!("sequential read, {size} MiB"),
            bytes,
            Some(ceil.read),
        ),
        (
            Workload::ParallelRead,
            format!("{n} readers, one file at {n} offsets"),
            bytes,
            Some(ceil.read),
        ),
        (
            Workload::Readdir,
            format!("list {objects} objects (readdir)"),
            Unit::Seconds,
            Some(ceil.list),
        ),
        (
            Workload::ReaddirStat,
            format!("list {objects} + lstat each (ls -l)"),
            Unit::Seconds,
            None,
        ),
        (
            Workload::Creates,
            format!("create {files} x 4 KiB files"),
            Unit::Files(files),
            Some(ceil.creates),
        ),
    ]
    .into_iter()
    .map(|(workload, label, unit, ceiling)| Row {
        workload,
        label,
        unit,
        cos: cos.took(workload),
        s3fs: s3fs.took(workload),
        ceiling,
    })
    .collect()
}

/// One target and whether this run met it.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) text: String,
    pub(super) met: bool,
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "?".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// The targets for one profile: under the COS profile, sequential write and read at
/// least 2x s3fs and the read at least 80% of the ceiling; on loopback, no workload slower than
/// s3fs; under both, cos-fuse's peak memory under 256 MiB.
fn targets(profile: &Profile, rows: &[Row], cos_peak_kib: Option<u64>) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut versus = |row: &Row, times: f64, wording: &str| {
        targets.push(Target {
            text: format!("{}: {wording} (is {:.2}x)", row.label, row.versus_s3fs()),
            met: row.versus_s3fs() >= times,
        });
    };
    for row in rows {
        match (profile.network, row.workload) {
            (Network::Cos, Workload::Write | Workload::Read) => {
                versus(row, 2.0, "at least 2x s3fs")
            }
            (Network::Cos, _) => {}
            (Network::Loopback, _) => versus(row, 1.0, "not slower than s3fs"),
        }
    }
    if profile.network == Network::Cos {
        for row in rows.iter().filter(|r| r.workload == Workload::Read) {
            let share = row.of_ceiling().unwrap_or(0.0);
            targets.push(Target {
                text: format!(
                    "{}: at least 80% of the raw ceiling (is {:.0}%)",
                    row.label,
                    share * 100.0
                ),
                met: share >= 0.8,
            });
        }
    }
    let peak = cos_peak_kib.map(|k| k as f64 / 1024.0);
    targets.push(Target {
        text: format!(
            "cos-fuse peak memory under {PEAK_MEMORY_TARGET_MIB} MiB with default options (is {})",
            mib(cos_peak_kib)
        ),
        met: peak.is_some_and(|p| p < PEAK_MEMORY_TARGET_MIB),
    });
    targets
}

/// Prints one profile's table and returns its targets.
pub(super) fn report(
    args: &CosBenchArgs,
    profile: &Profile,
    cos: &Figures,
    s3fs: &Figures,
    ceil: &Ceilings,
) -> Vec<Target> {
    let rows = rows(args, cos, s3fs, ceil);
    println!("\n== {} ==", profile.describe());
    println!(
        "  {:<38} {:>14} {:>14} {:>14} {:>9} {:>10}",
        "workload", "cos-fuse", "s3fs", "ceiling", "vs s3fs", "of ceiling"
    );
    for row in &rows {
        println!(
            "  {:<38} {:>14} {:>14} {:>14} {:>8.2}x {:>10}",
            row.label,
            row.show(row.cos),
            row.show(row.s3fs),
            row.ceiling.map_or_else(|| "-".to_owned(), |c| row.show(c)),
            row.versus_s3fs(),
            row.of_ceiling()
                .map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
        );
    }
    println!(
        "  {:<38} {:>14} {:>14} {:>14}",
        "peak resident memory (VmHWM)",
        mib(cos.peak_rss_kib),
        mib(s3fs.peak_rss_kib),
        "-"
    );
    for (who, figures) in [("cos-fuse", cos), ("s3fs", s3fs)] {
        let steps: Vec<String> = figures
            .peak_after
            .iter()
            .map(|(step, kib)| format!("{step} {}", mib(*kib)))
            .collect();
        println!("    {who} VmHWM after each step: {}", steps.join(", "));
    }
    let mut targets = targets(profile, &rows, cos.peak_rss_kib);
    println!("  targets:");
    for target in &mut targets {
        target.text = format!("{}: {}", profile.name, target.text);
        println!(
            "    {:<8} {}",
            if target.met { "met" } else { "NOT met" },
            target.text
        );
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(network: Network) -> Profile {
        Profile {
            name: "p",
            network,
            latency_ms: 20,
            bandwidth_mbps: 400.0,
        }
    }

    fn row(workload: Workload, cos_ms: u64, s3fs_ms: u64, ceiling_ms: Option<u64>) -> Row {
        Row {
            workload,
            label: format!("{workload:?}"),
            unit: Unit::Seconds,
            cos: Duration::from_millis(cos_ms),
            s3fs: Duration::from_millis(s3fs_ms),
            ceiling: ceiling_ms.map(Duration::from_millis),
        }
    }

    fn verdicts(network: Network, rows: &[Row], peak_kib: Option<u64>) -> Vec<(String, bool)> {
        targets(&profile(network), rows, peak_kib)
            .into_iter()
            .map(|t| (t.text, t.met))
            .collect()
    }

    #[test]
    fn cos_targets_need_twice_s3fs_and_most_of_the_ceiling() {
        let rows = [
            row(Workload::Write, 100, 200, Some(50)),
            row(Workload::Read, 100, 199, Some(81)),
            row(Workload::Creates, 100, 10, None),
        ];
        let got = verdicts(Network::Cos, &rows, Some(255 * 1024));
        let met: Vec<bool> = got.iter().map(|(_, met)| *met).collect();
        // write 2.00x met, read 1.99x not, creates judged only on loopback, read at 81% of the
        // ceiling met, memory met.
        assert_eq!(met, [true, false, true, true], "{got:?}");
        assert!(got[2].0.contains("81%"), "{got:?}");
    }

    #[test]
    fn loopback_targets_judge_every_row_and_memory() {
        let rows = [
            row(Workload::Write, 100, 100, None),
            row(Workload::Readdir, 101, 100, None),
        ];
        let got = verdicts(Network::Loopback, &rows, Some(256 * 1024));
        let met: Vec<bool> = got.iter().map(|(_, met)| *met).collect();
        assert_eq!(met, [true, false, false], "{got:?}");
        assert!(!verdicts(Network::Loopback, &[], None)[0].1);
    }

    #[test]
    fn rows_show_rates_times_and_ratios() {
        let mut r = row(Workload::Read, 500, 1000, Some(400));
        r.unit = Unit::Bytes(100 * MIB);
        assert_eq!(r.show(r.cos), "200.0 MiB/s");
        assert!((r.versus_s3fs() - 2.0).abs() < 1e-9);
        assert_eq!(r.of_ceiling().map(|x| (x * 100.0).round()), Some(80.0));
        r.unit = Unit::Files(50);
        assert_eq!(r.show(r.cos), "100 files/s");
    }
}
