//! Zones and service and disk offerings: what every client's first calls list.

use engine::event::infrastructure::{DiskOfferingFacts, ServiceOfferingFacts, ZoneFacts};
use engine::event::{DiskOfferingEvent, EventBody, RecordedEvent, ServiceOfferingEvent, ZoneEvent};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::table::{PersistedTable, Table};

/// A row with the facts last recorded for it and when it was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created<T> {
    /// The facts.
    pub facts: T,
    /// When it was created.
    pub created: Timestamp,
}

/// The zones and offerings read model.
#[derive(Debug)]
pub struct Catalog {
    /// Zones by id.
    pub zones: Table<Uuid, Created<ZoneFacts>>,
    /// Service offerings by id (deleted ones removed).
    pub service_offerings: Table<Uuid, Created<ServiceOfferingFacts>>,
    /// Disk offerings by id (deleted ones removed).
    pub disk_offerings: Table<Uuid, Created<DiskOfferingFacts>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            zones: Table::new("catalog.zones"),
            service_offerings: Table::new("catalog.service_offerings"),
            disk_offerings: Table::new("catalog.disk_offerings"),
        }
    }
}

impl Catalog {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 3] {
        [
            &mut self.zones,
            &mut self.service_offerings,
            &mut self.disk_offerings,
        ]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent) {
        let created = event.envelope.occurred_at;
        match &*event.body {
            EventBody::Zone(ZoneEvent::Create(e)) => self.zones.insert(
                e.zone.zone_id,
                Created {
                    facts: e.zone.clone(),
                    created,
                },
            ),
            EventBody::Zone(ZoneEvent::Edit(e)) => {
                if let Some(row) = self.zones.get_mut(&e.zone.zone_id) {
                    row.facts = e.zone.clone();
                }
            }
            EventBody::Zone(ZoneEvent::Delete(e)) => {
                self.zones.remove(&e.zone.zone_id);
            }
            EventBody::ServiceOffering(ServiceOfferingEvent::Create(e)) => {
                self.service_offerings.insert(
                    e.offering.service_offering_id,
                    Created {
                        facts: e.offering.clone(),
                        created,
                    },
                )
            }
            EventBody::ServiceOffering(ServiceOfferingEvent::Edit(e)) => {
                if let Some(row) = self
                    .service_offerings
                    .get_mut(&e.offering.service_offering_id)
                {
                    row.facts = e.offering.clone();
                }
            }
            EventBody::ServiceOffering(ServiceOfferingEvent::Delete(e)) => {
                self.service_offerings
                    .remove(&e.offering.service_offering_id);
            }
            EventBody::DiskOffering(DiskOfferingEvent::Create(e)) => self.disk_offerings.insert(
                e.offering.disk_offering_id,
                Created {
                    facts: e.offering.clone(),
                    created,
                },
            ),
            EventBody::DiskOffering(DiskOfferingEvent::Edit(e)) => {
                if let Some(row) = self.disk_offerings.get_mut(&e.offering.disk_offering_id) {
                    row.facts = e.offering.clone();
                }
            }
            EventBody::DiskOffering(DiskOfferingEvent::Delete(e)) => {
                self.disk_offerings.remove(&e.offering.disk_offering_id);
            }
            _ => {}
        }
    }
}
