//! The usage projection as a downstream read model of the projection runner: folded in the same
//! pass as the other read models (reading them for names), persisted, checkpointed and digested
//! with them.

use engine::event::infrastructure::ConfigScope;
use engine::event::{ConfigurationEvent, EventBody, RecordedEvent, UsageEvent};
use projections::State;
use projections::runner::DownstreamModel;
use projections::table::PersistedTable;

use crate::fact::Fact;
use crate::facts::facts_of;
use crate::ledger::{Applying, Ledger};
use crate::period::parse_zone;
use crate::quota::QuotaBook;

/// Bumped whenever a usage row or the fold changes meaning: the store is then rebuilt.
const USAGE_MODEL_VERSION: &str = "usage-3";

/// The usage read model.
#[derive(Debug, Default)]
pub struct UsageModel {
    /// Tracks, devices, schedules, records.
    pub ledger: Ledger,
    /// Quota tariffs, credits and the charges made from the published records.
    pub quota: QuotaBook,
    /// Reused between events, so the fold allocates nothing per event.
    scratch: Vec<Fact>,
}

/// The downstream models the server runs: pass to `projections::runner::start` and friends.
pub fn read_models() -> Vec<Box<dyn DownstreamModel>> {
    vec![
        Box::new(UsageModel::default()),
        Box::new(crate::thresholds::ThresholdsModel::default()),
        Box::new(crate::alerts::AlertsModel::default()),
        Box::new(crate::delivery::DeliveryModel::default()),
    ]
}

/// The usage model of read models made with [`read_models`].
pub fn of(state: &State) -> Option<&UsageModel> {
    state.downstream::<UsageModel>()
}

impl DownstreamModel for UsageModel {
    fn version(&self) -> &'static str {
        USAGE_MODEL_VERSION
    }

    fn apply(&mut self, event: &RecordedEvent, upstream: &State) {
        let envelope = &event.envelope;
        self.ledger.observe(envelope.recorded_at);
        match &*event.body {
            EventBody::Configuration(ConfigurationEvent::ValueEdit(edit)) => {
                let at = envelope.occurred_at;
                match (edit.name.as_str(), edit.scope) {
                    ("usage.stats.job.aggregation.range", ConfigScope::Global) => {
                        let range = edit
                            .value
                            .as_deref()
                            .map_or(Some(1440), |v| v.parse::<u32>().ok().filter(|r| *r >= 1));
                        if let Some(range) = range {
                            self.ledger.change_global_rule(at, Some(range), None);
                        }
                    }
                    ("usage.aggregation.timezone", ConfigScope::Global) => {
                        let zone = edit.value.as_deref().map_or(Ok(chrono_tz::GMT), parse_zone);
                        if let Ok(zone) = zone {
                            self.ledger.change_global_rule(at, None, Some(zone));
                        }
                    }
                    ("usage.aggregation.timezone", ConfigScope::Account) => {
                        if let Some(account_id) = edit.scope_id {
                            match edit.value.as_deref().map(parse_zone) {
                                None => self.ledger.change_account_zone(at, account_id, None),
                                Some(Ok(zone)) => {
                                    self.ledger.change_account_zone(at, account_id, Some(zone))
                                }
                                Some(Err(_)) => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            EventBody::Usage(UsageEvent::Close(close)) => {
                self.ledger
                    .close(close.until, close.recompute_from, envelope.recorded_at);
            }
            EventBody::Usage(UsageEvent::Prune(prune)) => self.ledger.prune(prune.before),
            EventBody::Quota(quota) => {
                self.quota
                    .apply(quota, envelope.recorded_at, &envelope.actor)
            }
            _ => {
                let mut facts = std::mem::take(&mut self.scratch);
                facts_of(event, upstream, &mut facts);
                let applying = Applying {
                    position: envelope.position.0,
                    recorded_at: envelope.recorded_at,
                };
                for fact in facts.drain(..) {
                    self.ledger.apply_fact(fact, applying);
                }
                self.scratch = facts;
            }
        }
        if !self.ledger.journal.is_empty() {
            // Charge what this event published; the journal's buffer is kept for the next.
            let mut journal = std::mem::take(&mut self.ledger.journal);
            self.quota
                .charge_publications(&journal, &self.ledger, envelope.recorded_at);
            journal.clear();
            self.ledger.journal = journal;
        }
        // Balances against thresholds, and quota's own alerts and locks (quota_watch.rs).
        self.quota.after_event(event);
    }

    fn tables(&mut self) -> Vec<&mut dyn PersistedTable> {
        let mut tables = self.ledger.tables();
        tables.extend(self.quota.tables());
        tables
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
