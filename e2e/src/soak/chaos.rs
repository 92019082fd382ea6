//! The chaos task: at seeded random moments it SIGKILLs a driver, a FUSE host, a FUSE daemon or
//! the simulator and starts it again as its supervisor would, or holds a cloud transition stuck for
//! a few seconds. Events are dealt from a shuffled deck, so every kind happens in every round. Each
//! kill is handed to the tracker, which times the recovery. The fault rules themselves (error
//! rate, throttling) are the simulator's; this module only adds and lifts `stuck`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Mutex;

use super::rig::Rig;
use super::tracker::{Plane, Tracker};
use crate::env::Driver;

/// The transitions a stuck window may hold: attach, detach, a snapshot, a file system's creation.
const STUCK_ACTIONS: &[&str] = &[
    "AttachDisks",
    "DetachDisks",
    "CreateSnapshot",
    "CreateCfsFileSystem",
];

#[derive(Debug, Clone, Copy)]
enum Event {
    KillDriver(Driver),
    KillFuseHost(Driver),
    KillDaemon(Driver),
    KillSim,
    Stuck,
}

fn deck() -> Vec<Event> {
    let mut deck: Vec<Event> = Driver::ALL.iter().map(|d| Event::KillDriver(*d)).collect();
    for fuse in [Driver::Cos, Driver::Goosefs] {
        deck.push(Event::KillFuseHost(fuse));
        deck.push(Event::KillDaemon(fuse));
    }
    deck.extend([Event::KillSim, Event::Stuck, Event::Stuck]);
    deck
}

#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    /// Pause between two events, drawn from this range (milliseconds).
    pub gap_ms: std::ops::Range<u64>,
    /// The simulator's fault rules without any `stuck` (what a stuck window returns to).
    pub base_rules: serde_json::Value,
}

/// Deals events until `stop` is set, then lifts any stuck rule. An error (a process that cannot
/// be started again) ends the soak.
pub async fn run_chaos(
    config: ChaosConfig,
    rig: Arc<Mutex<Rig>>,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut cards = Vec::new();
    loop {
        if !pause(&stop, Duration::from_millis(rng.u64(config.gap_ms.clone()))).await {
            break;
        }
        if cards.is_empty() {
            cards = deck();
            rng.shuffle(&mut cards);
        }
        let Some(event) = cards.pop() else {
            continue;
        };
        let mut rig = rig.lock().await;
        match event {
            Event::KillDriver(driver) => {
                let at = Instant::now();
                rig.kill_driver(driver).await?;
                tracker.killed(
                    &format!("{} (driver)", driver.binary()),
                    at,
                    &[driver],
                    None,
                );
                rig.wait_driver(driver).await?;
            }
            Event::KillFuseHost(driver) => {
                let at = Instant::now();
                rig.kill_fuse_host(driver).await?;
                tracker.killed(
                    &format!("FUSE host of {}", driver.binary()),
                    at,
                    &[driver],
                    Some(Plane::Node),
                );
            }
            Event::KillDaemon(driver) => {
                let at = Instant::now();
                if rig.kill_fuse_daemon(driver, |n| rng.usize(..n))?.is_some() {
                    tracker.killed(
                        &format!("FUSE daemon of {}", driver.binary()),
                        at,
                        &[driver],
                        Some(Plane::Node),
                    );
                }
            }
            Event::KillSim => {
                // Its counters die with it: keep them first.
                if let Ok(stats) = rig.sim_stats().await {
                    tracker.add_sim_stats(&stats);
                }
                let at = Instant::now();
                rig.kill_sim().await?;
                tracker.killed("tcloud-sim", at, &Driver::ALL, Some(Plane::Controller));
            }
            Event::Stuck => {
                let action = STUCK_ACTIONS[rng.usize(..STUCK_ACTIONS.len())];
                let mut rules = config
                    .base_rules
                    .as_array()
                    .cloned()
                    .context("the base fault rules are not a list")?;
                rules.push(serde_json::json!({"action": action, "stuck": true}));
                rig.put_faults(&serde_json::Value::Array(rules)).await?;
                tracker.stuck_window();
                // The rig stays locked: nothing restarts the simulator under the window.
                pause(&stop, Duration::from_millis(rng.u64(2000..6000))).await;
                rig.put_faults(&config.base_rules).await?;
            }
        }
    }
    // The last rules are put back once the simulator answers again (a kill of it may just have
    // restarted it): the audit reads through it.
    let mut tries = 0;
    loop {
        match rig.lock().await.put_faults(&config.base_rules).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 30 => {
                tries += 1;
                eprintln!(
                    "soak: the simulator does not take the fault rules yet ({e:#}); again in 1 s"
                );
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sleeps `duration`, waking early when `stop` is set; false if it was.
async fn pause(stop: &AtomicBool, duration: Duration) -> bool {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !stop.load(Ordering::SeqCst)
}
