//! CloudStack request signing (spec/api.md "Signing"): HMAC-SHA1 over a canonical, lowercased
//! rendering of the parameters, plus the `signatureVersion=3` expiry rule.
//!
//! Real clients do not all render the parameters the way CloudStack does. Each [`Variant`] is the
//! rendering of a known client; [`verify`] accepts any of them. Accepting a variant does not widen
//! what an attacker can do: every variant still needs the secret key, and each one is a fixed
//! function of the parameters received.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::cmp::Ordering;

use super::dates;
use super::params::Params;

type HmacSha1 = Hmac<Sha1>;

/// Length of an HMAC-SHA1 tag in bytes.
const TAG_LEN: usize = 20;

/// The parameter that carries the signature and is therefore left out of what is signed.
const SIGNATURE: &str = "signature";

/// How one client renders the parameters before signing them. Every variant ends by lowercasing
/// the whole string, as CloudStack does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// What CloudStack itself computes: names sorted case-sensitively by UTF-16 code unit and
    /// not encoded; values encoded like Java's `URLEncoder` with `+` turned into `%20` (keeps
    /// `A-Z a-z 0-9 . - * _`, so `~` becomes `%7E`). Java clients (jclouds) sign this way.
    Canonical,
    /// `~` left unencoded in values, as Python 3's `quote(safe="*")` (the `cs` library) and Go's
    /// `url.QueryEscape` with `%2A` put back to `*` (`cmk`) produce. Both sort names by code
    /// point, which is how this variant sorts.
    TildeUnencoded,
    /// `[` and `]` left unencoded in values, otherwise canonical.
    BracketsUnencoded,
    /// Names lowercased before sorting (by code point, ties in the order sent), values encoded
    /// canonically: the older Python 2 `cloudmonkey`.
    LowercaseSortedNames,
    /// Apache Libcloud 3.x: lowercased names sorted by code point and encoded with Python's
    /// `quote(safe="[]")`, values with `quote(safe="[]*")`, so `[`, `]`, `*` and `~` stay as
    /// they are.
    Libcloud,
    /// Older Libcloud, whose values were encoded with `quote(safe="[]")`: like [`Libcloud`]
    /// but `*` becomes `%2A`.
    ///
    /// [`Libcloud`]: Variant::Libcloud
    LibcloudLegacy,
    /// `apache/cloudstack-go`, the SDK behind the Terraform provider: names sorted by byte,
    /// values with Go's `url.QueryEscape` (`~` kept, `*` becomes `%2A`), and every `+` in the
    /// lowercased string replaced with `%20`.
    GoSdk,
}

/// What distinguishes one variant's rendering from another's.
struct Rendering {
    /// Characters besides ASCII letters and digits that values keep unencoded.
    value_safe: &'static [u8],
    /// Lowercase names before sorting, and encode them keeping these characters besides ASCII
    /// letters and digits (`None`: sort and write names exactly as sent).
    lowercase_names: Option<&'static [u8]>,
    order: Order,
    /// Replace `+` with `%20` in the final string (only reachable through a name).
    plus_to_percent20: bool,
}

#[derive(Clone, Copy)]
enum Order {
    /// Java's `String.compareTo`.
    Utf16,
    /// Python's and Go's string order (the same as byte order of UTF-8).
    CodePoint,
}

impl Variant {
    /// Every variant, canonical first; [`verify`] tries them in this order.
    pub const ALL: &'static [Variant] = &[
        Variant::Canonical,
        Variant::TildeUnencoded,
        Variant::BracketsUnencoded,
        Variant::LowercaseSortedNames,
        Variant::Libcloud,
        Variant::LibcloudLegacy,
        Variant::GoSdk,
    ];

    fn rendering(self) -> Rendering {
        const JAVA: &[u8] = b".-*_";
        const PYTHON_NAME: &[u8] = b"_.-~[]";
        let (value_safe, lowercase_names, order, plus_to_percent20) = match self {
            Variant::Canonical => (JAVA, None, Order::Utf16, false),
            Variant::TildeUnencoded => (b".-*_~".as_slice(), None, Order::CodePoint, false),
            Variant::BracketsUnencoded => (b".-*_[]".as_slice(), None, Order::Utf16, false),
            Variant::LowercaseSortedNames => (JAVA, Some(JAVA), Order::CodePoint, false),
            Variant::Libcloud => (
                b"_.-~[]*".as_slice(),
                Some(PYTHON_NAME),
                Order::CodePoint,
                false,
            ),
            Variant::LibcloudLegacy => (
                b"_.-~[]".as_slice(),
                Some(PYTHON_NAME),
                Order::CodePoint,
                false,
            ),
            Variant::GoSdk => (b"_.-~".as_slice(), None, Order::CodePoint, true),
        };
        Rendering {
            value_safe,
            lowercase_names,
            order,
            plus_to_percent20,
        }
    }
}

