//! Alert sinks (Ledgerstack): where alerts are delivered.

use crate::registry::CommandSpec;

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[];
