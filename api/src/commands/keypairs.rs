//! SSH key pairs (`createSSHKeyPair`, `registerSSHKeyPair`, `listSSHKeyPairs`,
//! `deleteSSHKeyPair`): public keys a VM gets at deploy, by name, per account.
//!
//! A created pair is a real 2048-bit RSA key, as CloudStack's (JSch) is: its private key is
//! answered once, in PKCS#1 PEM, and never written to the log; only the public key and its
//! fingerprint are recorded. Names are unique per account, so every create and register is
//! decided on the allocation stream.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use compact_str::CompactString;
use engine::event::identity::{SshKeyPairFacts, SshKeyPairRegistered};
use engine::event::{EventBody, RegisterEvent, SshKeyPairEvent};
use md5::{Digest, Md5};
use projections::State;
use projections::catalog::Created;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{ALLOCATION, owner};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::SUCCESS_FIELDS;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamSpec, ParamType as T, ResponseField, Roles, field, param,
    required,
};
use crate::response::Reply;

/// CloudStack's default `ssh.key.length`.
const RSA_BITS: usize = 2048;

/// The key types CloudStack's `SSHKeysHelper` accepts.
const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

const KEYPAIR_FIELDS: &[ResponseField] = &[
    field("id", "string", "ID of the ssh keypair"),
    field("name", "string", "Name of the keypair"),
    field("fingerprint", "string", "Fingerprint of the public key"),
    field("account", "string", "the owner of the keypair"),
    field("domainid", "string", "the domain id of the keypair owner"),
    field("domain", "string", "the domain name of the keypair owner"),
];

const CREATED_KEYPAIR_FIELDS: &[ResponseField] = &[
    field("id", "string", "ID of the ssh keypair"),
    field("name", "string", "Name of the keypair"),
    field("fingerprint", "string", "Fingerprint of the public key"),
    field("privatekey", "string", "Private key"),
    field("account", "string", "the owner of the keypair"),
    field("domainid", "string", "the domain id of the keypair owner"),
    field("domain", "string", "the domain name of the keypair owner"),
];

const OWNER_PARAMS: [ParamSpec; 2] = [
    param(
        "account",
        T::String,
        "an optional account for the ssh key. Must be used with domainId.",
    ),
    param(
        "domainid",
        T::Uuid,
        "an optional domainId for the ssh key. If the account parameter is used, domainId must also be used.",
    ),
];

/// The SSH key pair commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createSSHKeyPair",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Create a new keypair and returns the private key",
        params: &[
            required("name", T::String, "Name of the keypair"),
            OWNER_PARAMS[0],
            OWNER_PARAMS[1],
        ],
        inherits: Inherits::Nothing,
        response: CREATED_KEYPAIR_FIELDS,
        related: "listSSHKeyPairs",
        manual_clock_only: false,
        handler: handler!(create_ssh_key_pair),
    },
    CommandSpec {
        name: "registerSSHKeyPair",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Register a public key in a keypair under a certain name",
        params: &[
            required("name", T::String, "Name of the keypair"),
            ParamSpec {
                length: 5120,
                ..required("publickey", T::String, "Public key material of the keypair")
            },
            OWNER_PARAMS[0],
            OWNER_PARAMS[1],
        ],
        inherits: Inherits::Nothing,
        response: KEYPAIR_FIELDS,
        related: "listSSHKeyPairs",
        manual_clock_only: false,
        handler: handler!(register_ssh_key_pair),
    },
    CommandSpec {
        name: "listSSHKeyPairs",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "List registered keypairs",
        params: &[
            param("id", T::Uuid, "the ID of the ssh keypair"),
            param("name", T::String, "A key pair name to look for"),
            param(
                "fingerprint",
                T::String,
                "A public key fingerprint to look for",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: KEYPAIR_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(list_ssh_key_pairs),
    },
    CommandSpec {
        name: "deleteSSHKeyPair",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Deletes a keypair by name",
        params: &[
            required("name", T::String, "Name of the keypair"),
            param(
                "account",
                T::String,
                "the account associated with the keypair. Must be used with the domainId parameter.",
            ),
            param(
                "domainid",
                T::Uuid,
                "the domain ID associated with the keypair",
            ),
        ],
        inherits: Inherits::Nothing,
        response: SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_ssh_key_pair),
    },
];

