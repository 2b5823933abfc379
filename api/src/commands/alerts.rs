//! listAlerts, archiveAlerts, deleteAlerts, listAlertTypes, generateAlert.

use crate::registry::CommandSpec;

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[];
