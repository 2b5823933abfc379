//! Arbitrary bytes as a query string or form body: parsing, case-insensitive lookup, map
//! parameters and filter dates must never panic and must keep their invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    api::protocol::fuzz_query_parsing(data);
});