/// The account's key pair with this name. Names compare case-insensitively, as CloudStack's
/// (MySQL, case-insensitive collation) lookups do; `deployVirtualMachine` resolves its
/// `keypair`/`keypairs` through this.
pub fn keypair_by_name<'a>(
    state: &'a State,
    account_id: Uuid,
    name: &str,
) -> Option<&'a Created<SshKeyPairFacts>> {
    state
        .compute
        .keypairs
        .values()
        .find(|k| k.facts.account_id == account_id && k.facts.name.eq_ignore_ascii_case(name))
}

/// A key pair as `listSSHKeyPairs` and `registerSSHKeyPair` show it.
fn keypair_json(state: &State, facts: &SshKeyPairFacts) -> Value {
    json!({
        "id": facts.keypair_id,
        "name": facts.name,
        "fingerprint": facts.fingerprint,
        "account": state.identity.account_name(facts.account_id),
        "domainid": facts.domain_id,
        "domain": state.identity.domains.get(&facts.domain_id).map(|d| d.facts.name.clone()),
    })
}

/// The fingerprint CloudStack shows: the MD5 of the decoded public key blob, as lowercase hex
/// pairs joined by colons.
pub fn fingerprint(blob: &[u8]) -> String {
    Md5::digest(blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A public key as recorded: `type base64`, the comment dropped (as CloudStack stores it),
/// with its decoded blob.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicKey {
    text: String,
    blob: Vec<u8>,
}

fn invalid_key() -> ApiError {
    ApiError::invalid_param("Public key is invalid")
}

/// Parses OpenSSH public key material (`type base64 [comment]`). Like CloudStack, material
/// without a space is taken to be that line base64-encoded. Unlike CloudStack, which only
/// looks at the prefix, the base64 must decode and the blob must name the same key type, so a
/// key `ssh` would refuse is never handed to a VM.
fn parse_public_key(material: &str) -> Result<PublicKey, ApiError> {
    let material = material.trim();
    let decoded;
    let line = if material.contains(char::is_whitespace) {
        material
    } else {
        let bytes = STANDARD.decode(material).map_err(|_| invalid_key())?;
        decoded = String::from_utf8(bytes).map_err(|_| invalid_key())?;
        decoded.trim()
    };
    let mut parts = line.split_whitespace();
    let (Some(key_type), Some(encoded)) = (parts.next(), parts.next()) else {
        return Err(invalid_key());
    };
    if !KEY_TYPES.contains(&key_type) {
        return Err(invalid_key());
    }
    let blob = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| invalid_key())?;
    if blob_key_type(&blob) != Some(key_type.as_bytes()) {
        return Err(invalid_key());
    }
    Ok(PublicKey {
        text: format!("{key_type} {encoded}"),
        blob,
    })
}

/// The key type string a public key blob starts with (RFC 4253 `string`: a 4-byte big-endian
/// length, then the bytes).
fn blob_key_type(blob: &[u8]) -> Option<&[u8]> {
    let length = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(length)?)
}

/// Appends an RFC 4251 `string`.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Appends an RFC 4251 `mpint` of a non-negative number given big-endian: a leading zero byte
/// keeps a number whose top bit is set from reading as negative.
fn put_mpint(out: &mut Vec<u8>, big_endian: &[u8]) {
    let trimmed: &[u8] = match big_endian.iter().position(|b| *b != 0) {
        Some(first) => &big_endian[first..],
        None => &[],
    };
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(trimmed.len() + 1);
        padded.push(0);
        padded.extend_from_slice(trimmed);
        put_string(out, &padded);
    } else {
        put_string(out, trimmed);
    }
}

/// A freshly generated key pair: the public key as recorded, and the private key in PEM,
/// which only the caller ever sees.
struct GeneratedKey {
    public: PublicKey,
    private_pem: String,
}

