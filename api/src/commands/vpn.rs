//! Remote access VPN (`createRemoteAccessVpn`, `deleteRemoteAccessVpn`,
//! `listRemoteAccessVpns`) and its users (`addVpnUser`, `removeVpnUser`, `listVpnUsers`).
//!
//! A VPN terminates on the source-NAT address of an isolated network or a VPC, so it is
//! programmed on that router: enabling and disabling it are driver requests (VPN.REMOTE.ACCESS.*
//! in state `Started`) when the router exists. VPN users belong to the account, not to one VPN:
//! adding or removing one is a request to every router running a VPN of the account, or a
//! fact when none does (the users are handed to a VPN when it is enabled). The IPsec
//! pre-shared key enters the log only sealed with the master key (ARCHITECTURE.md, secrets);
//! a user's password is never recorded.
//!
//! While a VPN or a VPN user of an account waits for the driver, the other VPN changes of
//! that account are refused: the router's user list is computed when a request is made, so two
//! overlapping requests could leave it different from what the log implies.

use std::net::Ipv4Addr;

use compact_str::CompactString;
use engine::event::infrastructure::ConfigScope;
use engine::event::services::{RemoteAccessVpnFacts, VpnUserFacts};
use engine::event::{EventBody, VpnEvent};
use engine::secrets;
use projections::State;
use projections::network::{IpState, RuleRow, RuleState};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::allocation::{owner, parse_cidr};
use crate::call::{Call, ListScope, Paging, keyword_matches};
use crate::commands::render::{merge, owner_fields};
use crate::commands::row_reply;
use crate::commands::volumes::{accessible_row, check_access, listed};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::handler;
use crate::jobs::{self, JobMeta};
use crate::registry::{
    CommandSpec, Inherits, Kind, ParamType as T, ResponseField, Roles, field, param, required,
};
use crate::response::Reply;

/// The setting holding the client address range of a new VPN (account-scoped).
pub const CLIENT_RANGE_SETTING: &str = "remote.access.vpn.client.iprange";

/// Length of a generated IPsec pre-shared key (CloudStack's `remote.access.vpn.psk.length`).
const PSK_LENGTH: usize = 24;

const VPN_FIELDS: &[ResponseField] = &[
    field("id", "string", "the id of the remote access vpn"),
    field(
        "publicipid",
        "string",
        "the public ip address of the vpn server",
    ),
    field(
        "publicip",
        "string",
        "the public ip address of the vpn server",
    ),
    field(
        "iprange",
        "string",
        "the range of ips to allocate to the clients",
    ),
    field("presharedkey", "string", "the ipsec preshared key"),
    field("account", "string", "the account of the remote access vpn"),
    field(
        "domainid",
        "string",
        "the domain id of the account of the remote access vpn",
    ),
    field(
        "domain",
        "string",
        "the domain name of the account of the remote access vpn",
    ),
    field("state", "string", "the state of the rule"),
    field(
        "fordisplay",
        "boolean",
        "is vpn for display to the regular user",
    ),
];

const VPN_USER_FIELDS: &[ResponseField] = &[
    field("id", "string", "the vpn userID"),
    field("username", "string", "the username of the vpn user"),
    field("account", "string", "the account of the remote access vpn"),
    field(
        "domainid",
        "string",
        "the domain id of the account of the remote access vpn",
    ),
    field(
        "domain",
        "string",
        "the domain name of the account of the remote access vpn",
    ),
    field(
        "state",
        "string",
        "the state of the Vpn User, can be 'Add', 'Revoke' or 'Active'.",
    ),
];

