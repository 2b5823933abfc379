//! The `ledgerstack` command.
fn main() {}