/// Generates an RSA key pair the way `ssh-keygen -t rsa` would (OpenSSH `ssh-rsa` public key,
/// PKCS#1 PEM private key, as JSch writes it for CloudStack).
fn generate_rsa_key() -> Result<GeneratedKey, ApiError> {
    let mut rng = rsa::rand_core::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
        .map_err(|e| ApiError::internal(format!("could not generate an RSA key: {e}")))?;
    let private_pem = private
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| ApiError::internal(format!("could not encode the RSA key: {e}")))?
        .to_string();
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-rsa");
    put_mpint(&mut blob, &private.e().to_bytes_be());
    put_mpint(&mut blob, &private.n().to_bytes_be());
    Ok(GeneratedKey {
        public: PublicKey {
            text: format!("ssh-rsa {}", STANDARD.encode(&blob)),
            blob,
        },
        private_pem,
    })
}

/// The key pair's name, refusing a blank one as CloudStack does.
fn key_name(call: &Call) -> Result<CompactString, ApiError> {
    let name = call.required("name")?.trim();
    if name.is_empty() {
        return Err(ApiError::invalid_param(
            "Please specify a valid name for the key pair. The key name can't be empty",
        ));
    }
    Ok(name.into())
}

async fn create_ssh_key_pair(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = key_name(call)?;
    // Refuse a taken name before spending a key generation on it; the decision below checks
    // again on the state it appends at.
    {
        let state = ctx.models.read();
        let (account_id, _) = owner(call, &state)?;
        name_free(&state, account_id, &name, "already exists.")?;
    }
    // Generating a 2048-bit key takes a while: off the request threads.
    let key = tokio::task::spawn_blocking(generate_rsa_key)
        .await
        .map_err(|e| ApiError::internal(format!("the key generation failed: {e}")))??;
    let keypair_id = Uuid::new_v4();
    let fingerprint: CompactString = fingerprint(&key.public.blob).into();
    ctx.decide(ALLOCATION, |state| {
        let (account_id, domain_id) = owner(call, state)?;
        name_free(state, account_id, &name, "already exists.")?;
        Ok(vec![call.event(EventBody::SshKeyPair(
            SshKeyPairEvent::Create(SshKeyPairFacts {
                keypair_id,
                name: name.clone(),
                account_id,
                domain_id,
                fingerprint: fingerprint.clone(),
                public_key: key.public.text.clone(),
            }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    let row = state.compute.keypairs.get(&keypair_id).ok_or_else(|| {
        ApiError::internal(format!(
            "key pair {keypair_id} vanished after it was written"
        ))
    })?;
    let mut value = keypair_json(&state, &row.facts);
    value["privatekey"] = Value::String(key.private_pem);
    Ok(Reply::Object {
        key: "keypair",
        value,
    })
}

/// 431 when the account already has a key pair of this name (`ending` completes CloudStack's
/// message, which differs between create and register).
fn name_free(state: &State, account_id: Uuid, name: &str, ending: &str) -> Result<(), ApiError> {
    match keypair_by_name(state, account_id, name) {
        Some(_) => Err(ApiError::invalid_param(format!(
            "A key pair with name '{name}' {ending}"
        ))),
        None => Ok(()),
    }
}

async fn register_ssh_key_pair(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = key_name(call)?;
    let material = call.required("publickey")?;
    let key = parse_public_key(material)?;
    let keypair_id = Uuid::new_v4();
    let fingerprint: CompactString = fingerprint(&key.blob).into();
    ctx.decide(ALLOCATION, |state| {
        let (account_id, domain_id) = owner(call, state)?;
        name_free(state, account_id, &name, "already exists for this account.")?;
        if state
            .compute
            .keypairs
            .values()
            .any(|k| k.facts.account_id == account_id && k.facts.public_key == key.text)
        {
            return Err(ApiError::invalid_param(format!(
                "A key pair with key '{}' already exists for this account.",
                material.trim()
            )));
        }
        Ok(vec![call.event(EventBody::Register(
            RegisterEvent::SshKeyPair(SshKeyPairRegistered {
                keypair_id,
                name: name.clone(),
                account_id,
                domain_id,
                fingerprint: fingerprint.clone(),
                public_key: key.text.clone(),
            }),
        ))])
    })
    .await?;
    let state = ctx.models.read();
    let row = state.compute.keypairs.get(&keypair_id).ok_or_else(|| {
        ApiError::internal(format!(
            "key pair {keypair_id} vanished after it was written"
        ))
    })?;
    Ok(Reply::Object {
        key: "keypair",
        value: keypair_json(&state, &row.facts),
    })
}

async fn list_ssh_key_pairs(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let name = call.str("name");
    let fingerprint = call.str("fingerprint");
    let keyword = call.str("keyword");
    let mut rows: Vec<&Created<SshKeyPairFacts>> = state
        .compute
        .keypairs
        .values()
        .filter(|k| {
            let f = &k.facts;
            scope.admits(&state, Some(f.account_id), Some(f.domain_id))
                && id.is_none_or(|id| f.keypair_id == id)
                && name.is_none_or(|n| f.name.eq_ignore_ascii_case(n))
                && fingerprint.is_none_or(|p| f.fingerprint.eq_ignore_ascii_case(p))
                && keyword_matches(keyword, &[&f.name, &f.fingerprint])
        })
        .collect();
    // CloudStack lists the newest first.
    rows.sort_by_key(|k| std::cmp::Reverse((k.created, k.facts.keypair_id)));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|k| keypair_json(&state, &k.facts))
            .collect(),
    );
    Ok(Reply::List {
        key: "sshkeypair",
        count,
        items,
    })
}

async fn delete_ssh_key_pair(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let name = key_name(call)?;
    ctx.decide(ALLOCATION, |state| {
        let (account_id, _) = owner(call, state)?;
        let row = keypair_by_name(state, account_id, &name).ok_or_else(|| {
            ApiError::invalid_param(format!(
                "A key pair with name '{name}' does not exist for account {} in specified domain id",
                state
                    .identity
                    .account_name(account_id)
                    .unwrap_or_else(|| account_id.to_string().into())
            ))
        })?;
        Ok(vec![call.event(EventBody::SshKeyPair(SshKeyPairEvent::Delete(
            row.facts.clone(),
        )))])
    })
    .await?;
    Ok(Reply::success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519` output.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M user@host";

    #[test]
    fn openssh_public_keys_are_accepted_without_their_comment() {
        let key = parse_public_key(ED25519).unwrap();
        assert_eq!(
            key.text,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M"
        );
        assert_eq!(blob_key_type(&key.blob), Some(&b"ssh-ed25519"[..]));
    }

    #[test]
    fn base64_encoded_key_material_is_decoded_first() {
        let encoded = STANDARD.encode(ED25519);
        assert_eq!(
            parse_public_key(&encoded).unwrap(),
            parse_public_key(ED25519).unwrap()
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "ssh-rsa",
            "not-a-type AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M",
            "ssh-ed25519 !!!notbase64!!!",
            // The blob says ssh-ed25519, the text ssh-rsa.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M",
            // A blob too short to hold its type.
            "ssh-rsa AAAA",
        ] {
            let error = parse_public_key(bad).unwrap_err();
            assert_eq!(
                (error.code, error.text.as_str()),
                (431, "Public key is invalid"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fingerprints_are_colon_separated_md5() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(
            fingerprint(b""),
            "d4:1d:8c:d9:8f:00:b2:04:e9:80:09:98:ec:f8:42:7e"
        );
    }

    #[test]
    fn mpints_get_a_sign_byte_only_when_needed() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0x00, 0x80, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 0x00, 0x80, 0x01]);
        out.clear();
        put_mpint(&mut out, &[0x01, 0x00, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 0x01, 0x00, 0x01]);
        out.clear();
        put_mpint(&mut out, &[0, 0]);
        assert_eq!(out, [0, 0, 0, 0]);
    }

    #[test]
    fn generated_keys_are_openssh_rsa_with_a_pkcs1_private_key() {
        let key = generate_rsa_key().unwrap();
        assert!(
            key.private_pem
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        let parsed = parse_public_key(&key.public.text).unwrap();
        assert_eq!(parsed, key.public);
        assert_eq!(fingerprint(&parsed.blob).len(), 47);
    }
}