/// The canonical string CloudStack signs (spec steps 1-4), for a given variant.
///
/// Every parameter takes part except the one named exactly `signature`, empty values included.
pub fn string_to_sign(params: &Params, variant: Variant) -> String {
    let rendering = variant.rendering();
    let mut pairs: Vec<(String, &str)> = params
        .iter()
        .filter(|&(name, _)| name != SIGNATURE)
        .map(|(name, value)| match rendering.lowercase_names {
            Some(_) => (name.to_lowercase(), value),
            None => (name.to_owned(), value),
        })
        .collect();
    // Stable, so names that lowercase alike keep the order they were sent in, as the
    // Python clients' stable sort of their dict does.
    pairs.sort_by(|(a, _), (b, _)| compare(a, b, rendering.order));

    let mut out = String::new();
    for (position, (name, value)) in pairs.iter().enumerate() {
        if position > 0 {
            out.push('&');
        }
        match rendering.lowercase_names {
            Some(safe) => encode_into(&mut out, name, safe),
            None => out.push_str(name),
        }
        out.push('=');
        encode_into(&mut out, value, rendering.value_safe);
    }
    let out = out.to_lowercase();
    if rendering.plus_to_percent20 {
        out.replace('+', "%20")
    } else {
        out
    }
}

/// HMAC-SHA1 of `string_to_sign(params, Canonical)` with `secret`, standard base64 with padding (for clients: `ledgerstack sign`, tests, bench).
pub fn sign(params: &Params, secret: &str) -> String {
    STANDARD.encode(tag(secret, &string_to_sign(params, Variant::Canonical)))
}

/// True when `provided` (the decoded `signature` parameter) matches the canonical string or any accepted client variant, compared in constant time. Never panics.
///
/// A space in `provided` is read as `+`: a client that forgets to encode the base64 `+` has it
/// decoded to a space on the way in. Missing `=` padding is tolerated for the same reason.
pub fn verify(params: &Params, secret: &str, provided: &str) -> bool {
    let Some(provided) = decode_signature(provided) else {
        return false;
    };
    let mut tried: Vec<String> = Vec::with_capacity(Variant::ALL.len());
    for &variant in Variant::ALL {
        let candidate = string_to_sign(params, variant);
        // Most requests have no `~`, brackets, `*` or uppercase names, so most variants render
        // the same string; one MAC per distinct string is enough.
        if tried.contains(&candidate) {
            continue;
        }
        let Ok(mut mac) = HmacSha1::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(candidate.as_bytes());
        // `verify_slice` compares in constant time.
        if mac.verify_slice(&provided).is_ok() {
            return true;
        }
        tried.push(candidate);
    }
    false
}

/// `signatureVersion=3` expiry rule: Ok(()) when signatureVersion is absent or not exactly "3"; when it is "3", `expires` must be present, parse (dates::parse_expires) and not be before `now`, else Err(ExpiryError) with a precise message.
///
/// Both names are matched case-insensitively, as CloudStack does (the older `cloudmonkey` sends
/// `signatureversion`).
pub fn check_expiry(params: &Params, now: DateTime<Utc>) -> Result<(), ExpiryError> {
    if params.get("signatureVersion") != Some("3") {
        return Ok(());
    }
    let expires = params.get("expires").ok_or(ExpiryError::Missing)?;
    let at = dates::parse_expires(expires)
        .ok_or_else(|| ExpiryError::Unparseable(expires.to_owned()))?;
    if at < now {
        return Err(ExpiryError::Expired {
            expires: expires.to_owned(),
        });
    }
    Ok(())
}

/// Why a `signatureVersion=3` request is refused; CloudStack answers 401 for each.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    /// `signatureVersion=3` without an `expires` parameter.
    #[error("signatureVersion 3 requires an expires parameter")]
    Missing,
    /// `expires` is not a date in one of the accepted forms; holds the value as sent.
    #[error("unable to parse expires {0:?}: expected yyyy-MM-dd'T'HH:mm:ssZ")]
    Unparseable(String),
    /// `expires` is in the past.
    #[error("request expired at {expires}")]
    Expired {
        /// The `expires` value as sent.
        expires: String,
    },
}