/// The VPN commands.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "createRemoteAccessVpn",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Creates a l2tp/ipsec remote access vpn",
        params: &[
            required(
                "publicipid",
                T::Uuid,
                "public ip address id of the vpn server",
            ),
            param(
                "iprange",
                T::String,
                "the range of ip addresses to allocate to vpn clients. The first ip in the range will be taken by the vpn server",
            ),
            param(
                "account",
                T::String,
                "an optional account for the VPN. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId for the VPN. If the account parameter is used, domainId must also be used.",
            ),
            param(
                "openfirewall",
                T::Boolean,
                "if true, firewall rule for source/end public port is automatically created; if false - firewall rule has to be created explicitly. Has value true by default (the simulated router admits VPN traffic either way)",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "an optional field, whether to the display the vpn to the end user or not",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VPN_FIELDS,
        related: "listRemoteAccessVpns,deleteRemoteAccessVpn",
        manual_clock_only: false,
        handler: handler!(create_vpn),
    },
    CommandSpec {
        name: "deleteRemoteAccessVpn",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Destroys a l2tp/ipsec remote access vpn",
        params: &[required(
            "publicipid",
            T::Uuid,
            "public ip address id of the vpn server",
        )],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(delete_vpn),
    },
    CommandSpec {
        name: "listRemoteAccessVpns",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists remote access vpns",
        params: &[
            param(
                "publicipid",
                T::Uuid,
                "public ip address id of the vpn server",
            ),
            param(
                "id",
                T::Uuid,
                "Lists remote access vpn rule with the specified ID",
            ),
            param(
                "networkid",
                T::Uuid,
                "list remote access VPNs for certain network",
            ),
            param(
                "fordisplay",
                T::Boolean,
                "list resources by display flag; only ROOT admin is eligible to pass this parameter",
            ),
        ],
        inherits: Inherits::PagingAndScope,
        response: VPN_FIELDS,
        related: "createRemoteAccessVpn",
        manual_clock_only: false,
        handler: handler!(list_vpns),
    },
    CommandSpec {
        name: "addVpnUser",
        kind: Kind::AsyncCreate,
        roles: Roles::ALL,
        description: "Adds vpn users",
        params: &[
            required("username", T::String, "username for the vpn user"),
            required("password", T::String, "password for the username"),
            param(
                "account",
                T::String,
                "an optional account for the vpn user. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId for the vpn user. If the account parameter is used, domainId must also be used.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: VPN_USER_FIELDS,
        related: "listVpnUsers,removeVpnUser",
        manual_clock_only: false,
        handler: handler!(add_vpn_user),
    },
    CommandSpec {
        name: "removeVpnUser",
        kind: Kind::Async,
        roles: Roles::ALL,
        description: "Removes vpn user",
        params: &[
            required("username", T::String, "username for the vpn user"),
            param(
                "account",
                T::String,
                "an optional account for the vpn user. Must be used with domainId.",
            ),
            param(
                "domainid",
                T::Uuid,
                "an optional domainId for the vpn user. If the account parameter is used, domainId must also be used.",
            ),
        ],
        inherits: Inherits::Nothing,
        response: super::SUCCESS_FIELDS,
        related: "",
        manual_clock_only: false,
        handler: handler!(remove_vpn_user),
    },
    CommandSpec {
        name: "listVpnUsers",
        kind: Kind::Sync,
        roles: Roles::ALL,
        description: "Lists vpn users",
        params: &[
            param("id", T::Uuid, "The uuid of the Vpn user"),
            param("username", T::String, "the username of the vpn user."),
        ],
        inherits: Inherits::PagingAndScope,
        response: VPN_USER_FIELDS,
        related: "addVpnUser",
        manual_clock_only: false,
        handler: handler!(list_vpn_users),
    },
];

// ---------------------------------------------------------------------------------------------
// JSON views

/// CloudStack's RemoteAccessVpn.State for a VPN row: `Added` until the router confirms,
/// `Running`, and `Removed` while its removal is under way.
fn vpn_state(state: RuleState) -> &'static str {
    match state {
        RuleState::Add => "Added",
        RuleState::Active => "Running",
        RuleState::Revoke => "Removed",
    }
}

/// A VPN as CloudStack's RemoteAccessVpnResponse shows it, with its opened pre-shared key.
fn vpn_json(state: &State, row: &RuleRow<RemoteAccessVpnFacts>, psk: Option<String>) -> Value {
    let v = &row.facts;
    let value = json!({
        "id": v.vpn_id,
        "publicipid": v.public_ip_id,
        "publicip": v.public_ip,
        "iprange": v.ip_range,
        "presharedkey": psk,
        "state": vpn_state(row.state),
        "fordisplay": true,
    });
    merge(value, owner_fields(state, v.account_id, v.domain_id))
}

/// The pre-shared key of a VPN, opened with the master key (`None` if it does not open: the
/// VPN is still shown, without it).
fn opened_psk(ctx: &Ctx, facts: &RemoteAccessVpnFacts) -> Option<String> {
    let sealed = facts.preshared_key.as_ref()?;
    let bytes = ctx.keys.open_sealed(sealed, facts.vpn_id.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

/// A VPN user as CloudStack's VpnUsersResponse shows it.
fn vpn_user_json(state: &State, row: &RuleRow<VpnUserFacts>) -> Value {
    let u = &row.facts;
    let value = json!({
        "id": u.vpn_user_id,
        "username": u.username,
        "state": row.state.name(),
    });
    merge(value, owner_fields(state, u.account_id, u.domain_id))
}

/// The `vpnuser` reply for VPN user `id`.
pub fn vpn_user_reply(state: &State, id: Uuid) -> Result<Reply, ApiError> {
    row_reply(
        state.network.vpn_users.get(&id),
        "vpnuser",
        "vpn user",
        id,
        |r| vpn_user_json(state, r),
    )
}

/// The `remoteaccessvpn` reply for the VPN on public IP `public_ip_id`, rendered after a
/// restart (`commands::render_job_result`): without its pre-shared key, which only the
/// creating call and `listRemoteAccessVpns` open.
pub fn vpn_reply_for_ip(state: &State, public_ip_id: Uuid) -> Result<Reply, ApiError> {
    let row = state
        .network
        .vpns
        .values()
        .find(|v| v.facts.public_ip_id == public_ip_id)
        .ok_or_else(|| {
            ApiError::invalid_param(format!(
                "Unable to find remote access vpn by public ip address id {public_ip_id}"
            ))
        })?;
    Ok(Reply::Object {
        key: "remoteaccessvpn",
        value: vpn_json(state, row, None),
    })
}

// ---------------------------------------------------------------------------------------------
// Checks

/// 431 while a VPN or VPN user of the account waits for the driver (see the module's note).
fn not_busy(
    state: &State,
    account_id: Uuid,
    what: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    let busy = state
        .network
        .vpns
        .values()
        .any(|v| v.facts.account_id == account_id && v.pending.is_some())
        || state
            .network
            .vpn_users
            .values()
            .any(|u| u.facts.account_id == account_id && u.pending.is_some());
    if busy {
        return Err(ApiError::invalid_param(format!(
            "{}: Another operation is active.",
            what()
        )));
    }
    Ok(())
}

/// `a.b.c.d-e.f.g.h` as two addresses, checked as CloudStack's `validateIpRange` does.
fn parse_ip_range(range: &str) -> Result<(u32, u32), ApiError> {
    let parts: Vec<&str> = range.split('-').collect();
    let [start, end] = parts.as_slice() else {
        return Err(ApiError::invalid_param(format!(
            "IP range [{range}] is an invalid IP range."
        )));
    };
    let (Ok(start), Ok(end)) = (
        start.trim().parse::<Ipv4Addr>(),
        end.trim().parse::<Ipv4Addr>(),
    ) else {
        return Err(ApiError::invalid_param(format!(
            "One or both IPs sets in the range [{range}] are invalid IPs."
        )));
    };
    let (start, end) = (u32::from(start), u32::from(end));
    if start > end {
        return Err(ApiError::invalid_param(format!(
            "Range of IPs [{range}] is invalid."
        )));
    }
    Ok((start, end))
}

/// The client range a new VPN of `account_id` gets without `iprange`: the account's setting,
/// else its domain's, else the global one.
fn default_client_range(state: &State, account_id: Uuid, domain_id: Uuid) -> String {
    let configuration = &state.configuration;
    configuration
        .value_at(CLIENT_RANGE_SETTING, ConfigScope::Account, Some(account_id))
        .or_else(|| {
            configuration.value_at(CLIENT_RANGE_SETTING, ConfigScope::Domain, Some(domain_id))
        })
        .map(str::to_owned)
        .or_else(|| configuration.global(CLIENT_RANGE_SETTING))
        .unwrap_or_default()
}

/// A fresh IPsec pre-shared key: letters and digits, as CloudStack's PasswordGenerator makes
/// them.
fn generate_psk() -> String {
    let mut key = String::with_capacity(PSK_LENGTH);
    while key.len() < PSK_LENGTH {
        key.extend(
            secrets::generate_session_key()
                .chars()
                .filter(char::is_ascii_alphanumeric),
        );
    }
    key.truncate(PSK_LENGTH);
    key
}

// ---------------------------------------------------------------------------------------------
// Remote access VPNs

async fn create_vpn(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let public_ip_id = call.required_uuid("publicipid")?;
    let requested_range = call.str("iprange").map(str::trim).map(str::to_owned);
    let vpn_id = Uuid::new_v4();
    let psk = generate_psk();
    let sealed = ctx.keys.seal(psk.as_bytes(), vpn_id.as_bytes());
    let meta = JobMeta {
        instance_type: Some("IpAddress"),
        instance_id: Some(public_ip_id),
        event_type: "VPN.REMOTE.ACCESS.CREATE",
        description: "creating remote access vpn".to_owned(),
        create_id: Some(vpn_id),
    };
    jobs::submit_decided(
        ctx,
        call,
        meta,
        |state, ids| {
            let ip = state.network.public_ips.get(&public_ip_id).ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Unable to create remote access VPN, invalid public IP address {{\"id\": {public_ip_id}}}."
                ))
            })?;
            let f = &ip.facts;
            check_access(state, call, f.account_id, f.domain_id, "public IP address", public_ip_id)?;
            if ip.state != IpState::Allocated {
                return Err(ApiError::invalid_param(format!(
                    "The Ip address is not ready to be used yet: {}",
                    f.address
                )));
            }
            if f.network_id.is_none() && f.vpc_id.is_none() {
                return Err(ApiError::invalid_param(format!(
                    "Unable to create remote access vpn for the ipAddress: {} as ip is not associated with any network or VPC",
                    f.address
                )));
            }
            if state
                .network
                .vpns
                .values()
                .any(|v| v.facts.public_ip_id == public_ip_id)
            {
                return Err(ApiError::invalid_param(format!(
                    "A remote Access VPN already exists for the public IP address [{}].",
                    f.address
                )));
            }
            let guest_cidr = match (f.network_id, f.vpc_id) {
                (Some(network_id), _) => {
                    let network = state.compute.networks.get(&network_id).ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "Unable to find network by id {network_id}"
                        ))
                    })?;
                    if state.network.vpns.values().any(|v| {
                        v.facts.account_id == f.account_id && v.facts.network_id == Some(network_id)
                    }) {
                        return Err(ApiError::invalid_param(format!(
                            "A remote access VPN already exists for the network {}.",
                            network.facts.name
                        )));
                    }
                    if !f.is_source_nat {
                        return Err(ApiError::invalid_param(format!(
                            "Vpn service can only be configured on the Source NAT IP of network id={network_id}"
                        )));
                    }
                    network.facts.cidr.clone()
                }
                (None, Some(vpc_id)) => {
                    if !f.is_source_nat {
                        return Err(ApiError::invalid_param(format!(
                            "Vpn service can only be configured on the Source NAT IP of VPC id={vpc_id}"
                        )));
                    }
                    state.network.vpcs.get(&vpc_id).map(|v| v.facts.cidr.clone())
                }
                (None, None) => None,
            };
            not_busy(state, f.account_id, || {
                format!("Unable to create remote access VPN for the public IP address {}", f.address)
            })?;
            let range = requested_range
                .clone()
                .unwrap_or_else(|| default_client_range(state, f.account_id, f.domain_id));
            let (start, end) = parse_ip_range(&range)?;
            if let Some((base, prefix)) = guest_cidr.as_deref().and_then(parse_cidr) {
                let last = base | (u32::MAX >> prefix);
                if start <= last && base <= end {
                    return Err(ApiError::invalid_param(format!(
                        "Invalid ip range: {range} overlaps with guest ip range {}-{}",
                        Ipv4Addr::from(base),
                        Ipv4Addr::from(last)
                    )));
                }
            }
            // The first address is the server's; clients get the rest (CloudStack stores and
            // shows the clients' part).
            let Some(first_client) = start.checked_add(1).filter(|s| *s <= end) else {
                return Err(ApiError::invalid_param(format!(
                    "Range of IPs [{range}] is invalid."
                )));
            };
            let facts = RemoteAccessVpnFacts {
                vpn_id,
                account_id: f.account_id,
                domain_id: f.domain_id,
                zone_id: f.zone_id,
                public_ip_id,
                public_ip: f.address,
                network_id: f.network_id,
                vpc_id: f.vpc_id,
                ip_range: format!("{}-{}", Ipv4Addr::from(first_client), Ipv4Addr::from(end))
                    .into(),
                preshared_key: Some(sealed.clone()),
            };
            let body = EventBody::Vpn(VpnEvent::RemoteAccessCreate(facts));
            // Without a router there is nothing to program: the VPN is recorded as it is.
            let event = if state
                .network
                .router_for(&state.compute, f.network_id, f.vpc_id)
                .is_some()
            {
                ids.request(call, body)
            } else {
                ids.event(call, body)
            };
            Ok(vec![event])
        },
        move |state| {
            row_reply(
                state.network.vpns.get(&vpn_id),
                "remoteaccessvpn",
                "remote access vpn",
                vpn_id,
                |row| vpn_json(state, row, Some(psk)),
            )
        },
    )
    .await
}

