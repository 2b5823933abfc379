//! Published usage records as `listUsageRecords` (and the export) show them: one record
//! flattened with every field of spec/usage.md "Record fields", and the query that selects,
//! orders and pages them.
//!
//! Everything here is a pure function of the read models: no clock, no floats. Hours are
//! derived from integer milliseconds with integer arithmetic and shown as `rust_decimal`.

use chrono_tz::Tz;
use engine::time::Timestamp;
use projections::State;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::fact::{RecordFacts, TrackKey};
use crate::facts::record_description;
use crate::ledger::{RecordKey, RecordRow, Superseded};
use crate::model::UsageModel;
use crate::usage_type::{Unit, UsageType};

/// Decimal places of `rawusage` and of the hours in `usage` (CloudStack's `#.######`).
const HOUR_DECIMALS: u32 = 6;

/// The displayed end of a record is the period's last second (CloudStack shows `...T23:59:59`
/// for a daily record): the exclusive end minus this.
const LAST_SECOND_MS: i64 = 1_000;

/// One published revision of a usage record, flattened for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// The record's key (period start, account, type, entity, sub id, variant).
    pub key: RecordKey,
    /// `account`: the account's name; `None` once the account is deleted (the identity model
    /// forgets deleted accounts, the records stay).
    pub account: Option<String>,
    /// `accountid`.
    pub account_id: Uuid,
    /// `domainid`: the account's domain when the interval opened.
    pub domain_id: Uuid,
    /// `domain`: that domain's name.
    pub domain: Option<String>,
    /// `domainpath`, as CloudStack prints it (`ROOT/customers`).
    pub domain_path: Option<String>,
    /// `zoneid`.
    pub zone_id: Option<Uuid>,
    /// `description`, current wording or `oldformat`'s stored form.
    pub description: String,
    /// `usage`: CloudStack's display string (`"2.95288 Hrs"`, `"1024 bytes sent"`).
    pub usage: String,
    /// `usagetype`.
    pub usage_type: UsageType,
    /// `rawusage`: hours rounded half-even to 6 decimals, or the counter, as text.
    pub raw_usage: String,
    /// The same number as a decimal (hours rounded to 6 places, or the counter), for callers
    /// that compute with it (quota).
    pub raw_quantity: Decimal,
    /// The exact stored quantity: milliseconds for time-based types, bytes or operations for
    /// counters.
    pub quantity: u64,
    /// `virtualmachineid`.
    pub vm_id: Option<Uuid>,
    /// `name`.
    pub name: Option<String>,
    /// `offeringid`.
    pub offering_id: Option<Uuid>,
    /// `templateid`.
    pub template_id: Option<Uuid>,
    /// `usageid`: the entity's id (for counters, the device's).
    pub usage_id: Uuid,
    /// `type`: hypervisor, device type or `SourceNat`.
    pub kind: Option<String>,
    /// `size` in bytes.
    pub size: Option<u64>,
    /// `virtualsize` in bytes.
    pub virtual_size: Option<u64>,
    /// `cpunumber`.
    pub cpu_number: Option<u32>,
    /// `cpuspeed`.
    pub cpu_speed: Option<u32>,
    /// `memory`.
    pub memory: Option<u64>,
    /// Start of the period (inclusive).
    pub start: Timestamp,
    /// End of the period (exclusive).
    pub end: Timestamp,
    /// `startdate`, with the UTC offset of the record's aggregation zone at the start.
    pub start_date: String,
    /// `enddate`: the period's last second, with the zone's offset at that second.
    pub end_date: String,
    /// `issourcenat`.
    pub is_source_nat: Option<bool>,
    /// `issystem`.
    pub is_system: Option<bool>,
    /// `isdefault`.
    pub is_default: Option<bool>,
    /// `networkid`.
    pub network_id: Option<Uuid>,
    /// `vpcid`.
    pub vpc_id: Option<Uuid>,
    /// `revision` (Ledgerstack): 1 when first published, one more per correction.
    pub revision: u32,
    /// `publishedat` (Ledgerstack): when this revision was published.
    pub published_at: Timestamp,
    /// True for a revision a correction replaced (listed only when asked for).
    pub superseded: bool,
}

