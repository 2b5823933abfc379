//! Answering read-only API commands from a past state of the read models, for
//! `ledgerstack state --at`: the same handlers the server runs, so an auditor sees exactly the
//! JSON the API would have answered at that moment, not a second rendering of the models.
//!
//! The answer is made in a detached context: a frozen copy of the read models, a clock stopped
//! at the moment asked about, an empty in-memory log and no listener. Only commands that read
//! are admitted; a command that appends would have nowhere durable to append to.

use std::sync::Arc;

use engine::clock::ManualClock;
use engine::secrets::MasterKeys;
use engine::store::memory::MemoryStore;
use engine::time::Timestamp;
use projections::driver::{Simulator, SimulatorConfig};
use projections::{ReadModels, State};
use uuid::Uuid;

use crate::call::{Call, Caller};
use crate::context::{Ctx, Shared};
use crate::error::ApiError;
use crate::protocol::params::Params;
use crate::registry::{self, CommandSpec, Kind, Role};
use crate::response::{Format, Reply, envelope_name, render};

/// Commands that read although their names do not start with `list`.
const READ_ONLY_COMMANDS: &[&str] = &[
    "quotaBalance",
    "quotaStatement",
    "quotaSummary",
    "quotaTariffList",
    "quotaCreditsList",
    "quotaIsEnabled",
    "queryAsyncJobResult",
];

/// Parameters a short name adds to its command, as (name, value).
pub type DefaultParams = &'static [(&'static str, &'static str)];

/// Short names for the lists auditors ask for most, with the parameters that make them list
/// everything (the command's own parameters can still override them).
pub const KINDS: &[(&str, &str, DefaultParams)] = &[
    ("accounts", "listAccounts", &[]),
    ("alerts", "listAlerts", &[]),
    ("domains", "listDomains", &[]),
    ("events", "listEvents", &[]),
    ("firewall", "listFirewallRules", &[]),
    ("hosts", "listHosts", &[]),
    ("ips", "listPublicIpAddresses", &[]),
    ("isos", "listIsos", &[("isofilter", "all")]),
    ("jobs", "listAsyncJobs", &[]),
    ("loadbalancers", "listLoadBalancerRules", &[]),
    ("networks", "listNetworks", &[]),
    ("portforwarding", "listPortForwardingRules", &[]),
    ("routers", "listRouters", &[]),
    ("securitygroups", "listSecurityGroups", &[]),
    ("snapshots", "listSnapshots", &[]),
    ("templates", "listTemplates", &[("templatefilter", "all")]),
    ("users", "listUsers", &[]),
    ("vms", "listVirtualMachines", &[]),
    ("volumes", "listVolumes", &[]),
    ("vpcs", "listVPCs", &[]),
    ("zones", "listZones", &[]),
];

/// The command `kind` names (a short name of [`KINDS`] or a read-only command's own name) and
/// the parameters that go with the short name.
pub fn resolve_kind(kind: &str) -> Result<(&'static CommandSpec, DefaultParams), ApiError> {
    let (name, defaults) = match KINDS.iter().find(|(short, _, _)| *short == kind) {
        Some((_, name, defaults)) => (*name, *defaults),
        None => (kind, &[][..]),
    };
    let spec = registry::find(name).ok_or_else(|| {
        let short: Vec<&str> = KINDS.iter().map(|(short, _, _)| *short).collect();
        ApiError::invalid_param(format!(
            "{kind:?} is neither one of {} nor an API command",
            short.join(", ")
        ))
    })?;
    let reads = spec.kind == Kind::Sync
        && !spec.manual_clock_only
        && (spec.name.starts_with("list") || READ_ONLY_COMMANDS.contains(&spec.name));
    if !reads {
        return Err(ApiError::invalid_param(format!(
            "{} changes state or is asynchronous: only list commands (and quota reports) can be answered from the past",
            spec.name
        )));
    }
    Ok((spec, defaults))
}

/// Answers `kind` with `params` from `state` as the root admin would have seen it at `now`:
/// the whole response, `{"<command>response": {...}}`, rendered as the API renders JSON (the
/// same bytes, null members dropped).
///
/// `keys` opens the secrets a list shows to the root admin (the data directory's master key).
/// Errors are the API's own: an unknown parameter value answers 431 as the server would.
pub async fn answer(
    state: State,
    now: Timestamp,
    keys: MasterKeys,
    kind: &str,
    params: &[(String, String)],
) -> Result<String, ApiError> {
    let (spec, defaults) = resolve_kind(kind)?;
    let caller = root_admin(&state)?;
    let mut call_params = Params::default();
    call_params.insert("command", spec.name);
    call_params.insert("response", "json");
    if spec.all_params().any(|p| p.name == "listall") {
        call_params.insert("listall", "true");
    }
    for (name, value) in defaults {
        call_params.insert(name, value);
    }
    for (name, value) in params {
        call_params.insert(name, value);
    }
    call_params
        .validate_maps()
        .map_err(|e| ApiError::malformed_map(e.to_string()))?;
    crate::server::check_params(spec, &call_params)?;
    let clock = ManualClock::new(now);
    let ctx = Ctx::new(Shared {
        store: Arc::new(MemoryStore::new(clock.clone())),
        models: ReadModels::frozen(state),
        simulator: Simulator::new(SimulatorConfig::default()),
        keys,
        clock: Arc::new(clock),
        manual_clock: None,
        sessions: Default::default(),
        throttle: Default::default(),
        secret_cache: Default::default(),
        metrics: None,
    });
    let call = Call {
        command: spec,
        params: call_params,
        caller,
        request_id: Uuid::nil(),
        remote_ip: "127.0.0.1".to_owned(),
    };
    let body = match (spec.handler)(&ctx, &call).await? {
        // Read-only commands never answer with a job; refuse rather than start one.
        Reply::Async(_) => {
            return Err(ApiError::internal(format!(
                "{} answered with an async job",
                spec.name
            )));
        }
        reply => reply.into_body(),
    };
    Ok(render(&envelope_name(spec.name), body, Format::Json))
}

/// The root admin as of `state` (the first root-admin user created).
fn root_admin(state: &State) -> Result<Caller, ApiError> {
    state
        .identity
        .users
        .values()
        .filter_map(|user| {
            let account = state.identity.accounts.get(&user.facts.account_id)?;
            (account.facts.account_type.code() == 1).then_some((user, account))
        })
        .min_by_key(|(user, _)| (user.created, user.facts.user_id))
        .map(|(user, account)| Caller {
            user_id: user.facts.user_id,
            account_id: account.facts.account_id,
            domain_id: account.facts.domain_id,
            role: Role::RootAdmin,
        })
        .ok_or_else(|| {
            ApiError::invalid_param(
                "the log holds no root admin at that moment (the server had not started yet)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_short_name_is_a_read_only_command() {
        for (short, command, _) in KINDS {
            let (spec, _) = resolve_kind(short).unwrap_or_else(|e| panic!("{short}: {}", e.text));
            assert_eq!(spec.name, *command);
        }
        assert!(resolve_kind("listUsageRecords").is_ok());
        assert!(resolve_kind("quotaBalance").is_ok());
        for refused in [
            "deployVirtualMachine",
            "quotaCredits",
            "advanceClock",
            "gizmos",
        ] {
            assert_eq!(resolve_kind(refused).unwrap_err().code, 431, "{refused}");
        }
    }
}
