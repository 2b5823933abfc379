//! Per-account usage thresholds (Ledgerstack).

use crate::registry::CommandSpec;

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[];
