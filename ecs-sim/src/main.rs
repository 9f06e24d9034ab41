//! `ecs-sim`: a local Alibaba Cloud ECS OpenAPI endpoint (RPC, V1 and V3 signatures) for tests,
//! the local run and benchmarks, with STS and the instance metadata server's RAM-role
//! credentials. See `ecs-sim/README.md`.

mod accounts;
mod actions;
mod admin;
mod call;
mod encoding;
mod errors;
mod faults;
mod gateway;
mod iam;
mod metadata;
mod model;
mod oidc;
mod params;
mod regions;
mod response;
mod server;
mod sessions;
mod signature;
mod state;
mod sts;
mod tags;
mod tls;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use accounts::Account;
use model::InstanceSpec;
use state::{Sim, Timing};

/// Upper bound of the duration flags (one day), far from any clock arithmetic overflow.
const MAX_DURATION_MS: u64 = 86_400_000;

#[derive(Debug, Parser)]
#[command(
    name = "ecs-sim",
    version,
    about = "Local Alibaba Cloud ECS OpenAPI simulator"
)]
// A later occurrence of a single-value flag wins, so wrappers can append overrides to defaults.
#[command(args_override_self = true)]
struct Cli {
    /// Address to listen on; port 0 picks a free port. Loopback only, unless
    /// --allow-non-loopback.
    #[arg(long, env = "ECS_SIM_LISTEN", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Accept a non-loopback --listen address (e.g. 0.0.0.0:9100 in a Pod behind a Service).
    /// The simulator is a test double: its admin API (/_sim/) is unauthenticated, so whoever
    /// reaches the port can read the call log and change instances, faults and accounts.
    #[arg(long, env = "ECS_SIM_ALLOW_NON_LOOPBACK")]
    allow_non_loopback: bool,
    /// An accepted account, `AK:SECRET[:STS_TOKEN]`; repeatable.
    #[arg(long = "account", value_name = "AK:SECRET[:STS_TOKEN]", value_parser = Account::parse_flag)]
    accounts: Vec<Account>,
    /// JSON array of {"accessKeyId","accessKeySecret","securityToken"?,"accountId"?,"userName"?},
    /// or an object with "accounts", "roles", "oidcProviders" and "metadata" (see the README).
    #[arg(long, env = "ECS_SIM_ACCOUNTS_FILE")]
    accounts_file: Option<PathBuf>,
    /// JSON array of instance specs to start with (same form as POST /_sim/instances).
    #[arg(long, env = "ECS_SIM_SEED")]
    seed: Option<PathBuf>,
    /// Duration of each transitional status (Pending, Starting, Stopping), in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(..=MAX_DURATION_MS))]
    transition_ms: u64,
    /// How long a released instance stays visible to DescribeInstances, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(..=MAX_DURATION_MS))]
    release_linger_ms: u64,
    /// Largest accepted distance between a request's timestamp and the clock, in seconds.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(..=MAX_DURATION_MS / 1000))]
    max_skew_secs: u64,
    /// An extra region ID that calls may name (besides Alibaba Cloud's public regions and the
    /// regions of seeded instances); repeatable.
    #[arg(long = "region", value_name = "REGION_ID", value_parser = parse_region)]
    regions: Vec<String>,
    /// Writes the certificate (PEM) of the CA behind the listener's TLS to this file; clients of
    /// `https://` (the credentials libraries' STS calls) trust it.
    #[arg(long, env = "ECS_SIM_TLS_CA_OUT")]
    tls_ca_out: Option<PathBuf>,
    /// Test flag: temporary credentials (STS and metadata) live at most this many seconds,
    /// whatever DurationSeconds asked; their Expiration shows the shortened time.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    sts_max_lifetime_secs: Option<u64>,
    /// The instance RAM role the metadata server serves (overrides the accounts file's
    /// `metadata.roleArn`).
    #[arg(long, value_name = "ROLE_ARN", value_parser = parse_role_arn)]
    metadata_role_arn: Option<iam::RoleArn>,
    /// Hardened mode: metadata GETs without a session token are refused (401).
    #[arg(long)]
    metadata_require_token: bool,
}

fn parse_role_arn(value: &str) -> Result<iam::RoleArn, String> {
    iam::RoleArn::parse(value).ok_or_else(|| "expected acs:ram::<accountId>:role/<name>".to_owned())
}

fn parse_region(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("a region ID has lowercase letters, digits and '-' only".to_owned())
    }
}

fn load_seed(path: &PathBuf) -> Result<Vec<InstanceSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read seed file {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("seed file {} is not valid: {e}", path.display()))
}

async fn run(cli: Cli) -> Result<(), String> {
    let exposed = !cli.listen.ip().is_loopback();
    if exposed && !cli.allow_non_loopback {
        return Err(format!(
            "--listen {} is not a loopback address: the admin API (/_sim/) is unauthenticated; \
             add --allow-non-loopback to listen there anyway (test setups only)",
            cli.listen
        ));
    }
    let mut accounts = cli.accounts;
    let mut iam = iam::Iam::default();
    if let Some(path) = &cli.accounts_file {
        let config = iam::load_file(path)?;
        accounts.extend(config.accounts);
        iam = config.iam;
    }
    if accounts.is_empty() {
        accounts.push(Account::default_test_account());
    }
    if let Some(role) = cli.metadata_role_arn {
        iam.metadata_role = Some(role);
    }
    iam.metadata_requires_token |= cli.metadata_require_token;
    let timing = Timing {
        transition: Duration::from_millis(cli.transition_ms),
        release_linger: Duration::from_millis(cli.release_linger_ms),
        max_skew: Duration::from_secs(cli.max_skew_secs),
        sts_max_lifetime: cli.sts_max_lifetime_secs.map(Duration::from_secs),
    };
    let tls = tls::generate()?;
    if let Some(path) = &cli.tls_ca_out {
        std::fs::write(path, &tls.ca_pem)
            .map_err(|e| format!("cannot write --tls-ca-out {}: {e}", path.display()))?;
    }
    let sim = Arc::new(Sim::new(
        timing,
        accounts,
        iam,
        regions::Regions::new(cli.regions),
    ));
    if let Some(path) = &cli.seed {
        admin::seed(&sim, load_seed(path)?)?;
    }

    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if exposed {
        eprintln!(
            "ecs-sim: WARNING: listening on the non-loopback address {addr} \
             (--allow-non-loopback): this is a test double with an unauthenticated admin API \
             (/_sim/); anyone who reaches the port can read the call log and change instances, \
             faults and accounts"
        );
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ecs-sim listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
    match server::serve(listener, sim, acceptor).await {}
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: the simulator is meant to hold up on a single core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ecs-sim: {message}");
            ExitCode::FAILURE
        }
    }
}
