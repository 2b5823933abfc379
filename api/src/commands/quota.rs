//! CloudStack's quota plugin: tariffs, credits, balance, statement, summary.

use crate::registry::CommandSpec;

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[];