impl RecordView {
    /// The current revision of a record. `zone` is the record's aggregation zone (the rule in
    /// force at the period's start), whose offsets the dates are printed with.
    pub fn new(
        key: &RecordKey,
        row: &RecordRow,
        facts: &RecordFacts,
        state: &State,
        zone: Tz,
        old_format: bool,
    ) -> RecordView {
        let usage_type = key.track.usage_type;
        let domain = state.identity.domains.get(&facts.domain_id);
        let start = Timestamp::from_millis(key.period_start);
        let (usage, raw_usage, raw_quantity) = display_quantity(usage_type, row.quantity);
        RecordView {
            key: *key,
            account: state
                .identity
                .account_name(key.track.account_id)
                .map(|n| n.to_string()),
            account_id: key.track.account_id,
            domain_id: facts.domain_id,
            domain: domain.map(|d| d.facts.name.to_string()),
            domain_path: domain.map(|d| pretty_domain_path(&d.facts.path)),
            zone_id: facts.zone_id,
            description: record_description(facts, usage_type, row.quantity, old_format),
            usage,
            usage_type,
            raw_usage,
            raw_quantity,
            quantity: row.quantity,
            vm_id: facts.vm_id,
            name: facts.name.clone(),
            offering_id: facts.offering_id,
            template_id: facts.template_id,
            usage_id: key.track.entity_id,
            kind: facts.kind.clone(),
            size: facts.size,
            virtual_size: facts.virtual_size,
            cpu_number: facts.cpu_number,
            cpu_speed: facts.cpu_speed,
            memory: facts.memory,
            start,
            end: row.period_end,
            start_date: zoned_date(start, zone),
            end_date: zoned_date(displayed_end(row.period_end), zone),
            is_source_nat: facts.is_source_nat,
            is_system: facts.is_system,
            is_default: facts.is_default,
            network_id: facts.network_id,
            vpc_id: facts.vpc_id,
            revision: row.revision,
            published_at: row.published_at,
            superseded: false,
        }
    }

    /// The same record as it was in a revision a correction replaced (`facts` and
    /// `old_format` as given to [`RecordView::new`]: a counter's description names its
    /// quantity).
    pub fn as_superseded(
        &self,
        old: &Superseded,
        facts: &RecordFacts,
        old_format: bool,
    ) -> RecordView {
        let (usage, raw_usage, raw_quantity) = display_quantity(self.usage_type, old.quantity);
        RecordView {
            description: record_description(facts, self.usage_type, old.quantity, old_format),
            usage,
            raw_usage,
            raw_quantity,
            quantity: old.quantity,
            revision: old.revision,
            published_at: old.published_at,
            superseded: true,
            ..self.clone()
        }
    }
}

/// `usage`, `rawusage` and the raw number of a quantity of `usage_type`.
fn display_quantity(usage_type: UsageType, quantity: u64) -> (String, String, Decimal) {
    match usage_type.unit() {
        Unit::Hours => {
            let hours = hours_rounded(quantity);
            let text = java_decimal_text(hours);
            (format!("{text} Hrs"), text, hours)
        }
        Unit::Bytes | Unit::Count => (
            format!("{quantity} {}", usage_type.counter_suffix()),
            quantity.to_string(),
            Decimal::from(quantity),
        ),
    }
}

/// Milliseconds as hours rounded half-even to 6 decimals, exactly: the micro-hours are
/// `ms / 3.6` = `ms × 5 / 18`, rounded in integers (no floats, no double rounding).
pub fn hours_rounded(millis: u64) -> Decimal {
    let numerator = u128::from(millis) * 5;
    let (quotient, remainder) = (numerator / 18, numerator % 18);
    let micro_hours = match (remainder * 2).cmp(&18) {
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient % 2),
        std::cmp::Ordering::Less => quotient,
    };
    // u64 milliseconds give at most ~5.1e18 micro-hours: well inside i128 and Decimal's 96 bits.
    Decimal::from_i128_with_scale(micro_hours as i128, HOUR_DECIMALS)
}

