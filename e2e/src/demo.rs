//! `e2e demo`: the README's main job. Starts the simulator and each driver against it and shows,
//! step by step with timings, what each one does over its CSI socket.

use std::time::Instant;

use csi_proto::v1 as pb;

use crate::env::{Driver, Env, EnvOptions};

/// Prints one step and how long it took.
pub fn step(label: &str, start: Instant, detail: &str) {
    println!(
        "  {:<34} {:>8.1} ms  {detail}",
        label,
        start.elapsed().as_secs_f64() * 1000.0
    );
}

fn describe_caps(caps: &[pb::PluginCapability]) -> String {
    use pb::plugin_capability::Type;
    let names: Vec<String> = caps
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(Type::Service(s)) => pb::plugin_capability::service::Type::try_from(s.r#type)
                .ok()
                .map(|t| t.as_str_name().to_owned()),
            Some(Type::VolumeExpansion(e)) => {
                pb::plugin_capability::volume_expansion::Type::try_from(e.r#type)
                    .ok()
                    .map(|t| format!("EXPANSION_{}", t.as_str_name()))
            }
            None => None,
        })
        .collect();
    if names.is_empty() {
        "(identity only so far)".to_owned()
    } else {
        names.join(", ")
    }
}

/// Identity round trip for one driver.
async fn identity(driver: Driver) -> anyhow::Result<()> {
    println!("{} ({})", driver.binary(), driver.csi_name());
    let start = Instant::now();
    let mut env = Env::start(driver, EnvOptions::default()).await?;
    step(
        "start simulator + driver",
        start,
        &format!("socket {}", env.socket.display()),
    );
    let mut client = env.client().await?;
    let start = Instant::now();
    let info = client
        .identity
        .get_plugin_info(pb::GetPluginInfoRequest {})
        .await?
        .into_inner();
    step(
        "GetPluginInfo",
        start,
        &format!("{} {}", info.name, info.vendor_version),
    );
    let start = Instant::now();
    let caps = client
        .identity
        .get_plugin_capabilities(pb::GetPluginCapabilitiesRequest {})
        .await?
        .into_inner();
    step(
        "GetPluginCapabilities",
        start,
        &describe_caps(&caps.capabilities),
    );
    let start = Instant::now();
    let probe = client
        .identity
        .probe(pb::ProbeRequest {})
        .await?
        .into_inner();
    step(
        "Probe",
        start,
        &format!("ready={}", probe.ready.unwrap_or(false)),
    );
    let start = Instant::now();
    env.stop().await?;
    step(
        "stop and clean up",
        start,
        "no socket, mount, loop device or file left",
    );
    Ok(())
}

pub async fn run() -> anyhow::Result<()> {
    println!("Tencent Cloud CSI bundle against tcloud-sim (no cloud account needed)\n");
    for driver in Driver::ALL {
        identity(driver).await?;
        println!();
    }
    println!("demo finished: all four drivers answered over their CSI sockets");
    Ok(())
}
