//! `ledgerstack serve`: the CloudStack API on the embedded event log.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use api::app::{self, ClockChoice, ServerOptions};
use engine::time::Timestamp;
use tracing::info;

/// Arguments of `ledgerstack serve`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Where the event log, read models, master key and admin credentials live (created if
    /// missing).
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Address to answer on (`/client/api`). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// `system`, or `manual`: time moves only with the root-admin command `advanceClock`, so
    /// tests can run days of usage in seconds.
    #[arg(long, default_value = "system")]
    clock: String,
    /// First reading of the manual clock (RFC 3339, e.g. 2024-05-01T00:00:00Z).
    #[arg(long)]
    clock_start: Option<String>,
    /// Seed a demo zone, service offerings and disk offerings so a new user can deploy at once.
    #[arg(long)]
    demo: bool,
    /// Rebuild the read models from the log instead of resuming from their checkpoint.
    #[arg(long)]
    rebuild_read_models: bool,
    /// Latency of every simulated hypervisor command, in milliseconds (the simulator is the
    /// hypervisor every host added with `addHost` runs on).
    #[arg(long, default_value_t = 0)]
    simulator_latency_ms: u64,
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let clock = match (args.clock.as_str(), &args.clock_start) {
        ("system", None) => ClockChoice::System,
        ("system", Some(_)) => bail!("--clock-start needs --clock manual"),
        ("manual", start) => ClockChoice::Manual {
            start: start
                .as_deref()
                .map(|s| s.parse::<Timestamp>())
                .transpose()
                .context("--clock-start must be an RFC 3339 time such as 2024-05-01T00:00:00Z")?,
        },
        (other, _) => bail!("--clock must be system or manual, not {other:?}"),
    };
    let running = app::open(ServerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        clock,
        demo: args.demo,
        rebuild_read_models: args.rebuild_read_models,
        simulator: api::app::SimulatorConfig {
            latency: std::time::Duration::from_millis(args.simulator_latency_ms),
            ..Default::default()
        },
    })
    .await
    .with_context(|| format!("starting Ledgerstack on {}", args.data_dir.display()))?;
    let endpoint = format!("http://{}/client/api", running.addr);
    if let Some(admin) = &running.new_admin {
        println!("First start: created domain ROOT with the root admin account and user `admin`.");
        println!("  api key:    {}", admin.api_key);
        println!("  secret key: {}", admin.secret_key);
        println!("  password:   {}", admin.password);
        println!(
            "Kept in {} (mode 0600); `ledgerstack admin keys --data-dir {}` prints them again.",
            args.data_dir
                .join(api::bootstrap::CREDENTIALS_FILE)
                .display(),
            args.data_dir.display()
        );
    }
    if running.resumed_jobs > 0 {
        println!(
            "{} job(s) were waiting for the hypervisor when the server last stopped; their commands are issued again.",
            running.resumed_jobs
        );
    }
    if running.interrupted_jobs > 0 {
        println!(
            "{} job(s) were running when the server last stopped; they are marked failed.",
            running.interrupted_jobs
        );
    }
    // Listening for the signals before the ready line: a supervisor may send SIGTERM as soon as
    // it reads it, and an unhandled SIGTERM would kill the process without a clean stop.
    let shutdown = crate::shutdown::ShutdownSignals::listen()?;
    info!(%endpoint, data_dir = %args.data_dir.display(), "serving");
    println!(
        "Ledgerstack API on {endpoint} (data in {}). Ctrl-C stops.",
        args.data_dir.display()
    );
    let events = running
        .serve(shutdown.received())
        .await
        .context("serving the API")?;
    println!("Stopped. {events} events in the log.");
    Ok(())
}
