//! `ledgerstack call` and `ledgerstack sign`: a CloudStack client on the command line, so an
//! operator needs no other tool. Arguments and output only; the client is the `client` crate.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use client::config::{self, Overrides};
use client::{Client, ClientError, Method, Outcome};

/// Exit status for a CloudStack error answer or a failed async job (the code and text go to
/// stderr).
const EXIT_CLOUDSTACK_ERROR: i32 = 1;
/// Exit status for unusable arguments or configuration (clap uses 2 for its own errors too).
const EXIT_USAGE: i32 = 2;
/// Exit status when the server could not be reached or did not answer in CloudStack JSON (or
/// the answer could not be written out).
const EXIT_TRANSPORT: i32 = 3;
/// Exit status when an async job was still pending at `--timeout`.
const EXIT_JOB_TIMEOUT: i32 = 4;

/// The client subcommands.
#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Call a CloudStack API command and print the answer (async jobs are waited for).
    ///
    /// Examples: `call listZones`, `call deployVirtualMachine zoneid=Z templateid=T
    /// serviceofferingid=S`. Exit status: 0 done, 1 CloudStack error, 2 bad arguments or
    /// configuration, 3 server unreachable or not CloudStack, 4 job still pending at --timeout.
    Call(CallArgs),
    /// Print a signed GET URL of a CloudStack API command (for curl, a browser, a script).
    Sign(SignArgs),
}

/// Where to send requests and with which keys. Per setting, first found wins: flag,
/// --from-data-dir, environment, config file; the endpoint defaults to
/// http://127.0.0.1:8080/client/api.
#[derive(Args)]
pub(crate) struct ConnectionArgs {
    /// TOML config file with `endpoint`, `api_key`, `secret_key` [env: LEDGERSTACK_CONFIG;
    /// default: ~/.config/ledgerstack/client.toml if it exists].
    #[arg(long)]
    config: Option<PathBuf>,
    /// API endpoint, http://HOST:PORT/client/api [env: LEDGERSTACK_ENDPOINT].
    #[arg(long)]
    endpoint: Option<String>,
    /// API key [env: LEDGERSTACK_API_KEY].
    #[arg(long)]
    api_key: Option<String>,
    /// Secret key [env: LEDGERSTACK_SECRET_KEY].
    #[arg(long)]
    secret_key: Option<String>,
    /// Use the root admin's keys from this data directory's admin-credentials.json.
    #[arg(long, value_name = "DIR")]
    from_data_dir: Option<PathBuf>,
}

/// `ledgerstack call`.
#[derive(Args)]
pub(crate) struct CallArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print the response (or the finished job's result) as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Table columns, comma-separated (default: id, name, state and the like).
    #[arg(long, value_delimiter = ',', conflicts_with = "json")]
    columns: Option<Vec<String>>,
    /// Print an async command's job id instead of waiting for the job.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for an async job before giving up (exit status 4).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// Send the parameters as a POST form body (for long values such as user data).
    #[arg(long)]
    post: bool,
    /// The API command, e.g. listVirtualMachines.
    command: String,
    /// Parameters as name=value (split at the first `=`; quote values with spaces); map
    /// parameters as tags[0].key=env tags[0].value=prod.
    #[arg(value_name = "NAME=VALUE")]
    params: Vec<String>,
}

/// `ledgerstack sign`.
#[derive(Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Make the URL expire after this many seconds (adds signatureVersion=3 and expires).
    #[arg(long, value_name = "SECONDS")]
    expires: Option<u32>,
    /// The API command.
    command: String,
    /// Parameters as name=value.
    #[arg(value_name = "NAME=VALUE")]
    params: Vec<String>,
}

/// Runs a client subcommand; failures print their reason and exit with the status documented
/// on [`ClientCommand::Call`].
pub(crate) async fn run(command: ClientCommand) -> Result<()> {
    let outcome = match command {
        ClientCommand::Call(args) => call(args).await,
        ClientCommand::Sign(args) => sign(args),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err((status, message)) => {
            std::io::stdout().flush()?;
            eprintln!("ledgerstack: {message}");
            std::process::exit(status);
        }
    }
}

/// A failure: its exit status and message.
type Failure = (i32, String);

async fn call(args: CallArgs) -> Result<(), Failure> {
    let client = connect(
        &args.connection,
        if args.post { Method::Post } else { Method::Get },
    )?;
    let params = parse_params(&args.params)?;
    let wait = (!args.no_wait).then(|| Duration::from_secs(args.timeout));
    let outcome = client
        .call(&args.command, &params, wait)
        .await
        .map_err(failure)?;
    if let Outcome::Job { job_id, .. } = &outcome {
        eprintln!("job {job_id} done");
    }
    let value = outcome.value();
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        )
    } else {
        client::output::render(value, args.columns.as_deref())
    };
    emit(&text)
}

fn sign(args: SignArgs) -> Result<(), Failure> {
    let client = connect(&args.connection, Method::Get)?;
    let params = parse_params(&args.params)?;
    let expires = args.expires.map(client::expires_in);
    let url = client
        .signed_url(&args.command, &params, expires)
        .map_err(failure)?;
    emit(&format!("{url}\n"))
}

/// Writes `text` to stdout. A closed pipe (`| head`) ends the output quietly instead of
/// panicking as `print!` would.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err((EXIT_TRANSPORT, format!("writing the output: {e}"))),
    }
}

fn connect(args: &ConnectionArgs, method: Method) -> Result<Client, Failure> {
    let overrides = Overrides {
        config: args.config.clone(),
        endpoint: args.endpoint.clone(),
        api_key: args.api_key.clone(),
        secret_key: args.secret_key.clone(),
        data_dir: args.from_data_dir.clone(),
    };
    let settings = config::resolve(&overrides, &|name| std::env::var(name).ok())
        .map_err(|e| (EXIT_USAGE, e.to_string()))?;
    Client::new(&settings, method).map_err(failure)
}

/// `name=value` arguments split at their first `=`, so values may contain `=` and spaces.
fn parse_params(raw: &[String]) -> Result<Vec<(String, String)>, Failure> {
    raw.iter()
        .map(|arg| match arg.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err((EXIT_USAGE, format!("parameter {arg:?} is not NAME=VALUE"))),
        })
        .collect()
}

fn failure(error: ClientError) -> Failure {
    let status = match &error {
        ClientError::Api { .. } | ClientError::JobFailed { .. } => EXIT_CLOUDSTACK_ERROR,
        ClientError::Parameter { .. } | ClientError::Endpoint { .. } => EXIT_USAGE,
        ClientError::Transport { .. } | ClientError::Response { .. } => EXIT_TRANSPORT,
        ClientError::JobTimeout { .. } => EXIT_JOB_TIMEOUT,
    };
    (status, error.to_string())
}
