//! `ledgerstack admin ...`: operator commands on a data directory.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// `ledgerstack admin` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Print the root admin's API key, secret key and password created at first start.
    Keys {
        /// The server's data directory.
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a new master key and seal new secrets with it; old keys stay, so secrets sealed
    /// with them still open (nothing is re-encrypted). Prints the new key id.
    RotateKey {
        /// The server's data directory (a running server uses the new key once restarted).
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the master key ids and which one is current (never the keys themselves).
    KeyIds {
        /// The server's data directory.
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::RotateKey { data_dir } => crate::master_key::rotate(&data_dir),
        AdminCommand::KeyIds { data_dir, json } => crate::master_key::list(&data_dir, json),
        AdminCommand::Keys { data_dir, json } => {
            let credentials = api::bootstrap::read_credentials(&data_dir).with_context(|| {
                format!(
                    "reading the admin credentials of {} (written by the first `ledgerstack serve` on it)",
                    data_dir.display()
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&credentials)?);
            } else {
                println!("username:   {}", credentials.username);
                println!("api key:    {}", credentials.api_key);
                println!("secret key: {}", credentials.secret_key);
                println!("password:   {}", credentials.password);
            }
            Ok(())
        }
    }
}
