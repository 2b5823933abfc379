//! End-to-end tests of Ledgerstack through its real interfaces: `tests/` holds tests that treat
//! the product as a black box (an auditor's independent verifier today; real HTTP and the `cs`
//! client once the API lands). Command-line tests live next to the binary, in `tools/tests/`.
