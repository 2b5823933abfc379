//! (being written)

use crate::registry::CommandSpec;

/// The commands of this family.
pub const COMMANDS: &[CommandSpec] = &[];
