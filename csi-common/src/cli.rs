//! The flags every driver binary accepts, their validation, logging setup, and the start-up steps
//! every driver shares (cloud client construction). Parsing only: no RPC logic lives here.

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};

use crate::csi::{Endpoint, ServeError};
use tcloud::credentials::{COMMON_KEY_NAMES, KeyNames};
use tcloud::metadata::{DEFAULT_METADATA_ENDPOINT, MetadataError};
use tcloud::{CloudClient, CloudConfig, CredentialSource, CredentialsError, MetadataClient};

/// Which CSI services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Controller,
    Node,
    All,
}

impl Mode {
    pub fn controller(self) -> bool {
        matches!(self, Mode::Controller | Mode::All)
    }

    pub fn node(self) -> bool {
        matches!(self, Mode::Node | Mode::All)
    }
}

/// What a StorageClass key that no driver (ours or Tencent's) ever knew gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum UnknownParameters {
    /// INVALID_ARGUMENT naming the key: a typo never silently changes what is provisioned.
    #[default]
    Refuse,
    /// A warning naming the key, and the key is ignored (as Tencent's drivers did): for a
    /// migration, until the StorageClasses are cleaned up.
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags shared by `csi-cbs`, `csi-cfs`, `csi-cos` and `csi-goosefs`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// CSI endpoint: unix:///path/to/csi.sock or tcp://host:port.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,

    /// This node's ID (the CVM instance ID, e.g. ins-abc123); required when the node service runs.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Which CSI services to run.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    pub mode: Mode,

    /// The kubelet's root directory: the node service mounts and unmounts only under it (and
    /// under its own mounts directory); a staging or target path elsewhere is INVALID_ARGUMENT.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,

    /// A kubeconfig file for the Kubernetes API, which a node plugin reads when its node ID is a
    /// Kubernetes node name (the Node's providerID names the instance); the pod's service account
    /// otherwise.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// The CSI driver name; defaults to the name Tencent's drivers use, so existing PVs keep working.
    #[arg(long)]
    pub driver_name: Option<String>,

    /// Cloud region, e.g. ap-guangzhou; read from instance metadata when not given.
    #[arg(long, env = "TENCENTCLOUD_REGION")]
    pub region: Option<String>,

    /// TencentCloud API endpoint; `{service}` and `{region}` are substituted. Inside a VPC use
    /// https://{service}.internal.tencentcloudapi.com.
    #[arg(long, env = "TENCENTCLOUD_API_ENDPOINT", default_value = tcloud::client::DEFAULT_ENDPOINT)]
    pub cloud_endpoint: String,

    /// Calls per second per cloud API action this process sends at most (0: unpaced); keep it under
    /// the account's limit (CBS: 20/s per action) so calls wait here instead of being throttled.
    #[arg(long, env = "TENCENTCLOUD_API_RATE_LIMIT", default_value_t = tcloud::client::DEFAULT_RATE_LIMIT)]
    pub api_rate_limit: f64,

    /// Instance metadata service root.
    #[arg(long, default_value = DEFAULT_METADATA_ENDPOINT)]
    pub metadata_endpoint: String,

    /// Directory of a mounted secret holding the API keys (one file per key, e.g. SecretId and
    /// SecretKey); re-read when it changes. Without it: environment, then the CVM role.
    #[arg(long, env = "TENCENTCLOUD_CREDENTIALS_DIR")]
    pub credentials_dir: Option<PathBuf>,

    /// A StorageClass key no driver ever knew: `refuse` (INVALID_ARGUMENT naming it) or `warn`
    /// (log it and go on, as Tencent's drivers did; for a migration).
    #[arg(long, env = "UNKNOWN_PARAMETERS", value_enum, default_value_t = UnknownParameters::Refuse)]
    pub unknown_parameters: UnknownParameters,

    /// Serve Prometheus metrics at http://ADDRESS/metrics (e.g. 0.0.0.0:9809); off when empty.
    #[arg(long, env = "METRICS_ADDRESS")]
    pub metrics_address: Option<String>,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail: -v debug, -vv trace. RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("--mode {mode:?} runs the node service, which needs --node-id (or NODE_ID)")]
    MissingNodeId { mode: Mode },
    #[error("--node-id must not contain whitespace, got {0:?}")]
    BadNodeId(String),
    #[error("cloud credentials")]
    Credentials(#[from] CredentialsError),
    #[error("--region not given and instance metadata could not tell it")]
    Region(#[source] MetadataError),
    #[error("--node-id not given and instance metadata could not tell this instance's ID")]
    NodeIdFromMetadata(#[source] MetadataError),
    #[error(
        "--node-id {node:?} is a Kubernetes node name, and its Node could not tell the instance"
    )]
    NodeFromCluster {
        node: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot build the HTTP client")]
    Http(#[from] reqwest::Error),
    #[error("invalid --cloud-endpoint {endpoint:?}: {detail}")]
    CloudEndpoint { endpoint: String, detail: String },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot serve metrics on {address}")]
    Metrics {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl CommonArgs {
    /// Checks what clap cannot: combinations of flags.
    pub fn validate(&self) -> Result<(), StartupError> {
        if self.mode.node() {
            // An empty NODE_ID is what a manifest with an unset variable gives: call it missing.
            match self.node_id.as_deref().filter(|id| !id.is_empty()) {
                None => return Err(StartupError::MissingNodeId { mode: self.mode }),
                Some(id) if id.chars().any(char::is_whitespace) => {
                    return Err(StartupError::BadNodeId(id.to_owned()));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn driver_name_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.driver_name.as_deref().unwrap_or(default)
    }

    pub fn metadata_client(&self) -> Result<MetadataClient, StartupError> {
        Ok(MetadataClient::new(&self.metadata_endpoint)?)
    }

    /// The region flag, else the instance's region from metadata.
    pub async fn resolve_region(&self) -> Result<String, StartupError> {
        if let Some(region) = &self.region {
            return Ok(region.clone());
        }
        self.metadata_client()?
            .region()
            .await
            .map_err(StartupError::Region)
    }

    /// The process's metrics registry, served on `--metrics-address` when one is given.
    pub async fn start_metrics(
        &self,
    ) -> Result<std::sync::Arc<crate::metrics::Metrics>, StartupError> {
        let metrics = crate::metrics::Metrics::new();
        if let Some(address) = self.metrics_address.as_deref().filter(|a| !a.is_empty()) {
            crate::metrics::serve_metrics(address, std::sync::Arc::clone(&metrics))
                .await
                .map_err(|source| StartupError::Metrics {
                    address: address.to_owned(),
                    source,
                })?;
        }
        Ok(metrics)
    }

    /// The credentials chain: `--credentials-dir`, then the environment (`driver_names` first,
    /// then the common names), then the CVM role.
    pub fn credential_source(
        &self,
        driver_names: &[KeyNames],
    ) -> Result<CredentialSource, StartupError> {
        let mut names = driver_names.to_vec();
        names.extend_from_slice(COMMON_KEY_NAMES);
        Ok(CredentialSource::discover(
            self.credentials_dir.as_deref(),
            &names,
            |name| std::env::var(name).ok(),
            self.metadata_client()?,
        )?)
    }

    /// The cloud client with the credentials chain. `driver_names` go before the common names, so
    /// a driver's old variables (`TENCENTCLOUD_CBS_API_SECRET_ID`, ...) win.
    pub async fn cloud_client(
        &self,
        driver_names: &[KeyNames],
    ) -> Result<CloudClient, StartupError> {
        let credentials = self.credential_source(driver_names)?;
        let region = self.resolve_region().await?;
        let mut config = CloudConfig::new(&self.cloud_endpoint, &region);
        config.rate_limit_per_action = self.api_rate_limit;
        let client = CloudClient::new(config, credentials)?;
        // A malformed template fails every call the same way; say so at start-up instead.
        client
            .endpoint_for(tcloud::cvm::CVM)
            .map_err(|detail| StartupError::CloudEndpoint {
                endpoint: self.cloud_endpoint.clone(),
                detail,
            })?;
        Ok(client)
    }
}

/// Installs the global tracing subscriber: text or JSON lines on stderr.
pub fn init_logging(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// The body of every driver's `main`: logging (then `notes`, warnings about the arguments), a
/// runtime, the driver's `run`, and a one-line error with its cause chain and exit status 1 on
/// failure (never a panic on bad input).
pub fn run_main<F, E>(
    program: &str,
    common: &CommonArgs,
    notes: &[String],
    run: impl FnOnce() -> F,
) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    init_logging(common.log_format, common.verbose);
    for note in notes {
        tracing::warn!("{note}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{program}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %crate::csi::error_chain(&e), "exiting");
            eprintln!("{program}: {}", crate::csi::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn parse(args: &[&str]) -> Result<CommonArgs, String> {
        let mut argv = vec!["driver"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|cli| cli.common)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn node_mode_needs_a_node_id() {
        let args = parse(&["--mode", "node", "--endpoint", "unix:///tmp/x.sock"]).unwrap();
        let err = args.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "--mode Node runs the node service, which needs --node-id (or NODE_ID)"
        );
        let args = parse(&["--mode", "controller"]).unwrap();
        args.validate().unwrap();
        let args = parse(&["--node-id", "ins 1"]).unwrap();
        assert!(
            args.validate()
                .unwrap_err()
                .to_string()
                .contains("whitespace")
        );
    }

    #[test]
    fn malformed_endpoint_is_rejected_by_the_parser() {
        let err = parse(&["--endpoint", "csi.sock"]).unwrap_err();
        assert!(
            err.contains("invalid endpoint \"csi.sock\": unknown scheme"),
            "{err}"
        );
    }
}
