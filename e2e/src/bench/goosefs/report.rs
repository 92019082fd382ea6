//! What `e2e bench goosefs` prints once measured: the table of figures, then every target with
//! the figure it is judged by, marked met or NOT met. Pure formatting: nothing here measures.

use super::figures::{Dataset, DatasetFigures, GoosefsBenchArgs, Kind, Preload, rate, show};
use crate::bench::cpu::describe_cpu;
use crate::bench::{MIB, PEAK_MEMORY_TARGET_MIB};

/// A cold read through the block cache, as a share of a cold read without it: a read-through
/// cache must not slow the first read down.
const COLD_TARGET_OF_PLAIN: f64 = 0.9;
/// Warm reads through the block cache, as a share of reading its block files straight from disk.
const WARM_TARGET_OF_CEILING: f64 = 0.85;
/// Warm reads through the block cache, times faster than the cold read.
const WARM_TARGET_TIMES_COLD: f64 = 10.0;
/// COS requests per small file read cold, with or without the cache: its data and what it is
/// (size, ETag) come back in one GET.
const SMALL_REQUESTS_PER_FILE: f64 = 1.2;
/// A preload, as a share of a cold read of the large file without the cache.
const PRELOAD_TARGET_OF_PLAIN_COLD: f64 = 1.0;

