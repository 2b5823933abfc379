//! The CloudStack wire protocol below the commands (spec/api.md "Transport" and "Signing"):
//! decoding request parameters, request signatures and their expiry, and the API's date formats.
//!
//! Nothing here knows about HTTP or the engine, so it can be fuzzed on its own: the bodies of
//! both fuzz targets (`api/fuzz`) live here, where `api/tests/fuzz_corpus.rs` also runs them over
//! the committed corpus on every test run.

pub mod dates;
pub mod params;
pub mod signature;

use chrono::{DateTime, Utc};

use params::Params;
use signature::Variant;

/// Body of the `query_parsing` fuzz target: parses `data` as a query string and checks what
/// must hold of any parse. Panics when an invariant is broken, which is how the fuzzer learns.
#[doc(hidden)]
pub fn fuzz_query_parsing(data: &[u8]) {
    let mut params = Params::default();
    params.merge_urlencoded(data);

    assert_eq!(params.len(), params.iter().count());
    assert_eq!(params.is_empty(), params.iter().next().is_none());
    let lowered: Vec<(String, &str)> = params
        .iter()
        .map(|(name, value)| (name.to_lowercase(), value))
        .collect();
    for ((name, value), (lower, _)) in params.iter().zip(&lowered) {
        assert!(!name.is_empty(), "empty names are dropped");
        assert_eq!(params.raw(name), Some(value));
        if let Some(found) = params.get(name) {
            assert!(!found.is_empty(), "get never answers an empty value");
            assert!(
                lowered
                    .iter()
                    .any(|(other, value)| *value == found && other == lower),
                "get answers with the value of a case variant of the name"
            );
        }
        let _ = params::parse_bool(value);
        for item in params::parse_list(value) {
            assert!(!item.is_empty() && item.trim() == item);
        }
        check_filter_date(value);
    }

    // Any map that `map` refuses, `validate_maps` must refuse too, and a request that passes
    // `validate_maps` must have every map readable.
    let all_valid = params.validate_maps().is_ok();
    for (name, _) in params.iter() {
        let Some(open) = name.find('[') else {
            continue;
        };
        match params.map(&name[..open]) {
            Ok(groups) => {
                for fields in groups {
                    assert!(!fields.is_empty());
                    assert!(fields.windows(2).all(|pair| pair[0].0 < pair[1].0));
                }
            }
            Err(error) => {
                assert!(!all_valid, "validate_maps passed but map refused {name:?}");
                assert!(
                    error
                        .to_string()
                        .starts_with("unable to decode map parameter ")
                );
            }
        }
    }

    // Writing the parameters back out and parsing them again gives the same parameters.
    let mut reencoded = Vec::new();
    for (name, value) in params.iter() {
        form_encode_into(&mut reencoded, name);
        reencoded.push(b'=');
        form_encode_into(&mut reencoded, value);
        reencoded.push(b'&');
    }
    let mut reparsed = Params::default();
    reparsed.merge_urlencoded(&reencoded);
    assert!(params.iter().eq(reparsed.iter()), "re-encoding round-trips");
}

/// Body of the `signature_verification` fuzz target: the first byte gives the length of a
/// secret taken from the bytes after it, the rest is a query string; checks signing and
/// verification against each other under every client variant.
#[doc(hidden)]
pub fn fuzz_signature_verification(data: &[u8]) {
    let Some((&secret_len, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(secret_len % 64).min(rest.len());
    let (secret, query) = rest.split_at(split);
    let secret = String::from_utf8_lossy(secret);

    let mut params = Params::default();
    params.merge_urlencoded(query);

    let _ = signature::verify(
        &params,
        &secret,
        params.raw("signature").unwrap_or_default(),
    );

    let signed = signature::sign(&params, &secret);
    assert!(signature::verify(&params, &secret, &signed));
    let mut wrong_secret = secret.clone().into_owned();
    wrong_secret.push('x');
    assert!(!signature::verify(&params, &wrong_secret, &signed));
    let tampered = flip_first_char(&signed);
    assert!(!signature::verify(&params, &secret, &tampered));

    for &variant in Variant::ALL {
        let text = signature::string_to_sign(&params, variant);
        assert!(!text.bytes().any(|byte| byte.is_ascii_uppercase()));
        if variant == Variant::Canonical {
            assert_eq!(signature::sign(&params, &secret), signed);
        }
    }

    let now = fixed_now();
    match signature::check_expiry(&params, now) {
        Ok(()) => {
            if params.get("signatureVersion") == Some("3") {
                let expires = params.get("expires").and_then(dates::parse_expires);
                assert!(expires.is_some_and(|at| at >= now));
            }
        }
        Err(error) => {
            assert_eq!(params.get("signatureVersion"), Some("3"));
            assert!(!error.to_string().is_empty());
        }
    }
}

fn check_filter_date(value: &str) {
    let start = dates::parse_filter_date(value, false);
    let end = dates::parse_filter_date(value, true);
    assert_eq!(start.is_some(), end.is_some());
    if let (Some(start), Some(end)) = (start, end) {
        assert!(start <= end);
        if (0..=9999).contains(&chrono::Datelike::year(&start)) {
            let formatted = dates::format_date(start);
            let whole_seconds = start.timestamp();
            assert_eq!(
                dates::parse_expires(&formatted).map(|at| at.timestamp()),
                Some(whole_seconds),
                "{formatted}"
            );
        }
    }
    if let Some(at) = dates::parse_expires(value) {
        assert_eq!(dates::parse_filter_date(value, false), Some(at));
    }
}

fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
}

fn flip_first_char(signature: &str) -> String {
    let mut chars: Vec<char> = signature.chars().collect();
    if let Some(first) = chars.first_mut() {
        *first = if *first == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

/// Encodes everything but unreserved characters, so the result parses back exactly.
fn form_encode_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ]);
        }
    }
}
