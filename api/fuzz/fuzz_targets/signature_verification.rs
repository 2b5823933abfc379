//! A secret and a query string from arbitrary bytes: signing, verification under every client
//! variant and the expiry rule must never panic and must agree with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    api::protocol::fuzz_signature_verification(data);
});