async fn delete_vpn(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let public_ip_id = call.required_uuid("publicipid")?;
    jobs::submit_decided(
        ctx,
        call,
        JobMeta::on(
            "IpAddress",
            public_ip_id,
            "VPN.REMOTE.ACCESS.DESTROY",
            "removing remote access vpn".to_owned(),
        ),
        |state, ids| {
            let row = state
                .network
                .vpns
                .values()
                .find(|v| v.facts.public_ip_id == public_ip_id)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "The specified public ip is not allocated to any account",
                    )
                })?;
            let v = &row.facts;
            check_access(
                state,
                call,
                v.account_id,
                v.domain_id,
                "remote access vpn",
                v.vpn_id,
            )?;
            not_busy(state, v.account_id, || {
                format!(
                    "Unable to remove the remote access VPN of public IP address {}",
                    v.public_ip
                )
            })?;
            let body = EventBody::Vpn(VpnEvent::RemoteAccessDestroy(v.clone()));
            let on_router = row.state.programmed()
                && state
                    .network
                    .router_for(&state.compute, v.network_id, v.vpc_id)
                    .is_some();
            Ok(vec![if on_router {
                ids.request(call, body)
            } else {
                ids.event(call, body)
            }])
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn list_vpns(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let public_ip_id = call.uuid("publicipid")?;
    let network_id = call.uuid("networkid")?;
    let mut rows: Vec<&RuleRow<RemoteAccessVpnFacts>> = state
        .network
        .vpns
        .values()
        .filter(|row| {
            let v = &row.facts;
            listed(&state, call, scope, id.is_some(), v.account_id, v.domain_id)
                && id.is_none_or(|id| v.vpn_id == id)
                && public_ip_id.is_none_or(|ip| v.public_ip_id == ip)
                && network_id.is_none_or(|n| v.network_id == Some(n))
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.vpn_id));
    let (count, items) = paging.apply(
        rows.into_iter()
            .map(|r| vpn_json(&state, r, opened_psk(ctx, &r.facts)))
            .collect(),
    );
    Ok(Reply::List {
        key: "remoteaccessvpn",
        count,
        items,
    })
}