#[derive(Debug)]
pub(super) struct Verdict {
    pub(super) text: String,
    pub(super) met: bool,
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

pub(super) fn verdicts(
    args: &GoosefsBenchArgs,
    figures: &[(Dataset, DatasetFigures)],
    preload: &Preload,
) -> Vec<Verdict> {
    let mut out = Vec::new();
    for (dataset, f) in figures {
        let label = dataset.label(args);
        let bytes = dataset.bytes(args);
        let cold = rate(bytes, f.cached.cold);
        let plain = rate(bytes, f.plain.cold).max(1e-9);
        let of_plain = cold / plain;
        // The most the cache's cold read could reach at the CPU it cost, every core busy.
        let allows = f.cached.cold_cpu.map_or_else(String::new, |spent| {
            format!(
                "; its CPU per GiB allows at most {} here",
                percent(spent.rate_at_full_use(bytes) / plain)
            )
        });
        out.push(Verdict {
            text: format!(
                "{label}: cold via cache {cold:.0} MiB/s = {} of no-cache (target >= {}{allows})",
                percent(of_plain),
                percent(COLD_TARGET_OF_PLAIN)
            ),
            met: of_plain >= COLD_TARGET_OF_PLAIN,
        });
        let warm = rate(bytes, f.cached.warm);
        let of_ceiling = warm / rate(f.ceiling_bytes, f.ceiling).max(1e-9);
        out.push(Verdict {
            text: format!(
                "{label}: warm {warm:.0} MiB/s = {} of the cache disk's ceiling (target >= {})",
                percent(of_ceiling),
                percent(WARM_TARGET_OF_CEILING)
            ),
            met: of_ceiling >= WARM_TARGET_OF_CEILING,
        });
        let speedup = f.cached.cold.as_secs_f64() / f.cached.warm.as_secs_f64().max(1e-9);
        out.push(Verdict {
            text: format!(
                "{label}: warm {speedup:.1}x faster than cold (target >= {WARM_TARGET_TIMES_COLD}x)"
            ),
            met: speedup >= WARM_TARGET_TIMES_COLD,
        });
        if *dataset == Dataset::Small {
            for kind in [Kind::Cached, Kind::Plain] {
                let per_file = f.of(kind).cold_requests as f64 / args.files.max(1) as f64;
                out.push(Verdict {
                    text: format!(
                        "{label}, {}: {per_file:.2} COS requests per file read cold (target <= {SMALL_REQUESTS_PER_FILE})",
                        kind.label()
                    ),
                    met: per_file <= SMALL_REQUESTS_PER_FILE,
                });
            }
        }
        let versus = f.s3fs.warm.as_secs_f64() / f.cached.warm.as_secs_f64().max(1e-9);
        out.push(Verdict {
            text: format!("{label}: warm {versus:.2}x s3fs's cache warm (target > 1x)"),
            met: versus > 1.0,
        });
    }
    if let Some((_, big)) = figures.iter().find(|(d, _)| *d == Dataset::Big) {
        let bytes = Dataset::Big.bytes(args);
        let warmed = rate(bytes, preload.took);
        let of_plain = warmed / rate(bytes, big.plain.cold).max(1e-9);
        out.push(Verdict {
            text: format!(
                "preload {warmed:.0} MiB/s = {} of no-cache cold (target >= {})",
                percent(of_plain),
                percent(PRELOAD_TARGET_OF_PLAIN_COLD)
            ),
            met: of_plain >= PRELOAD_TARGET_OF_PLAIN_COLD,
        });
    }
    let peak = preload.peak_kib.map(|k| k as f64 / 1024.0);
    out.push(Verdict {
        text: format!(
            "cos-fuse memory under {PEAK_MEMORY_TARGET_MIB} MiB while warming {} MiB (VmHWM {})",
            args.size_mib,
            peak.map_or_else(|| "?".to_owned(), |p| format!("{p:.1} MiB"))
        ),
        met: peak.is_some_and(|p| p < PEAK_MEMORY_TARGET_MIB),
    });
    out
}

pub(super) fn report(
    args: &GoosefsBenchArgs,
    figures: &[(Dataset, DatasetFigures)],
    preload: &Preload,
) {
    for (dataset, f) in figures {
        let bytes = dataset.bytes(args);
        println!("\n== {} ==", dataset.label(args));
        println!(
            "  {:<30} {:>26} {:>14} {:>26}",
            "mount", "cold", "cold requests", "warm"
        );
        for kind in [Kind::Cached, Kind::Plain, Kind::S3fs] {
            let cw = f.of(kind);
            println!(
                "  {:<30} {:>26} {:>14} {:>26}",
                kind.label(),
                show(bytes, cw.cold),
                cw.cold_requests,
                show(bytes, cw.warm)
            );
        }
        println!("  CPU through the cold reads (the whole machine; per GiB read):");
        for kind in [Kind::Cached, Kind::Plain, Kind::S3fs] {
            let figures = describe_cpu(f.of(kind).cold_cpu, bytes);
            println!("    {:<28} {figures}", kind.label());
        }
        println!(
            "  {:<30} {:>26} {:>26}",
            "ceiling: cache disk directly",
            "-",
            show(f.ceiling_bytes, f.ceiling)
        );
        println!(
            "    (ceiling read {:.1} MiB of block files, best with {} thread(s))",
            f.ceiling_bytes as f64 / MIB as f64,
            f.ceiling_readers
        );
    }
    println!(
        "\n== warming {} MiB with --preload ==\n  took {}, {:.1} MiB cached; cos-fuse VmHWM {}",
        args.size_mib,
        show(args.size_mib * MIB, preload.took),
        preload.cached_bytes as f64 / MIB as f64,
        preload.peak_kib.map_or_else(
            || "?".to_owned(),
            |k| format!("{:.1} MiB", k as f64 / 1024.0)
        )
    );
    let verdicts = verdicts(args, figures, preload);
    println!("\ntargets:");
    for v in &verdicts {
        println!("  {:<8} {}", if v.met { "met" } else { "NOT met" }, v.text);
    }
    println!(
        "targets met: {} of {}",
        verdicts.iter().filter(|v| v.met).count(),
        verdicts.len()
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::bench::SharedBenchArgs;
    use crate::bench::cpu::CpuSpent;
    use crate::bench::goosefs::figures::ColdWarm;

    fn cw(cold_ms: u64, warm_ms: u64) -> ColdWarm {
        ColdWarm {
            cold: Duration::from_millis(cold_ms),
            cold_cpu: None,
            cold_requests: 0,
            warm: Duration::from_millis(warm_ms),
        }
    }

    #[test]
    fn verdicts_put_each_figure_beside_its_target() {
        let args = GoosefsBenchArgs {
            size_mib: 100,
            files: 10,
            shared: SharedBenchArgs {
                latency_ms: 20,
                bandwidth_mbps: 400.0,
                s3fs: PathBuf::from("s3fs"),
                timeout_secs: 1,
            },
        };
        let f = DatasetFigures {
            // Cold 100 MiB/s through the cache, 105 without: 95%.
            cached: cw(1000, 100),
            plain: cw(952, 1000),
            s3fs: cw(2000, 101),
            ceiling: Duration::from_millis(50),
            ceiling_bytes: 100 * MIB,
            ceiling_readers: 1,
        };
        let preload = Preload {
            took: Duration::from_secs(1),
            peak_kib: Some(255 * 1024),
            cached_bytes: 100 * MIB,
        };
        let got = verdicts(&args, &[(Dataset::Big, f)], &preload);
        let met: Vec<bool> = got.iter().map(|v| v.met).collect();
        assert_eq!(met, [true, false, true, true, false, true], "{got:?}");
        assert!(
            got[0].text.contains("= 95% of no-cache (target >= 90%)"),
            "{got:?}"
        );
        assert!(
            got[1]
                .text
                .contains("= 50% of the cache disk's ceiling (target >= 85%)"),
            "{got:?}"
        );
        // 100 MiB in 1 s against 105 MiB/s without the cache.
        let want = "preload 100 MiB/s = 95% of no-cache cold (target >= 100%)";
        assert!(got[4].text.contains(want), "{got:?}");

        // 2 CPU seconds on 2 cores for 100 MiB: at most 100 MiB/s, against 105 without the cache.
        let costly = DatasetFigures {
            cached: ColdWarm {
                cold_cpu: Some(CpuSpent {
                    wall: Duration::from_secs(1),
                    machine_secs: 2.0,
                    steal_secs: 0.0,
                    cores: 2,
                    process_secs: None,
                }),
                ..f.cached
            },
            ..f
        };
        let got = verdicts(&args, &[(Dataset::Big, costly)], &preload);
        assert!(
            got[0]
                .text
                .contains("(target >= 90%; its CPU per GiB allows at most 95% here)"),
            "{got:?}"
        );

        // Small files: requests per file read cold, per cos-fuse mount.
        let small = DatasetFigures {
            cached: ColdWarm {
                cold_requests: 12,
                ..f.cached
            },
            plain: ColdWarm {
                cold_requests: 23,
                ..f.plain
            },
            ..f
        };
        let got = verdicts(&args, &[(Dataset::Small, small)], &preload);
        let requests: Vec<&Verdict> = got.iter().filter(|v| v.text.contains("requests")).collect();
        assert_eq!(requests.len(), 2, "{got:?}");
        assert!(requests[0].met, "{got:?}");
        assert!(
            requests[0]
                .text
                .contains("1.20 COS requests per file read cold (target <= 1.2)")
        );
        assert!(!requests[1].met, "{got:?}");
        assert!(requests[1].text.contains("no cache"), "{got:?}");
    }
}