fn tag(secret: &str, message: &str) -> [u8; TAG_LEN] {
    // HMAC hashes long keys and pads short ones, so no key length is invalid.
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

fn decode_signature(provided: &str) -> Option<Vec<u8>> {
    // Base64 of 20 bytes is 28 characters; anything much longer is not worth decoding.
    if provided.len() > 64 {
        return None;
    }
    let provided = provided.replace(' ', "+");
    let decoded = STANDARD
        .decode(&provided)
        .or_else(|_| STANDARD_NO_PAD.decode(&provided))
        .ok()?;
    (decoded.len() == TAG_LEN).then_some(decoded)
}

fn compare(a: &str, b: &str, order: Order) -> Ordering {
    match order {
        Order::Utf16 => a.encode_utf16().cmp(b.encode_utf16()),
        Order::CodePoint => a.cmp(b),
    }
}

/// Percent-encodes `text` as UTF-8, keeping ASCII letters, digits and `safe`; a space becomes
/// `%20` in every client (Java's `+` is replaced afterwards, Python's `quote` and Go's clients
/// write `%20`).
fn encode_into(out: &mut String, text: &str, safe: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || safe.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn parse(raw: &str) -> Params {
        let mut params = Params::default();
        params.merge_urlencoded(raw.as_bytes());
        params
    }

    /// Base64 HMAC-SHA1 of a string built by hand in a test, independently of the variants.
    fn mac_of(secret: &str, message: &str) -> String {
        let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        STANDARD.encode(mac.finalize().into_bytes())
    }

    fn assert_vector(query: &str, secret: &str, expected: &str) {
        let params = parse(query);
        assert_eq!(sign(&params, secret), expected, "{query}");
        assert!(verify(&params, secret, expected), "{query}");
        let mut with_signature = params.clone();
        with_signature.insert("signature", expected);
        assert_eq!(
            sign(&with_signature, secret),
            expected,
            "the signature parameter is not signed"
        );
        assert!(!verify(&params, "wrong", expected));
    }

    #[test]
    fn vector_list_virtual_machines_listall() {
        assert_vector(
            "apikey=foo&command=listVirtualMachines&listall=true&response=json",
            "bar",
            "B0d6hBsZTcFVCiioSxzwKA9Pke8=",
        );
    }

    #[test]
    fn vector_names_sorted_case_sensitively_before_lowercasing() {
        let query = "apiKey=foo&command=listVirtualMachines&zoneId=2&templateId=3\
                     &temPlateidd=4&pageSize=10&page=1&response=json";
        assert_vector(query, "bar", "mMS7XALuGkCXk7kj5SywySku0Z0=");
        assert_eq!(
            string_to_sign(&parse(query), Variant::Canonical),
            "apikey=foo&command=listvirtualmachines&page=1&pagesize=10&response=json\
             &templateidd=4&templateid=3&zoneid=2"
        );
    }

    #[test]
    fn vector_unicode_value() {
        // unicode_param=éèààû, sent as UTF-8.
        assert_vector(
            "apiKey=foo&command=listVirtualMachines&listall=1\
             &unicode_param=%C3%A9%C3%A8%C3%A0%C3%A0%C3%BB&response=json",
            "bar",
            "gABU/KFJKD3FLAgKDuxQoryu4sA=",
        );
    }

    #[test]
    fn vector_prebuilt_string_with_map_and_comma() {
        let query = "apiKey=foo&bar%5B0%5D.baz=blah&bar%5B0%5D.foo=1000&bytes_param=blah\
                     &command=listVirtualMachines&foo=foo%2Cbar&response=json";
        assert_eq!(
            string_to_sign(&parse(query), Variant::Canonical),
            "apikey=foo&bar[0].baz=blah&bar[0].foo=1000&bytes_param=blah\
             &command=listvirtualmachines&foo=foo%2cbar&response=json"
        );
        assert_vector(query, "bar", "ImJ/5F0P2RDL7yn4LdLnGcEx5WE=");
    }

    #[test]
    fn vector_empty_values_are_signed() {
        assert_vector(
            "apiKey=foo&command=createNetwork&name=&display_text=&response=json",
            "bar",
            "CistTEiPt/4Rv1v4qSyILvPbhmg=",
        );
    }

    #[test]
    fn vector_fnord_abracadabra() {
        assert_vector(
            "command=listVirtualMachines&apiKey=fnord&response=json",
            "abracadabra",
            "z/a9Y7J52u48VpqIgiwaGUMCso0=",
        );
    }

    #[test]
    fn vector_long_keys() {
        assert_vector(
            "command=listUsers&response=json&apiKey=plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM\
             -kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg",
            "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ",
            "TTpdDq/7j/J58XCRHomKoQXEQds=",
        );
    }

    #[test]
    fn canonical_encoding_follows_java_urlencoder() {
        let params = parse("apiKey=k&command=c&v=a%20b%2Bc%7Ed*e.f-g_h%2Fi%3Dj%26%5B0%5D%C3%A9");
        assert_eq!(
            string_to_sign(&params, Variant::Canonical),
            "apikey=k&command=c&v=a%20b%2bc%7ed*e.f-g_h%2fi%3dj%26%5b0%5d%c3%a9"
        );
    }

    #[test]
    fn tilde_unencoded_signature_is_accepted() {
        let params = parse("apiKey=foo&command=listZones&name=a~b&response=json");
        let expected = mac_of("bar", "apikey=foo&command=listzones&name=a~b&response=json");
        assert_ne!(expected, sign(&params, "bar"));
        assert!(verify(&params, "bar", &expected));
    }

    #[test]
    fn brackets_unencoded_signature_is_accepted() {
        let params = parse("apiKey=foo&command=createTags&resourceids=%5B1%5D&response=json");
        let expected = mac_of(
            "bar",
            "apikey=foo&command=createtags&resourceids=[1]&response=json",
        );
        assert_ne!(expected, sign(&params, "bar"));
        assert!(verify(&params, "bar", &expected));
    }

    #[test]
    fn names_lowercased_before_sorting_are_accepted() {
        // Case-sensitively `Zname` sorts before `apiKey`; lowercased it sorts last.
        let params = parse("apiKey=foo&command=listZones&Zname=x&response=json");
        assert_eq!(
            string_to_sign(&params, Variant::Canonical),
            "zname=x&apikey=foo&command=listzones&response=json"
        );
        let expected = mac_of("bar", "apikey=foo&command=listzones&response=json&zname=x");
        assert_ne!(expected, sign(&params, "bar"));
        assert!(verify(&params, "bar", &expected));
    }

    #[test]
    fn libcloud_signature_is_accepted() {
        // Libcloud lowercases names, sorts them, and keeps `[ ] * ~` in values.
        let params = parse(
            "apiKey=foo&command=deployVirtualMachine&Zoneid=z&details%5B0%5D.cpu=1\
             &note=a%5Bb%5D*~&startvm=False&response=json",
        );
        let expected = mac_of(
            "bar",
            "apikey=foo&command=deployvirtualmachine&details[0].cpu=1&note=a[b]*~\
             &response=json&startvm=false&zoneid=z",
        );
        assert!(verify(&params, "bar", &expected));
    }

    #[test]
    fn go_sdk_signature_with_encoded_star_is_accepted() {
        let params = parse("apiKey=foo&command=createSSHKeyPair&name=a*b~c&response=json");
        let expected = mac_of(
            "bar",
            "apikey=foo&command=createsshkeypair&name=a%2ab~c&response=json",
        );
        assert!(verify(&params, "bar", &expected));
    }

    #[test]
    fn wrong_signature_is_rejected() {
        let params = parse("apiKey=foo&command=listZones&response=json");
        let good = sign(&params, "bar");
        assert!(verify(&params, "bar", &good));
        assert!(!verify(&params, "baz", &good));
        assert!(!verify(&params, "bar", &mac_of("bar", "something else")));
        for bad in [
            "",
            "=",
            "not base64!",
            "AAAA",
            "A".repeat(1000).as_str(),
            "é",
        ] {
            assert!(!verify(&params, "bar", bad), "{bad:?}");
        }
    }

    #[test]
    fn signature_over_different_params_is_rejected() {
        let signed = parse("apiKey=foo&command=listZones&response=json");
        let signature = sign(&signed, "bar");
        for tampered in [
            "apiKey=foo&command=listZones&response=xml",
            "apiKey=foo&command=listZones&response=json&listall=true",
            "apiKey=foo&command=listZones",
            "apiKey=fo&command=listZones&response=json",
        ] {
            assert!(!verify(&parse(tampered), "bar", &signature), "{tampered}");
        }
    }

    #[test]
    fn signature_with_spaces_for_plus_or_without_padding_is_accepted() {
        // Vary a parameter until the signature contains a '+' to stand in for.
        let mut params = parse("apiKey=foo&command=listZones&response=json");
        let mut n = 0;
        let signature = loop {
            params.insert("n", &n.to_string());
            let signature = sign(&params, "bar");
            if signature.contains('+') {
                break signature;
            }
            n += 1;
        };
        assert!(verify(&params, "bar", &signature.replace('+', " ")));
        assert!(verify(&params, "bar", signature.trim_end_matches('=')));
    }

    #[test]
    fn variants_agree_on_plain_requests() {
        let params = parse("apiKey=foo&command=listZones&response=json");
        let canonical = string_to_sign(&params, Variant::Canonical);
        for &variant in Variant::ALL {
            assert_eq!(string_to_sign(&params, variant), canonical, "{variant:?}");
        }
    }

    fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0)
            .single()
            .expect("valid test date")
    }

    #[test]
    fn expiry_ignored_without_signature_version_3() {
        let now = at(2026, 11, 23, 12);
        for query in [
            "expires=2000-01-01T00:00:00+0000",
            "signatureVersion=2&expires=2000-01-01T00:00:00+0000",
            "signatureVersion=3.0&expires=garbage",
            "signatureVersion=&expires=garbage",
            "",
        ] {
            assert!(check_expiry(&parse(query), now).is_ok(), "{query}");
        }
    }

    #[test]
    fn expiry_version_3_without_expires_is_missing() {
        let now = at(2026, 11, 23, 12);
        for query in ["signatureVersion=3", "signatureVersion=3&expires="] {
            assert!(
                matches!(check_expiry(&parse(query), now), Err(ExpiryError::Missing)),
                "{query}"
            );
        }
    }

    #[test]
    fn expiry_garbage_is_unparseable() {
        let error = check_expiry(
            &parse("signatureVersion=3&expires=tomorrow"),
            at(2026, 11, 23, 12),
        )
        .expect_err("garbage");
        assert!(matches!(&error, ExpiryError::Unparseable(value) if value == "tomorrow"));
        assert_eq!(
            error.to_string(),
            "unable to parse expires \"tomorrow\": expected yyyy-MM-dd'T'HH:mm:ssZ"
        );
    }

    #[test]
    fn expiry_in_the_past_is_expired() {
        let error = check_expiry(
            &parse("signatureVersion=3&expires=2026-11-23T10:00:00%2B0000"),
            at(2026, 11, 23, 12),
        )
        .expect_err("past");
        assert!(
            matches!(&error, ExpiryError::Expired { expires } if expires == "2026-11-23T10:00:00+0000")
        );
        assert_eq!(
            error.to_string(),
            "request expired at 2026-11-23T10:00:00+0000"
        );
    }

    #[test]
    fn expiry_in_the_future_is_accepted_in_each_format() {
        let now = at(2026, 11, 23, 9);
        for expires in [
            // What `cs` sends: %Y-%m-%dT%H:%M:%S%z.
            "2026-11-23T10:00:00%2B0000",
            "2026-11-23T10:30:00%2B01:00",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.500Z",
        ] {
            let query = format!("signatureVersion=3&expires={expires}");
            assert!(check_expiry(&parse(&query), now).is_ok(), "{query}");
        }
        // Exactly now is not before now.
        assert!(
            check_expiry(
                &parse("signatureVersion=3&expires=2026-11-23T09:00:00Z"),
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn expiry_names_are_case_insensitive() {
        let now = at(2026, 11, 23, 12);
        assert!(matches!(
            check_expiry(
                &parse("signatureversion=3&EXPIRES=2026-11-23T10:00:00Z"),
                now
            ),
            Err(ExpiryError::Expired { .. })
        ));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            pairs in proptest::collection::vec(
                ("[a-zA-Z_\\[\\]0-9.]{1,12}", any::<String>()),
                0..12,
            ),
            secret in any::<String>(),
        ) {
            let mut params = Params::default();
            for (name, value) in &pairs {
                params.insert(name, value);
            }
            let signature = sign(&params, &secret);
            prop_assert!(verify(&params, &secret, &signature));
            for &variant in Variant::ALL {
                let text = string_to_sign(&params, variant);
                prop_assert!(verify(&params, &secret, &mac_of(&secret, &text)));
            }
        }

        #[test]
        fn signing_survives_a_trip_through_the_query_string(
            pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..8),
            secret in "[ -~]{0,40}",
        ) {
            let mut params = Params::default();
            for (name, value) in &pairs {
                if !name.is_empty() {
                    params.insert(name, value);
                }
            }
            let mut query = String::new();
            for (name, value) in params.iter() {
                query.push_str(&form_encode(name));
                query.push('=');
                query.push_str(&form_encode(value));
                query.push('&');
            }
            let reparsed = parse(&query);
            prop_assert!(verify(&reparsed, &secret, &sign(&params, &secret)));
        }
    }

    /// An independent form encoder for the round-trip property.
    fn form_encode(text: &str) -> String {
        let mut out = String::new();
        for byte in text.bytes() {
            match byte {
                b' ' => out.push('+'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    out.push(char::from(byte));
                }
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
        out
    }
}