/// A number as Java's `DecimalFormat("#.######")` prints it, which CloudStack uses for
/// `usage` and `rawusage`: no trailing zeros, no decimal point for whole numbers, and no
/// leading zero before the point (`0.5` is `.5`).
pub fn java_decimal_text(value: Decimal) -> String {
    let text = value.normalize().to_string();
    match text.strip_prefix("0.") {
        Some(fraction) => format!(".{fraction}"),
        None => text,
    }
}

/// The last second of a period ending (exclusively) at `end`: what `enddate` shows and what
/// the `enddate` filter compares.
pub fn displayed_end(end: Timestamp) -> Timestamp {
    end.add_millis(-LAST_SECOND_MS)
}

/// `yyyy-MM-dd'T'HH:mm:ssZ` in `zone`, with that zone's offset at `at` (`-0500`).
pub fn zoned_date(at: Timestamp, zone: Tz) -> String {
    at.to_datetime()
        .with_timezone(&zone)
        .format("%Y-%m-%dT%H:%M:%S%z")
        .to_string()
}

/// CloudStack's `getPrettyDomainPath`: `ROOT` followed by the path, without the trailing
/// slash (`/` is `ROOT`, `/customers/` is `ROOT/customers`). Paths that already start with
/// `ROOT` are kept as they are.
pub fn pretty_domain_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    let has_root = trimmed
        .strip_prefix("ROOT")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if has_root {
        trimmed.to_owned()
    } else if trimmed.is_empty() {
        "ROOT".to_owned()
    } else {
        format!("ROOT/{trimmed}")
    }
}

/// Restricts records to a domain's accounts (as they were when the records' intervals opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainFilter {
    /// The domain.
    pub domain_id: Uuid,
    /// Include its subdomains.
    pub recursive: bool,
}

/// Which records to show, in what page (spec/usage.md "listUsageRecords"). Scope filters are
/// conjunctive, as CloudStack's SQL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    /// A record's period must start at or after this.
    pub start: Timestamp,
    /// A record's displayed end (the period's last second) must be at or before this.
    pub end: Timestamp,
    /// Only this account's records.
    pub account_id: Option<Uuid>,
    /// Only this domain's (or subtree's) records.
    pub domain: Option<DomainFilter>,
    /// Only this usage type.
    pub usage_type: Option<UsageType>,
    /// Only this entity (`usageid`; for type 13 also the network offering, as in CloudStack).
    pub usage_id: Option<Uuid>,
    /// Only records whose current revision was published at or after this (Ledgerstack).
    pub changed_since: Option<Timestamp>,
    /// Also list the revisions corrections replaced, oldest first, before the current one.
    pub include_superseded: bool,
    /// `oldformat`: descriptions in the stored form.
    pub old_format: bool,
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return (`None`: all).
    pub limit: Option<usize>,
}

impl RecordQuery {
    /// Every record in `[start, end]`, unfiltered, unpaged.
    pub fn between(start: Timestamp, end: Timestamp) -> RecordQuery {
        RecordQuery {
            start,
            end,
            account_id: None,
            domain: None,
            usage_type: None,
            usage_id: None,
            changed_since: None,
            include_superseded: false,
            old_format: false,
            offset: 0,
            limit: None,
        }
    }

    fn admits(&self, state: &State, key: &RecordKey, row: &RecordRow, facts: &RecordFacts) -> bool {
        displayed_end(row.period_end) <= self.end
            && self.account_id.is_none_or(|a| key.track.account_id == a)
            && self.domain.is_none_or(|d| {
                if d.recursive {
                    state.identity.is_in_subtree(facts.domain_id, d.domain_id)
                } else {
                    facts.domain_id == d.domain_id
                }
            })
            && self.usage_type.is_none_or(|t| key.track.usage_type == t)
            && self.usage_id.is_none_or(|id| {
                key.track.entity_id == id
                    || (key.track.usage_type == UsageType::NetworkOffering
                        && facts.offering_id == Some(id))
            })
            && self.changed_since.is_none_or(|s| row.published_at >= s)
    }
}

