//! Settings: the catalogue of what Ledgerstack reads (with defaults and validation) and the
//! values set through `updateConfiguration`, globally or per account, domain or zone.

use engine::event::infrastructure::ConfigScope;
use engine::event::{ConfigurationEvent, EventBody, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::table::{PersistedTable, Table};

/// What values a setting takes, checked by `updateConfiguration` before anything is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// `true` or `false`.
    Boolean,
    /// A whole number in `[min, max]`.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A decimal fraction in `[0, 1]` (capacity notification thresholds).
    Fraction,
    /// An IANA time zone name (or `GMT`/`UTC`).
    TimeZone,
    /// `HH:MM`, 24-hour.
    TimeOfDay,
    /// Free text.
    Text,
}

impl SettingKind {
    /// CloudStack's `type` for the setting in `listConfigurations`.
    pub fn type_name(self) -> &'static str {
        match self {
            SettingKind::Boolean => "Boolean",
            SettingKind::Integer { .. } => "Number",
            SettingKind::Fraction => "Decimal",
            SettingKind::TimeZone | SettingKind::TimeOfDay | SettingKind::Text => "String",
        }
    }

    /// Why `value` is not acceptable, if it is not.
    pub fn validate(self, value: &str) -> Result<(), String> {
        match self {
            SettingKind::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => Err("must be true or false".into()),
            },
            SettingKind::Integer { min, max } => match value.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(format!("must be a whole number from {min} to {max}")),
            },
            SettingKind::Fraction => match value.parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => Ok(()),
                _ => Err("must be a decimal number from 0 to 1".into()),
            },
            SettingKind::TimeZone => {
                if value.parse::<chrono_tz::Tz>().is_ok() {
                    Ok(())
                } else {
                    Err("must be an IANA time zone name such as Europe/Paris or GMT".into())
                }
            }
            SettingKind::TimeOfDay => {
                let ok = value.len() == 5
                    && value.as_bytes()[2] == b':'
                    && matches!(value[..2].parse::<u8>(), Ok(h) if h < 24)
                    && matches!(value[3..].parse::<u8>(), Ok(m) if m < 60);
                if ok {
                    Ok(())
                } else {
                    Err("must be a time of day as HH:MM".into())
                }
            }
            SettingKind::Text => Ok(()),
        }
    }
}

/// One setting Ledgerstack reads.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name, such as `default.page.size`.
    pub name: &'static str,
    /// CloudStack's category (`Advanced`, `Usage`, `Alert`, ...).
    pub category: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Value when nothing was set.
    pub default: &'static str,
    /// Accepted values.
    pub kind: SettingKind,
    /// Where else than globally it may be set.
    pub scopes: &'static [ConfigScope],
}

const GLOBAL: &[ConfigScope] = &[];
const ACCOUNT: &[ConfigScope] = &[ConfigScope::Account, ConfigScope::Domain];

