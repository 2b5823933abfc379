//! CloudStack request signing (spec/api.md "Signing"): the canonical string of the parameters,
//! its HMAC-SHA1 under the secret key, and the query encoding that goes with it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Encodes a value as Java's `URLEncoder` does with `+` then replaced by `%20`: the encoding
/// CloudStack's server applies before it compares signatures, so a client must produce exactly
/// it (`~` included, which Python and Go leave alone).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(char::from(byte));
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The string that is signed: every parameter but `signature`, sorted by raw name
/// case-sensitively in UTF-16 code units (Java's `String` order, which the server uses), joined
/// as `name=ENC(value)` with `&`, and lowercased whole.
pub fn canonical_string<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(name, _)| *name != "signature")
        .collect();
    sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let joined: Vec<String> = sorted
        .into_iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    joined.join("&").to_lowercase()
}

/// The signature of `params` under `secret_key`: standard Base64 (with padding) of the
/// HMAC-SHA1 of [`canonical_string`].
pub fn sign<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, secret_key: &str) -> String {
    sign_string(&canonical_string(params), secret_key)
}

/// The signature of an already canonical string (what [`sign`] computes after building it).
pub fn sign_string(canonical: &str, secret_key: &str) -> String {
    // HMAC accepts a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC-SHA1 takes keys of any length");
    mac.update(canonical.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A query string (or form body) of `params`, names and values encoded with [`encode`]: what
/// goes on the wire; the server decodes it back to the parameters that were signed.
pub fn query_string<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let pairs: Vec<String> = params
        .into_iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(params: &[(&str, &str)], secret: &str) -> String {
        sign(params.iter().copied(), secret)
    }

    #[test]
    fn encoding_is_javas_urlencoder_with_percent_20() {
        assert_eq!(encode("a b+c~d*e.f-g_h"), "a%20b%2Bc%7Ed*e.f-g_h");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("x=y,z[0]"), "x%3Dy%2Cz%5B0%5D");
    }

    #[test]
    fn vector_lowercase_apikey() {
        let params = [
            ("apikey", "foo"),
            ("command", "listVirtualMachines"),
            ("listall", "true"),
            ("response", "json"),
        ];
        assert_eq!(signature(&params, "bar"), "B0d6hBsZTcFVCiioSxzwKA9Pke8=");
    }

    #[test]
    fn vector_sorted_case_sensitively_before_lowercasing() {
        let params = [
            ("apiKey", "foo"),
            ("command", "listVirtualMachines"),
            ("zoneId", "2"),
            ("templateId", "3"),
            ("temPlateidd", "4"),
            ("pageSize", "10"),
            ("page", "1"),
            ("response", "json"),
        ];
        assert!(canonical_string(params).contains("templateidd=4&templateid=3"));
        assert_eq!(signature(&params, "bar"), "mMS7XALuGkCXk7kj5SywySku0Z0=");
    }

    #[test]
    fn vector_unicode_value() {
        let params = [
            ("apiKey", "foo"),
            ("command", "listVirtualMachines"),
            ("listall", "1"),
            ("unicode_param", "éèààû"),
            ("response", "json"),
        ];
        assert_eq!(signature(&params, "bar"), "gABU/KFJKD3FLAgKDuxQoryu4sA=");
    }

    #[test]
    fn vector_map_parameters_and_commas() {
        let expected_string = "apikey=foo&bar[0].baz=blah&bar[0].foo=1000&bytes_param=blah&command=listvirtualmachines&foo=foo%2cbar&response=json";
        let params = [
            ("apiKey", "foo"),
            ("command", "listVirtualMachines"),
            ("bar[0].foo", "1000"),
            ("bar[0].baz", "blah"),
            ("bytes_param", "blah"),
            ("foo", "foo,bar"),
            ("response", "json"),
        ];
        assert_eq!(canonical_string(params), expected_string);
        assert_eq!(
            sign_string(expected_string, "bar"),
            "ImJ/5F0P2RDL7yn4LdLnGcEx5WE="
        );
        assert_eq!(signature(&params, "bar"), "ImJ/5F0P2RDL7yn4LdLnGcEx5WE=");
    }

    #[test]
    fn vector_empty_values() {
        let params = [
            ("apiKey", "foo"),
            ("command", "createNetwork"),
            ("name", ""),
            ("display_text", ""),
            ("response", "json"),
        ];
        assert_eq!(signature(&params, "bar"), "CistTEiPt/4Rv1v4qSyILvPbhmg=");
    }

    #[test]
    fn vector_other_keys() {
        let params = [
            ("command", "listVirtualMachines"),
            ("apiKey", "fnord"),
            ("response", "json"),
        ];
        assert_eq!(
            signature(&params, "abracadabra"),
            "z/a9Y7J52u48VpqIgiwaGUMCso0="
        );
    }

    #[test]
    fn vector_real_cloudstack_keys() {
        let api_key = "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg";
        let secret = "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ";
        let params = [
            ("apiKey", api_key),
            ("command", "listUsers"),
            ("response", "json"),
        ];
        assert_eq!(signature(&params, secret), "TTpdDq/7j/J58XCRHomKoQXEQds=");
    }

    #[test]
    fn the_signature_itself_is_not_signed() {
        let without = [("apiKey", "foo"), ("command", "listZones")];
        let with = [
            ("apiKey", "foo"),
            ("command", "listZones"),
            ("signature", "x"),
        ];
        assert_eq!(signature(&without, "bar"), signature(&with, "bar"));
    }
}