// ---------------------------------------------------------------------------------------------
// VPN users

/// CloudStack's rule for VPN user names.
fn valid_username(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && (3..=64).contains(&name.len())
        && chars.all(|c| c.is_ascii_alphanumeric() || "@._-".contains(c))
}

/// CloudStack's rule for VPN user passwords.
fn valid_password(password: &str) -> bool {
    let mut chars = password.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && (3..=32).contains(&password.len())
        && chars.all(|c| c.is_ascii_alphanumeric() || "@+=._-".contains(c))
}

/// The VPN user of `account_id` named `username`.
fn vpn_user<'s>(
    state: &'s State,
    account_id: Uuid,
    username: &str,
) -> Option<&'s RuleRow<VpnUserFacts>> {
    state
        .network
        .vpn_users
        .values()
        .find(|u| u.facts.account_id == account_id && u.facts.username == username)
}

/// The account's display name for messages.
fn account_label(state: &State, account_id: Uuid) -> CompactString {
    state
        .identity
        .account_name(account_id)
        .unwrap_or_else(|| account_id.to_string().into())
}

/// A VPN user change is a request when some router runs a VPN of the account, else a fact.
fn user_change(
    state: &State,
    call: &Call,
    ids: jobs::JobIds,
    account_id: Uuid,
    body: EventBody,
) -> engine::event::NewEvent {
    if state
        .network
        .vpn_routers(&state.compute, account_id)
        .is_empty()
    {
        ids.event(call, body)
    } else {
        ids.request(call, body)
    }
}