/// Every setting Ledgerstack reads. Later features add theirs here, so `listConfigurations`
/// always shows the complete set.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "default.page.size",
        category: "Advanced",
        description: "Default page size for API list calls, and the largest page a caller may ask for",
        default: "500",
        kind: SettingKind::Integer {
            min: 1,
            max: 100_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "api.throttling.enabled",
        category: "Advanced",
        description: "Enable API rate limiting per account",
        default: "false",
        kind: SettingKind::Boolean,
        scopes: GLOBAL,
    },
    Setting {
        name: "api.throttling.interval",
        category: "Advanced",
        description: "Time interval (in seconds) over which api.throttling.max calls are counted",
        default: "1",
        kind: SettingKind::Integer {
            min: 1,
            max: 86_400,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "api.throttling.max",
        category: "Advanced",
        description: "Largest number of API calls an account may make within one interval",
        default: "25",
        kind: SettingKind::Integer {
            min: 1,
            max: 1_000_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "api.throttling.cachesize",
        category: "Advanced",
        description: "Largest number of accounts whose API call counts are tracked at once",
        default: "50000",
        kind: SettingKind::Integer {
            min: 1,
            max: 10_000_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "alert.delivery.backoff.base",
        category: "Alert",
        description: "Milliseconds before the second attempt to deliver an alert to a sink; each further attempt waits twice as long (Ledgerstack)",
        default: "30000",
        kind: SettingKind::Integer {
            min: 1,
            max: 86_400_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "alert.delivery.backoff.max",
        category: "Alert",
        description: "Longest wait between two attempts to deliver an alert, in milliseconds (Ledgerstack)",
        default: "3600000",
        kind: SettingKind::Integer {
            min: 1,
            max: 604_800_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "usage.stats.job.aggregation.range",
        category: "Usage",
        description: "Length of a usage period in minutes (1440: daily)",
        default: "1440",
        kind: SettingKind::Integer {
            min: 1,
            max: 527_040,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "usage.lag.alert.minutes",
        category: "Usage",
        description: "Minutes the closed usage periods may trail the clock beyond one aggregation range before ALERT.USAGE (13) is raised; resolved once usage catches up (Ledgerstack)",
        default: "60",
        kind: SettingKind::Integer {
            min: 0,
            max: 527_040,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "usage.aggregation.timezone",
        category: "Usage",
        description: "Time zone whose calendar usage periods follow",
        default: "GMT",
        kind: SettingKind::TimeZone,
        scopes: ACCOUNT,
    },
    Setting {
        name: "usage.stats.job.exec.time",
        category: "Usage",
        description: "Time of day (HH:MM, in usage.execution.timezone) at which usage periods are closed",
        default: "00:15",
        kind: SettingKind::TimeOfDay,
        scopes: GLOBAL,
    },
    Setting {
        name: "usage.execution.timezone",
        category: "Usage",
        description: "Time zone of usage.stats.job.exec.time",
        default: "GMT",
        kind: SettingKind::TimeZone,
        scopes: GLOBAL,
    },
    Setting {
        name: "quota.enable.service",
        category: "Quota",
        description: "Compute quota balances from usage records",
        default: "false",
        kind: SettingKind::Boolean,
        scopes: GLOBAL,
    },
    Setting {
        name: "quota.enable.enforcement",
        category: "Quota",
        description: "Lock accounts whose quota balance falls below zero",
        default: "false",
        kind: SettingKind::Boolean,
        scopes: ACCOUNT,
    },
    Setting {
        name: "quota.currency.symbol",
        category: "Quota",
        description: "Currency symbol shown with quota amounts",
        default: "$",
        kind: SettingKind::Text,
        scopes: GLOBAL,
    },
    Setting {
        name: "quota.currency.locale",
        category: "Quota",
        description: "Locale used to format quota amounts",
        default: "en_US",
        kind: SettingKind::Text,
        scopes: GLOBAL,
    },
    Setting {
        name: "quota.statement.period",
        category: "Quota",
        description: "Quota statement period: 0 biweekly, 1 monthly, 2 quarterly, 3 half-yearly, 4 yearly",
        default: "1",
        kind: SettingKind::Integer { min: 0, max: 4 },
        scopes: ACCOUNT,
    },
    Setting {
        name: "cluster.memory.allocated.capacity.notificationthreshold",
        category: "Alert",
        description: "Fraction of memory allocated in a cluster above which an alert is raised",
        default: "0.75",
        kind: SettingKind::Fraction,
        scopes: GLOBAL,
    },
    Setting {
        name: "cluster.cpu.allocated.capacity.notificationthreshold",
        category: "Alert",
        description: "Fraction of CPU allocated in a cluster above which an alert is raised",
        default: "0.75",
        kind: SettingKind::Fraction,
        scopes: GLOBAL,
    },
    Setting {
        name: "cluster.storage.allocated.capacity.notificationthreshold",
        category: "Alert",
        description: "Fraction of storage allocated above which an alert is raised",
        default: "0.75",
        kind: SettingKind::Fraction,
        scopes: GLOBAL,
    },
    Setting {
        name: "zone.virtualnetwork.publicip.capacity.notificationthreshold",
        category: "Alert",
        description: "Fraction of a zone's public IPs allocated above which an alert is raised",
        default: "0.75",
        kind: SettingKind::Fraction,
        // CloudStack scopes it per zone.
        scopes: &[ConfigScope::Zone],
    },
    Setting {
        name: "max.account.user.vms",
        category: "Account Defaults",
        description: "The default maximum number of user VMs an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.public.ips",
        category: "Account Defaults",
        description: "The default maximum number of public IPs an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.volumes",
        category: "Account Defaults",
        description: "The default maximum number of volumes an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.snapshots",
        category: "Account Defaults",
        description: "The default maximum number of snapshots an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.templates",
        category: "Account Defaults",
        description: "The default maximum number of templates an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.networks",
        category: "Account Defaults",
        description: "The default maximum number of guest networks an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.vpcs",
        category: "Account Defaults",
        description: "The default maximum number of VPCs an account may have (-1: unlimited)",
        default: "20",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.cpus",
        category: "Account Defaults",
        description: "The default maximum number of vCPUs an account may have (-1: unlimited)",
        default: "40",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.memory",
        category: "Account Defaults",
        description: "The default maximum number of MiB of memory an account may have (-1: unlimited)",
        default: "40960",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.primary.storage",
        category: "Account Defaults",
        description: "The default maximum number of GiB of primary storage an account may have (-1: unlimited)",
        default: "200",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "max.account.secondary.storage",
        category: "Account Defaults",
        description: "The default maximum number of GiB of secondary storage an account may have (-1: unlimited)",
        default: "400",
        kind: SettingKind::Integer {
            min: -1,
            max: i64::MAX,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "allow.user.expunge.recover.vm",
        category: "Advanced",
        description: "Whether users (not only admins) may expunge and recover their destroyed VMs",
        default: "false",
        kind: SettingKind::Boolean,
        scopes: GLOBAL,
    },
    Setting {
        name: "vm.disk.stats.interval",
        category: "Advanced",
        description: "Interval in seconds between readings of every running VM's disk counters (0: off)",
        default: "0",
        kind: SettingKind::Integer {
            min: 0,
            max: 31_536_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "router.stats.interval",
        category: "Advanced",
        description: "Interval (in seconds) to report router statistics.",
        default: "300",
        kind: SettingKind::Integer {
            min: 0,
            max: 31_536_000,
        },
        scopes: GLOBAL,
    },
    Setting {
        name: "remote.access.vpn.client.iprange",
        category: "Network",
        description: "The range of ips to be allocated to remote access vpn clients. The first ip in the range is used by the VPN server",
        default: "10.1.2.1-10.1.2.8",
        kind: SettingKind::Text,
        scopes: ACCOUNT,
    },
];

/// The setting with this name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// A value set for a setting somewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    /// Setting name.
    pub name: String,
    /// Where it applies.
    pub scope: ConfigScope,
    /// The account, domain or zone, for a scoped value.
    pub scope_id: Option<Uuid>,
    /// The value.
    pub value: String,
}

/// The configuration read model: values set through `updateConfiguration`.
#[derive(Debug)]
pub struct Configuration {
    /// Values by `scope/scope_id/name`.
    pub values: Table<String, ConfigValue>,
}

impl Default for Configuration {
    fn default() -> Self {
        Configuration {
            values: Table::new("configuration"),
        }
    }
}

fn value_key(name: &str, scope: ConfigScope, scope_id: Option<Uuid>) -> String {
    let scope_id = scope_id.map(|id| id.to_string()).unwrap_or_default();
    format!("{scope:?}/{scope_id}/{name}")
}

impl Configuration {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 1] {
        [&mut self.values]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent) {
        if let EventBody::Configuration(ConfigurationEvent::ValueEdit(e)) = &*event.body {
            let key = value_key(&e.name, e.scope, e.scope_id);
            match &e.value {
                Some(value) => self.values.insert(
                    key,
                    ConfigValue {
                        name: e.name.to_string(),
                        scope: e.scope,
                        scope_id: e.scope_id,
                        value: value.clone(),
                    },
                ),
                None => {
                    self.values.remove(&key);
                }
            }
        }
    }

    /// The value set at exactly this scope, if any.
    pub fn value_at(&self, name: &str, scope: ConfigScope, scope_id: Option<Uuid>) -> Option<&str> {
        self.values
            .get(&value_key(name, scope, scope_id))
            .map(|v| v.value.as_str())
    }

    /// The global value of a setting: set, or its default. Unknown names give `None`.
    pub fn global(&self, name: &str) -> Option<String> {
        let setting = setting(name)?;
        Some(
            self.value_at(name, ConfigScope::Global, None)
                .unwrap_or(setting.default)
                .to_owned(),
        )
    }

    /// A global integer setting, falling back to its default if the stored value is unusable.
    pub fn global_i64(&self, name: &str) -> i64 {
        let default = setting(name)
            .and_then(|s| s.default.parse().ok())
            .unwrap_or(0);
        self.global(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// A global boolean setting.
    pub fn global_bool(&self, name: &str) -> bool {
        self.global(name).as_deref() == Some("true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_passes_its_own_validation() {
        for s in SETTINGS {
            assert_eq!(s.kind.validate(s.default), Ok(()), "{}", s.name);
        }
    }

    #[test]
    fn bad_values_are_explained() {
        let page = setting("default.page.size").unwrap();
        assert!(page.kind.validate("0").unwrap_err().contains("from 1"));
        assert!(SettingKind::TimeZone.validate("Mars/Olympus").is_err());
        assert!(SettingKind::TimeZone.validate("Europe/Paris").is_ok());
        assert!(SettingKind::TimeOfDay.validate("24:00").is_err());
        assert!(SettingKind::TimeOfDay.validate("00:15").is_ok());
    }
}
