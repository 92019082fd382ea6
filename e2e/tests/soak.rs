//! The short soak CI runs (needs root, like every e2e test that mounts): one minute of concurrent
//! lifecycles of all four drivers under injected cloud errors, throttling, stuck transitions and
//! SIGKILLs of every process, with a fixed seed; then nothing may be left behind and every fsynced
//! byte must have read back. `e2e soak --minutes 30` is the long version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::soak::{SoakArgs, soak};

#[tokio::test(flavor = "multi_thread")]
async fn a_minute_of_chaos_leaks_nothing_and_loses_no_fsynced_byte() {
    let args = SoakArgs {
        minutes: 1.0,
        seed: Some(20260117),
        workers: 2,
        lifecycle_timeout_secs: 40,
        chaos_every_ms: 2000,
    };
    let summary = soak(&args, std::future::pending()).await.unwrap();
    println!("{summary}");
    let fig = &summary.figures;
    assert_eq!(summary.leaks.total(), 0, "leaks:\n{summary}");
    assert!(fig.lost.is_empty(), "lost fsynced bytes:\n{summary}");
    for driver in e2e::Driver::ALL {
        assert!(
            fig.completed.get(driver.binary()).copied().unwrap_or(0) > 0,
            "no {} lifecycle completed:\n{summary}",
            driver.binary()
        );
    }
    assert!(fig.files_verified > 0, "nothing was read back:\n{summary}");
    assert!(
        fig.faults.values().sum::<u64>() > 0,
        "no fault was injected:\n{summary}"
    );
    // The deck deals every kind of event once per round of eleven; a minute holds one or two.
    for kind in ["(driver)", "FUSE host", "tcloud-sim"] {
        assert!(
            fig.kills.keys().any(|k| k.contains(kind)),
            "no kill of a {kind}:\n{summary}"
        );
    }
    assert!(fig.stuck_windows > 0, "no stuck window:\n{summary}");
}