async fn add_vpn_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let username = call.required("username")?.to_owned();
    // Checked, then dropped: the password is never recorded.
    if !valid_username(&username) {
        return Err(ApiError::invalid_param(format!(
            "Username [{username}] is invalid. Username has to begin with an alphabet have 3-64 characters including alphabets, numbers and the set '@.-_'."
        )));
    }
    if !valid_password(call.required("password")?) {
        return Err(ApiError::invalid_param(
            "Password has to be 3-32 characters including alphabets, numbers and the set '@+=.-_'",
        ));
    }
    let user_id = Uuid::new_v4();
    let meta = JobMeta {
        instance_type: None,
        instance_id: None,
        event_type: "VPN.USER.ADD",
        description: format!("Add Remote Access VPN user username= {username}"),
        create_id: Some(user_id),
    };
    jobs::submit_decided(
        ctx,
        call,
        meta,
        |state, ids| {
            let (account_id, domain_id) = owner(call, state)?;
            if vpn_user(state, account_id, &username).is_some() {
                return Err(ApiError::invalid_param(format!(
                    "VPN User with name {username} is already added for account {}",
                    account_label(state, account_id)
                )));
            }
            not_busy(state, account_id, || {
                format!(
                    "Unable to add VPN user {{\"id\": {account_id}, \"username\": \"{username}\"}}"
                )
            })?;
            let zone_id = state
                .network
                .vpns
                .values()
                .find(|v| v.facts.account_id == account_id)
                .map(|v| v.facts.zone_id);
            let body = EventBody::Vpn(VpnEvent::UserAdd(VpnUserFacts {
                vpn_user_id: user_id,
                username: username.as_str().into(),
                account_id,
                domain_id,
                zone_id,
            }));
            Ok(vec![user_change(state, call, ids, account_id, body)])
        },
        move |state| vpn_user_reply(state, user_id),
    )
    .await
}