/// The records `query` selects, ordered by (period, account, type, usage id) and, within a
/// record, by revision: the total over all pages, and this page.
pub fn query(state: &State, usage: &UsageModel, query: &RecordQuery) -> (usize, Vec<RecordView>) {
    let ledger = &usage.ledger;
    let missing = RecordFacts::default();
    let first = RecordKey {
        period_start: query.start.millis(),
        track: TrackKey {
            account_id: Uuid::nil(),
            usage_type: UsageType::RunningVm,
            entity_id: Uuid::nil(),
            sub_id: Uuid::nil(),
        },
        variant: 0,
    };
    // (record, which superseded revision: None for the current one)
    let mut rows: Vec<(&RecordKey, &RecordRow, &RecordFacts, Option<usize>)> = Vec::new();
    for (key, row) in ledger
        .records
        .range(first..)
        .take_while(|(k, _)| k.period_start <= query.end.millis())
    {
        let facts = ledger.facts_of(key).unwrap_or(&missing);
        if !query.admits(state, key, row, facts) {
            continue;
        }
        if query.include_superseded {
            rows.extend((0..row.superseded.len()).map(|i| (key, row, facts, Some(i))));
        }
        rows.push((key, row, facts, None));
    }
    let total = rows.len();
    let page = rows
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|(key, row, facts, old)| {
            let zone = ledger
                .schedule_of(key.track.account_id)
                .rule_at(Timestamp::from_millis(key.period_start))
                .zone;
            let current = RecordView::new(key, row, facts, state, zone, query.old_format);
            match old.and_then(|i| row.superseded.get(i)) {
                Some(old) => current.as_superseded(old, facts, query.old_format),
                None => current,
            }
        })
        .collect();
    (total, page)
}

#[cfg(test)]
mod tests {
    use engine::event::identity::{AccountFacts, AccountType, DomainFacts};
    use projections::identity::{AccountRow, AccountState, DomainRow};

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn hours_are_rounded_half_even_to_six_places_without_floats() {
        // 2.95288 h = 10 630 368 ms.
        assert_eq!(hours_rounded(10_630_368).to_string(), "2.952880");
        assert_eq!(hours_rounded(86_400_000), Decimal::from(24));
        // 1 ms = 0.000000277... h: rounds down to zero; 2 ms = 0.00000055... rounds up.
        assert_eq!(hours_rounded(1), Decimal::ZERO);
        assert_eq!(hours_rounded(2).to_string(), "0.000001");
        // 1.8 ms is exactly half a micro-hour: 9 ms = 2.5 µh → 2 (even), 27 ms = 7.5 µh → 8.
        assert_eq!(hours_rounded(9).to_string(), "0.000002");
        assert_eq!(hours_rounded(27).to_string(), "0.000008");
        assert!(hours_rounded(u64::MAX) > Decimal::ZERO);
    }

    #[test]
    fn numbers_print_as_java_decimal_format_does() {
        assert_eq!(java_decimal_text(hours_rounded(10_630_368)), "2.95288");
        assert_eq!(java_decimal_text(hours_rounded(86_400_000)), "24");
        assert_eq!(java_decimal_text(hours_rounded(1_800_000)), ".5");
        assert_eq!(java_decimal_text(Decimal::ZERO), "0");
    }

    #[test]
    fn usage_strings_follow_the_unit() {
        let (usage, raw, _) = display_quantity(UsageType::RunningVm, 10_630_368);
        assert_eq!((usage.as_str(), raw.as_str()), ("2.95288 Hrs", "2.95288"));
        let (usage, raw, number) = display_quantity(UsageType::NetworkBytesSent, 1024);
        assert_eq!((usage.as_str(), raw.as_str()), ("1024 bytes sent", "1024"));
        assert_eq!(number, Decimal::from(1024));
        let (usage, _, _) = display_quantity(UsageType::VmDiskIoRead, 7);
        assert_eq!(usage, "7 io read");
        let (usage, _, _) = display_quantity(UsageType::VmDiskBytesWrite, 9);
        assert_eq!(usage, "9 bytes write");
    }

