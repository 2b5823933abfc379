//! Pods, clusters and hypervisor hosts: what placement chooses from and `listHosts`,
//! `listClusters`, `listPods` and `listCapacity` show.

use engine::event::infrastructure::{ClusterFacts, HostFacts, PodFacts};
use engine::event::{EventBody, HostEvent, PodEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Created;
use crate::table::{PersistedTable, Table};

/// The infrastructure read model.
#[derive(Debug)]
pub struct Infrastructure {
    /// Pods by id.
    pub pods: Table<Uuid, Created<PodFacts>>,
    /// Clusters by id.
    pub clusters: Table<Uuid, Created<ClusterFacts>>,
    /// Hosts by id.
    pub hosts: Table<Uuid, Created<HostFacts>>,
}

impl Default for Infrastructure {
    fn default() -> Self {
        Infrastructure {
            pods: Table::new("infrastructure.pods"),
            clusters: Table::new("infrastructure.clusters"),
            hosts: Table::new("infrastructure.hosts"),
        }
    }
}

/// What a host has and what is allocated on it, in the units placement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostCapacity {
    /// Total CPU in MHz (cores × speed).
    pub cpu_total_mhz: u64,
    /// CPU allocated to VMs placed on it, in MHz.
    pub cpu_used_mhz: u64,
    /// Total memory in MiB.
    pub memory_total_mib: u64,
    /// Memory allocated to VMs placed on it, in MiB.
    pub memory_used_mib: u64,
}

impl HostCapacity {
    /// Whether a VM of this size still fits.
    pub fn fits(&self, cpu_mhz: u64, memory_mib: u64) -> bool {
        self.cpu_used_mhz + cpu_mhz <= self.cpu_total_mhz
            && self.memory_used_mib + memory_mib <= self.memory_total_mib
    }
}

impl Infrastructure {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 3] {
        [&mut self.pods, &mut self.clusters, &mut self.hosts]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent) {
        let created = event.envelope.occurred_at;
        match &*event.body {
            EventBody::Pod(PodEvent::Create(e)) => self.pods.insert(
                e.pod.pod_id,
                Created {
                    facts: e.pod.clone(),
                    created,
                },
            ),
            EventBody::Pod(PodEvent::Edit(e)) => {
                if let Some(row) = self.pods.get_mut(&e.pod.pod_id) {
                    row.facts = e.pod.clone();
                }
            }
            EventBody::Pod(PodEvent::Delete(e)) => {
                self.pods.remove(&e.pod.pod_id);
            }
            EventBody::Host(HostEvent::ClusterAdd(e)) => self.clusters.insert(
                e.cluster.cluster_id,
                Created {
                    facts: e.cluster.clone(),
                    created,
                },
            ),
            EventBody::Host(HostEvent::Add(e)) => self.hosts.insert(
                e.host.host_id,
                Created {
                    facts: e.host.clone(),
                    created,
                },
            ),
            EventBody::Host(
                HostEvent::Update(e)
                | HostEvent::MaintenancePrepare(e)
                | HostEvent::MaintenanceCancel(e),
            ) => {
                if let Some(row) = self.hosts.get_mut(&e.host.host_id) {
                    row.facts = e.host.clone();
                }
            }
            _ => {}
        }
    }

    /// The capacity of a host, before anything is allocated on it.
    pub fn total_capacity(host: &HostFacts) -> HostCapacity {
        HostCapacity {
            cpu_total_mhz: u64::from(host.cpu_number) * u64::from(host.cpu_speed),
            memory_total_mib: host.memory,
            ..HostCapacity::default()
        }
    }
}
