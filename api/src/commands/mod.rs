//! One module per command family (as mini-redis keeps one file per command): each holds its
//! commands' table entries, parameter handling, authorization and the call into the log or a
//! read model.

pub mod accounts;
pub mod alert_sinks;
pub mod alerts;
pub mod catalog;
pub mod clock;
pub mod configuration;
pub mod discovery;
pub mod domains;
pub mod events;
pub mod firewall_rules;
pub mod infrastructure;
pub mod jobs;
pub mod keypairs;
pub mod limits;
pub mod load_balancers;
pub mod nat_rules;
pub mod networks;
pub mod nics;
pub mod public_ips;
pub mod quota;
pub mod render;
pub mod routers;
pub mod security_groups;
pub mod session;
pub mod snapshots;
pub mod tags;
pub mod templates;
pub mod usage;
pub mod usage_thresholds;
pub mod users;
pub mod vms;
pub mod volumes;
pub mod vpcs;
pub mod vpn;

use engine::time::Timestamp;
use projections::State;
use projections::jobs::JobRow;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::protocol::dates::format_date;
use crate::registry::{ResponseField, field};
use crate::response::Reply;

/// A time as CloudStack shows it: `2024-05-01T10:00:00+0000`.
pub fn date(at: Timestamp) -> String {
    format_date(at.to_datetime())
}

/// The response fields of a command answering `success` (SuccessResponse).
pub const SUCCESS_FIELDS: &[ResponseField] = &[
    field(
        "success",
        "boolean",
        "true if operation is executed successfully",
    ),
    field(
        "displaytext",
        "string",
        "any text associated with the success or failure",
    ),
];

/// The reply `{key: render(row)}` of a resource fetched by id, or CloudStack's 431
/// "Unable to find `what` by id `id`" when the read model has no such row: how every
/// `*_reply` renders a command's result.
pub(crate) fn row_reply<R>(
    row: Option<&R>,
    key: &'static str,
    what: &str,
    id: Uuid,
    render: impl FnOnce(&R) -> Value,
) -> Result<Reply, ApiError> {
    let row =
        row.ok_or_else(|| ApiError::invalid_param(format!("Unable to find {what} by id {id}")))?;
    Ok(Reply::Object {
        key,
        value: render(row),
    })
}

/// The reply of a job that waited for a driver command across a server restart, rendered
/// from the read models once the command's result is in (see `jobs::settle_interrupted`).
pub fn render_job_result(state: &State, job: &JobRow) -> Result<Reply, ApiError> {
    let instance = job.instance_id.unwrap_or(Uuid::nil());
    match job.command.as_str() {
        "deployVirtualMachine"
        | "startVirtualMachine"
        | "stopVirtualMachine"
        | "rebootVirtualMachine"
        | "destroyVirtualMachine"
        | "scaleVirtualMachine"
        | "migrateVirtualMachine" => vms::vm_reply(state, instance),
        "attachVolume" | "detachVolume" | "resizeVolume" | "uploadVolume" | "createVolume" => {
            volumes::volume_reply(state, instance)
        }
        "createSnapshot" => snapshots::snapshot_reply(state, instance),
        "createVMSnapshot" => snapshots::vm_snapshot_reply(state, instance),
        "revertToVMSnapshot" => snapshots::reverted_vm_reply(state, instance),
        "deleteVMSnapshot" | "deleteSnapshot" => Ok(Reply::success()),
        "associateIpAddress" => public_ips::ip_reply(state, instance),
        "disassociateIpAddress" | "disableStaticNat" | "deleteNetwork" | "restartNetwork" => {
            Ok(Reply::success())
        }
        "startRouter" | "stopRouter" | "rebootRouter" => routers::router_reply(state, instance),
        "destroyRouter" => Ok(routers::destroyed_router_reply(instance)),
        "createVPC" => vpcs::vpc_reply(state, instance),
        "authorizeSecurityGroupIngress" | "authorizeSecurityGroupEgress" => {
            security_groups::group_reply(state, instance, None)
        }
        "createRemoteAccessVpn" => vpn::vpn_reply_for_ip(state, instance),
        "addVpnUser" => vpn::vpn_user_reply(state, instance),
        "restartVPC"
        | "deleteVPC"
        | "revokeSecurityGroupIngress"
        | "revokeSecurityGroupEgress"
        | "deleteRemoteAccessVpn"
        | "removeVpnUser" => Ok(Reply::success()),
        "createPortForwardingRule" | "updatePortForwardingRule" => {
            nat_rules::port_forwarding_reply(state, instance)
        }
        "createIpForwardingRule" => nat_rules::ip_forwarding_reply(state, instance),
        "createFirewallRule" | "createEgressFirewallRule" => {
            firewall_rules::firewall_reply(state, instance)
        }
        "createLoadBalancerRule" | "updateLoadBalancerRule" => {
            load_balancers::load_balancer_reply(state, instance)
        }
        "deletePortForwardingRule"
        | "deleteIpForwardingRule"
        | "deleteFirewallRule"
        | "deleteEgressFirewallRule"
        | "deleteLoadBalancerRule"
        | "assignToLoadBalancerRule"
        | "removeFromLoadBalancerRule" => Ok(Reply::success()),
        other => Err(ApiError::internal(format!(
            "no result view for {other} after a restart"
        ))),
    }
}
