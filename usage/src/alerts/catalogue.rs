//! The alert types `listAlertTypes` lists: CloudStack's `AlertService.AlertType` defaults, in
//! declaration order (several share a number there, and CloudStack lists each of them), then
//! Ledgerstack's own types from 1001 on.

/// An alert type: CloudStack's number and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertType {
    /// The number (`type` in `listAlerts`, `alerttypeid` in `listAlertTypes`).
    pub id: u16,
    /// The name, such as `ALERT.USAGE`.
    pub name: &'static str,
}

const fn t(id: u16, name: &'static str) -> AlertType {
    AlertType { id, name }
}

impl AlertType {
    /// Memory allocated in a cluster crossed
    /// `cluster.memory.allocated.capacity.notificationthreshold` (see [`super::capacity`]).
    pub const MEMORY: AlertType = t(0, "ALERT.MEMORY");
    /// CPU allocated in a cluster crossed `cluster.cpu.allocated.capacity.notificationthreshold`.
    pub const CPU: AlertType = t(1, "ALERT.CPU");
    /// Primary storage used crossed `cluster.storage.capacity.notificationthreshold`
    /// (not measured: Ledgerstack has no primary storage pools).
    pub const STORAGE: AlertType = t(2, "ALERT.STORAGE");
    /// Public IPs allocated in a zone crossed
    /// `zone.virtualnetwork.publicip.capacity.notificationthreshold`.
    pub const PUBLIC_IP: AlertType = t(4, "ALERT.NETWORK.PUBLICIP");
    /// The usage computation is not running or lags.
    pub const USAGE: AlertType = t(13, "ALERT.USAGE");
    /// A usage run failed (cleared by the next success).
    pub const USAGE_RESULT: AlertType = t(20, "ALERT.USAGE.RESULT");
    /// The usage sanity check found problems.
    pub const USAGE_SANITY: AlertType = t(23, "ALERT.USAGE.SANITY");
    /// Ledgerstack: an account's quota balance fell below its minimum balance.
    pub const QUOTA_LOW: AlertType = t(1001, "ALERT.QUOTA.LOW");
    /// Ledgerstack: an account's quota balance fell below zero.
    pub const QUOTA_EMPTY: AlertType = t(1002, "ALERT.QUOTA.EMPTY");
    /// Ledgerstack: an account's usage or spend crossed one of its usage thresholds.
    pub const USAGE_THRESHOLD: AlertType = t(1003, "ALERT.USAGE.THRESHOLD");

    /// Every type `listAlertTypes` lists, in that order.
    pub const ALL: &'static [AlertType] = &[
        AlertType::MEMORY,
        AlertType::CPU,
        AlertType::STORAGE,
        t(3, "ALERT.STORAGE.ALLOCATED"),
        AlertType::PUBLIC_IP,
        t(10, "ALERT.NETWORK.IPV6SUBNET"),
        t(5, "ALERT.NETWORK.PRIVATEIP"),
        t(6, "ALERT.STORAGE.SECONDARY"),
        t(7, "ALERT.COMPUTE.HOST"),
        t(8, "ALERT.USERVM"),
        t(9, "ALERT.SERVICE.DOMAINROUTER"),
        t(10, "ALERT.SERVICE.CONSOLEPROXY"),
        t(11, "ALERT.NETWORK.ROUTING"),
        t(12, "ALERT.STORAGE.MISC"),
        AlertType::USAGE,
        t(14, "ALERT.MANAGEMENT"),
        t(15, "ALERT.NETWORK.DOMAINROUTERMIGRATE"),
        t(16, "ALERT.SERVICE.CONSOLEPROXYMIGRATE"),
        t(17, "ALERT.USERVM.MIGRATE"),
        t(18, "ALERT.NETWORK.VLAN"),
        t(19, "ALERT.SERVICE.SSVM"),
        AlertType::USAGE_RESULT,
        t(21, "ALERT.STORAGE.DELETE"),
        t(22, "ALERT.RESOURCE.COUNT"),
        AlertType::USAGE_SANITY,
        t(24, "ALERT.NETWORK.DIRECTPUBLICIP"),
        t(25, "ALERT.STORAGE.LOCAL"),
        t(26, "ALERT.RESOURCE.EXCEED"),
        t(27, "ALERT.TYPE.SYNC"),
        t(28, "ALERT.UPLOAD.FAILED"),
        t(29, "ALERT.OOBM.AUTHERROR"),
        t(30, "ALERT.HA.ACTION"),
        t(31, "ALERT.CA.CERT"),
        t(32, "ALERT.VM.SNAPSHOT"),
        t(32, "ALERT.VR.PUBLIC.IFACE.MTU"),
        t(32, "ALERT.VR.PRIVATE.IFACE.MTU"),
        t(33, "ALERT.TYPE.EXTENSION.PATH.NOT.READY"),
        t(21, "ALERT.STORAGE.BACKUP"),
        t(20, "ALERT.STORAGE.OBJECT"),
        AlertType::QUOTA_LOW,
        AlertType::QUOTA_EMPTY,
        AlertType::USAGE_THRESHOLD,
    ];

    /// The listed type `generateAlert` raises for number `id` and name `name`: a listed number
    /// must be named as listed (case-insensitively, as CloudStack compares); an unlisted number
    /// is a custom type with the caller's name (`Ok(None)`). `Err` carries the listed type the
    /// name contradicts.
    pub fn for_generate(id: u16, name: &str) -> Result<Option<AlertType>, AlertType> {
        let mut listed = AlertType::ALL.iter().filter(|t| t.id == id).peekable();
        let Some(first) = listed.peek().copied().copied() else {
            return Ok(None);
        };
        listed
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .copied()
            .map(Some)
            .ok_or(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_checks_names_of_listed_types() {
        assert_eq!(
            AlertType::for_generate(13, "alert.usage"),
            Ok(Some(AlertType::USAGE))
        );
        assert_eq!(
            AlertType::for_generate(32, "ALERT.VR.PUBLIC.IFACE.MTU").map(|t| t.map(|t| t.name)),
            Ok(Some("ALERT.VR.PUBLIC.IFACE.MTU"))
        );
        assert_eq!(AlertType::for_generate(13, "OTHER"), Err(AlertType::USAGE));
        assert_eq!(AlertType::for_generate(500, "MINE"), Ok(None));
    }

    #[test]
    fn ledgerstack_types_follow_cloudstacks() {
        let ids: Vec<u16> = AlertType::ALL.iter().rev().take(3).map(|t| t.id).collect();
        assert_eq!(ids, [1003, 1002, 1001]);
    }
}