    #[test]
    fn dates_carry_the_offset_of_the_aggregation_zone() {
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            zoned_date(at("2026-03-08T05:00:00Z"), ny),
            "2026-03-08T00:00:00-0500"
        );
        assert_eq!(
            zoned_date(displayed_end(at("2026-03-09T04:00:00Z")), ny),
            "2026-03-08T23:59:59-0400"
        );
        assert_eq!(
            zoned_date(displayed_end(at("2026-03-09T00:00:00Z")), chrono_tz::GMT),
            "2026-03-08T23:59:59+0000"
        );
    }

    #[test]
    fn domain_paths_are_printed_from_root() {
        assert_eq!(pretty_domain_path("/"), "ROOT");
        assert_eq!(pretty_domain_path("/customers"), "ROOT/customers");
        assert_eq!(
            pretty_domain_path("/customers/acme/"),
            "ROOT/customers/acme"
        );
        assert_eq!(pretty_domain_path("/ROOT/customers/"), "ROOT/customers");
        assert_eq!(pretty_domain_path("/ROOTS"), "ROOT/ROOTS");
    }

    /// Root (1) with a child domain (2); account 10 in root, account 20 in the child.
    fn state() -> State {
        let mut state = State::default();
        for (domain, parent, name, path) in [
            (1, None, "ROOT", "/"),
            (2, Some(id(1)), "customers", "/customers"),
        ] {
            state.identity.domains.insert(
                id(domain),
                DomainRow {
                    facts: DomainFacts {
                        domain_id: id(domain),
                        name: name.into(),
                        parent_id: parent,
                        path: path.into(),
                        network_domain: None,
                    },
                    level: 0,
                    created: Timestamp::EPOCH,
                },
            );
        }
        for (account, domain, name) in [(10, 1, "admin"), (20, 2, "acme")] {
            state.identity.accounts.insert(
                id(account),
                AccountRow {
                    facts: AccountFacts {
                        account_id: id(account),
                        name: name.into(),
                        account_type: AccountType::User,
                        domain_id: id(domain),
                        network_domain: None,
                    },
                    state: AccountState::Enabled,
                    created: Timestamp::EPOCH,
                },
            );
        }
        state
    }

    fn track(account: u128, usage_type: UsageType, entity: u128) -> TrackKey {
        TrackKey {
            account_id: id(account),
            usage_type,
            entity_id: id(entity),
            sub_id: Uuid::nil(),
        }
    }

    /// Daily GMT records for two days: for each day, account 20's VM 100 (running 2 h) and
    /// account 10's volume 200 (24 h); day two's VM record was corrected once.
    fn model() -> UsageModel {
        let mut usage = UsageModel::default();
        let ledger = &mut usage.ledger;
        for (account, domain, usage_type, entity) in [
            (20, 2, UsageType::RunningVm, 100),
            (10, 1, UsageType::Volume, 200),
        ] {
            let key = track(account, usage_type, entity);
            let mut row = crate::ledger::Track::default();
            row.variants.push(RecordFacts {
                domain_id: id(domain),
                description: format!("entity {entity}"),
                old_description: format!("old {entity}"),
                name: Some(format!("e{entity}")),
                ..RecordFacts::default()
            });
            ledger.tracks.insert(key, row);
            for (day, start, end) in [
                (1, "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"),
                (2, "2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z"),
            ] {
                let quantity = if usage_type == UsageType::Volume {
                    86_400_000
                } else {
                    7_200_000
                };
                let corrected = day == 2 && usage_type == UsageType::RunningVm;
                ledger.records.insert(
                    RecordKey {
                        period_start: at(start).millis(),
                        track: key,
                        variant: 0,
                    },
                    RecordRow {
                        period_end: at(end),
                        quantity,
                        revision: if corrected { 2 } else { 1 },
                        published_at: if corrected {
                            at("2026-03-05T00:00:00Z")
                        } else {
                            at(end).add_millis(900_000)
                        },
                        superseded: if corrected {
                            vec![Superseded {
                                revision: 1,
                                quantity: 3_600_000,
                                published_at: at(end).add_millis(900_000),
                            }]
                        } else {
                            Vec::new()
                        },
                    },
                );
            }
        }
        usage
    }

    fn day(date: &str) -> RecordQuery {
        RecordQuery::between(
            at(&format!("{date}T00:00:00Z")),
            at(&format!("{date}T23:59:59Z")),
        )
    }

    #[test]
    fn a_day_selects_that_days_daily_records_in_order() {
        let (state, usage) = (state(), model());
        let (total, views) = query(&state, &usage, &day("2026-03-01"));
        assert_eq!(total, 2);
        // Ordered by account id within the period: 10 before 20.
        assert_eq!(views[0].usage_id, id(200));
        assert_eq!(views[0].account.as_deref(), Some("admin"));
        assert_eq!(views[0].domain_path.as_deref(), Some("ROOT"));
        assert_eq!(views[0].usage, "24 Hrs");
        assert_eq!(views[1].usage_id, id(100));
        assert_eq!(views[1].domain.as_deref(), Some("customers"));
        assert_eq!(views[1].domain_path.as_deref(), Some("ROOT/customers"));
        assert_eq!(views[1].raw_usage, "2");
        assert_eq!(views[1].start_date, "2026-03-01T00:00:00+0000");
        assert_eq!(views[1].end_date, "2026-03-01T23:59:59+0000");
        assert_eq!(views[1].description, "entity 100");

        // Both days; a range ending a second early drops the day whose end it misses.
        let mut both = day("2026-03-01");
        both.end = at("2026-03-02T23:59:59Z");
        assert_eq!(query(&state, &usage, &both).0, 4);
        both.end = at("2026-03-02T23:59:58Z");
        assert_eq!(query(&state, &usage, &both).0, 2);
    }

    #[test]
    fn filters_combine() {
        let (state, usage) = (state(), model());
        let mut q = day("2026-03-01");
        q.end = at("2026-03-02T23:59:59Z");
        q.account_id = Some(id(20));
        assert_eq!(query(&state, &usage, &q).0, 2);
        q.account_id = None;
        q.domain = Some(DomainFilter {
            domain_id: id(1),
            recursive: false,
        });
        assert!(
            query(&state, &usage, &q)
                .1
                .iter()
                .all(|v| v.account_id == id(10))
        );
        q.domain = Some(DomainFilter {
            domain_id: id(1),
            recursive: true,
        });
        assert_eq!(query(&state, &usage, &q).0, 4);
        q.domain = None;
        q.usage_type = Some(UsageType::Volume);
        assert_eq!(query(&state, &usage, &q).0, 2);
        q.usage_type = Some(UsageType::RunningVm);
        q.usage_id = Some(id(200));
        assert_eq!(query(&state, &usage, &q).0, 0);
        q.usage_id = Some(id(100));
        q.old_format = true;
        let (total, views) = query(&state, &usage, &q);
        assert_eq!(total, 2);
        assert_eq!(views[0].description, "old 100");
    }

    #[test]
    fn changed_since_and_superseded_revisions() {
        let (state, usage) = (state(), model());
        let mut q = day("2026-03-01");
        q.end = at("2026-03-02T23:59:59Z");
        q.changed_since = Some(at("2026-03-04T00:00:00Z"));
        let (total, views) = query(&state, &usage, &q);
        assert_eq!(total, 1);
        assert_eq!((views[0].revision, views[0].raw_usage.as_str()), (2, "2"));

        q.changed_since = None;
        q.include_superseded = true;
        let (total, views) = query(&state, &usage, &q);
        assert_eq!(total, 5);
        let vm_day_two: Vec<_> = views
            .iter()
            .filter(|v| v.usage_id == id(100) && v.start == at("2026-03-02T00:00:00Z"))
            .map(|v| (v.revision, v.superseded, v.usage.as_str()))
            .collect();
        assert_eq!(vm_day_two, [(1, true, "1 Hrs"), (2, false, "2 Hrs")]);
    }

    #[test]
    fn pages_cut_the_ordered_list_and_count_everything() {
        let (state, usage) = (state(), model());
        let mut q = day("2026-03-01");
        q.end = at("2026-03-02T23:59:59Z");
        let (_, all) = query(&state, &usage, &q);
        q.offset = 1;
        q.limit = Some(2);
        let (total, page) = query(&state, &usage, &q);
        assert_eq!(total, 4);
        assert_eq!(page, all[1..3].to_vec());
    }
}
