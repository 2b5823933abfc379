//! Ending a long-running command cleanly on SIGINT (Ctrl-C) or SIGTERM: `serve` and
//! `tail --follow`.

use anyhow::{Context, Result};

/// SIGINT (Ctrl-C) and SIGTERM, handled from the moment [`ShutdownSignals::listen`] returns.
pub(crate) struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub(crate) fn listen() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Resolves on the first of them.
    pub(crate) async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