async fn remove_vpn_user(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let username = call.required("username")?.to_owned();
    let meta = JobMeta {
        instance_type: None,
        instance_id: None,
        event_type: "VPN.USER.REMOVE",
        description: format!("Remove Remote Access VPN user username= {username}"),
        create_id: None,
    };
    jobs::submit_decided(
        ctx,
        call,
        meta,
        |state, ids| {
            let (account_id, _) = owner(call, state)?;
            let row = vpn_user(state, account_id, &username).ok_or_else(|| {
                ApiError::invalid_param(format!(
                    "Could not find VPN user=[{username}]. VPN owner=[{}]",
                    account_label(state, account_id)
                ))
            })?;
            let row = accessible_row(
                state,
                call,
                "VPN user",
                row.facts.vpn_user_id,
                Some(row),
                |r| (r.facts.account_id, r.facts.domain_id),
            )?;
            not_busy(state, account_id, || {
                format!("Unable to remove VPN user {username}")
            })?;
            let body = EventBody::Vpn(VpnEvent::UserRemove(row.facts.clone()));
            Ok(vec![user_change(state, call, ids, account_id, body)])
        },
        |_| Ok(Reply::success()),
    )
    .await
}

async fn list_vpn_users(ctx: &Ctx, call: &Call) -> Result<Reply, ApiError> {
    let state = ctx.models.read();
    let paging = Paging::for_call(call, &state)?;
    let scope = ListScope::from_call(call, &state, false)?;
    let id = call.uuid("id")?;
    let username = call.str("username");
    let keyword = call.str("keyword");
    let mut rows: Vec<&RuleRow<VpnUserFacts>> = state
        .network
        .vpn_users
        .values()
        .filter(|row| {
            let u = &row.facts;
            listed(&state, call, scope, id.is_some(), u.account_id, u.domain_id)
                && id.is_none_or(|id| u.vpn_user_id == id)
                && username.is_none_or(|n| u.username == n)
                && keyword_matches(keyword, &[&u.username])
        })
        .collect();
    rows.sort_by_key(|r| (r.created, r.facts.vpn_user_id));
    let (count, items) = paging.apply(rows.into_iter().map(|r| vpn_user_json(&state, r)).collect());
    Ok(Reply::List {
        key: "vpnuser",
        count,
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges_are_checked_like_cloudstack() {
        assert_eq!(
            parse_ip_range("10.1.2.1-10.1.2.8").unwrap(),
            (
                u32::from(Ipv4Addr::new(10, 1, 2, 1)),
                u32::from(Ipv4Addr::new(10, 1, 2, 8))
            )
        );
        for bad in [
            "10.1.2.1",
            "10.1.2.1-10.1.2.8-10.1.2.9",
            "10.1.2.x-10.1.2.8",
            "10.1.2.8-10.1.2.1",
        ] {
            assert_eq!(parse_ip_range(bad).unwrap_err().code, 431, "{bad}");
        }
    }

    #[test]
    fn usernames_and_passwords_follow_cloudstack_rules() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b@c-d_e"));
        assert!(!valid_username("al"));
        assert!(!valid_username("_alice"));
        assert!(!valid_username("al ice"));
        assert!(!valid_username(&"a".repeat(65)));
        assert!(valid_password("s3cr=t+"));
        assert!(!valid_password("pw"));
        assert!(!valid_password("has space"));
        assert!(!valid_password(&"p".repeat(33)));
    }

    #[test]
    fn preshared_keys_are_24_letters_and_digits_and_differ() {
        let (a, b) = (generate_psk(), generate_psk());
        assert_eq!(a.len(), PSK_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}
