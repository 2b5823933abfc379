//! First run and demo data: the ROOT domain with the `admin` account, user and API key pair
//! (printed once and kept in a 0600 file); at every start, CloudStack's built-in network and
//! VPC offerings; and, with `serve --demo`, a zone, offerings and a public IP range so a new
//! user can deploy at once.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use engine::event::identity::{
    AccountCreated, AccountFacts, AccountType, DomainFacts, DomainLifecycle, UserCreated, UserFacts,
};
use engine::event::infrastructure::{
    ClusterFacts, ClusterLifecycle, DiskOfferingFacts, DiskOfferingLifecycle, HostFacts,
    HostLifecycle, PodFacts, PodLifecycle, ServiceOfferingFacts, ServiceOfferingLifecycle,
    ZoneFacts, ZoneLifecycle,
};
use engine::event::network::VlanIpRangeFacts;
use engine::event::storage::{TemplateFacts, TemplateLifecycle};
use engine::event::{
    AccountEvent, DiskOfferingEvent, DomainEvent, EventBody, HostEvent, NetworkOfferingEvent,
    NewEvent, PodEvent, ServiceOfferingEvent, TemplateEvent, UserEvent, VlanEvent,
    VpcOfferingEvent, ZoneEvent,
};
use engine::ids::derived_event_id;
use engine::secrets;
use projections::identity::{AccountState, UserRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::allocation::ALLOCATION;
use crate::commands::catalog::CATALOG;
use crate::commands::domains::IDENTITY;
use crate::commands::networks::{builtin_network_offerings, builtin_vpc_offering};
use crate::commands::templates::os_type_id;
use crate::commands::users::key_registration;
use crate::context::Ctx;
use crate::error::ApiError;

/// Where the first run writes the admin's credentials, inside the data directory.
pub const CREDENTIALS_FILE: &str = "admin-credentials.json";

/// The root admin's credentials, as printed at first start and by `ledgerstack admin keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminCredentials {
    /// Login name (`admin`).
    pub username: String,
    /// Password for `login` (generated; change it with `updateUser`).
    pub password: String,
    /// API key.
    pub api_key: String,
    /// Secret key for signing.
    pub secret_key: String,
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Appending the bootstrap events failed.
    #[error("creating the ROOT domain and admin account: {0}")]
    Api(#[from] ApiError),
    /// The credentials file could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The credentials file is not what the first run wrote.
    #[error("{path} is not a credentials file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// At every start, seeds the built-in network offerings (see [`seed_builtin_offerings`]); on an
/// empty log, creates ROOT, the `admin` account and user and their key pair, writes the
/// credentials file, and returns the credentials to print. Returns `None` when the log already
/// has a ROOT domain (every later start).
pub async fn ensure_admin(
    ctx: &Ctx,
    data_dir: &Path,
) -> Result<Option<AdminCredentials>, BootstrapError> {
    seed_builtin_offerings(ctx).await?;
    if !ctx.models.read().identity.domains.is_empty() {
        return Ok(None);
    }
    let root = Uuid::new_v4();
    let account_id = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    let password = secrets::generate_session_key();
    let password_hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || secrets::hash_password(&password))
            .await
            .map_err(|e| ApiError::internal(format!("hashing the admin password: {e}")))?
    };
    let (api_key, secret_key) = secrets::generate_api_key_pair();
    let user = UserFacts {
        user_id,
        username: "admin".into(),
        account_id,
        domain_id: root,
        first_name: "Admin".into(),
        last_name: "User".into(),
        email: None,
        timezone: None,
    };
    let row = UserRow {
        facts: user.clone(),
        state: AccountState::Enabled,
        created: ctx.clock.now(),
        password_hash: None,
        api_key: None,
        secret_key: None,
    };
    let written = ctx
        .decide(IDENTITY, |state| {
            if !state.identity.domains.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![
                NewEvent::new(EventBody::Domain(DomainEvent::Create(DomainLifecycle {
                    domain: DomainFacts {
                        domain_id: root,
                        name: "ROOT".into(),
                        parent_id: None,
                        path: "/".into(),
                        network_domain: None,
                    },
                }))),
                NewEvent::new(EventBody::Account(AccountEvent::Create(AccountCreated {
                    account: AccountFacts {
                        account_id,
                        name: "admin".into(),
                        account_type: AccountType::RootAdmin,
                        domain_id: root,
                        network_domain: None,
                    },
                }))),
                NewEvent::new(EventBody::User(UserEvent::Create(UserCreated {
                    user: user.clone(),
                    password_hash: Some(password_hash.clone()),
                }))),
                NewEvent::new(key_registration(ctx, &row, api_key.clone(), &secret_key)),
            ])
        })
        .await?;
    if written.is_none() {
        return Ok(None);
    }
    let credentials = AdminCredentials {
        username: "admin".into(),
        password,
        api_key,
        secret_key,
    };
    write_credentials(data_dir, &credentials)?;
    Ok(Some(credentials))
}

fn write_credentials(
    data_dir: &Path,
    credentials: &AdminCredentials,
) -> Result<(), BootstrapError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let file_error = |source| BootstrapError::File {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(credentials).map_err(|e| BootstrapError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(file_error)?;
    file.write_all(text.as_bytes()).map_err(file_error)?;
    file.write_all(b"\n").map_err(file_error)?;
    file.sync_all().map_err(file_error)?;
    Ok(())
}

/// Reads the credentials the first run wrote (`ledgerstack admin keys`).
pub fn read_credentials(data_dir: &Path) -> Result<AdminCredentials, BootstrapError> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| BootstrapError::File {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| BootstrapError::Format {
        path,
        message: e.to_string(),
    })
}

/// Seeds CloudStack's default network offerings (`DefaultIsolatedNetworkOfferingWithSourceNatService`,
/// `DefaultSharedNetworkOffering`, `DefaultL2NetworkOffering`,
/// `DefaultIsolatedNetworkOfferingForVpcNetworks`) and its "Default VPC offering" on the catalog
/// stream, each one that is absent: CloudStack creates them when it starts, and every
/// deploy's default network needs the first. Their ids are fixed and their events' ids derived,
/// so seeding is idempotent. Returns whether anything was appended.
pub async fn seed_builtin_offerings(ctx: &Ctx) -> Result<bool, ApiError> {
    let written = ctx
        .decide(CATALOG, |state| {
            let mut events = Vec::new();
            for offering in builtin_network_offerings() {
                if state
                    .network
                    .offerings
                    .get(&offering.network_offering_id)
                    .is_none()
                {
                    let kind = format!("network-offering:{}", offering.name);
                    events.push(seeded(
                        &kind,
                        EventBody::NetworkOffering(NetworkOfferingEvent::Create(offering)),
                    ));
                }
            }
            let vpc = builtin_vpc_offering();
            if state
                .network
                .vpc_offerings
                .get(&vpc.vpc_offering_id)
                .is_none()
            {
                events.push(seeded(
                    "vpc-offering:default",
                    EventBody::VpcOffering(VpcOfferingEvent::Create(vpc)),
                ));
            }
            Ok(events)
        })
        .await?;
    Ok(written.is_some())
}

/// Names the demo entities: their ids are derived from this, so seeding twice is a no-op.
const DEMO: Uuid = Uuid::from_u128(0x6c656467_6572_7374_6163_6b2d64656d6f);

/// What `serve --demo` seeds (ids, for tests and the README).
pub fn demo_id(kind: &str) -> Uuid {
    derived_event_id(DEMO, kind)
}

/// Seeds a zone, two service offerings, a fixed-size and a custom-size disk offering, unless
/// the catalog already has a zone; then, in the demo zone, a pod, a cluster, two simulator
/// hosts and a featured public template, unless the demo pod exists already; and a public IP
/// range for its virtual networks, unless the zone has a range already (so a data directory
/// seeded before ranges existed gets one). The hosts, the template and the range are decided
/// on the allocation stream, which owns host capacity, the template limit and the public IP
/// pool (DESIGN.md invariant 8).
pub async fn seed_demo(ctx: &Ctx) -> Result<bool, ApiError> {
    let written = ctx
        .decide("catalog", |state| {
            if !state.catalog.zones.is_empty() {
                return Ok(vec![]);
            }
            Ok(demo_events())
        })
        .await?;
    let infrastructure = ctx
        .decide(ALLOCATION, |state| {
            // Only into the demo zone (a log whose first zone was made by hand gets none), and
            // once: a log seeded before hosts existed gets them at its next `--demo` start.
            if state.catalog.zones.get(&demo_id("zone")).is_none()
                || state.infrastructure.pods.get(&demo_id("pod")).is_some()
            {
                return Ok(vec![]);
            }
            demo_infrastructure(state)
        })
        .await?;
    let range = ctx
        .decide(ALLOCATION, |state| {
            let zone_id = demo_id("zone");
            if state.catalog.zones.get(&zone_id).is_none()
                || state
                    .network
                    .vlan_ranges
                    .values()
                    .any(|r| r.facts.zone_id == zone_id)
            {
                return Ok(vec![]);
            }
            Ok(vec![demo_public_range(zone_id)])
        })
        .await?;
    Ok(written.is_some() || infrastructure.is_some() || range.is_some())
}

/// A seeded event: its id derives from `kind`, so seeding twice appends it once.
fn seeded(kind: &str, body: EventBody) -> NewEvent {
    NewEvent::with_id(demo_id(&format!("event:{kind}")), body)
}

/// The demo zone's public range for virtual networks: 172.16.0.10 to 172.16.15.250 (about four
/// thousand addresses, one per account's default network and then some), untagged.
fn demo_public_range(zone_id: Uuid) -> NewEvent {
    seeded(
        "public-range",
        EventBody::Vlan(VlanEvent::IpRangeCreate(VlanIpRangeFacts {
            vlan_range_id: demo_id("public-range"),
            zone_id,
            pod_id: None,
            vlan: "untagged".into(),
            gateway: [172, 16, 0, 1].into(),
            netmask: "255.255.240.0".into(),
            start_ip: [172, 16, 0, 10].into(),
            end_ip: [172, 16, 15, 250].into(),
            for_virtual_network: true,
            network_id: None,
            account_id: None,
            domain_id: None,
        })),
    )
}

/// The demo pod, cluster, hosts and template, owned by the root admin account.
fn demo_infrastructure(state: &projections::State) -> Result<Vec<NewEvent>, ApiError> {
    let admin = state
        .identity
        .accounts
        .values()
        .find(|a| {
            a.facts.account_type == AccountType::RootAdmin
                && a.facts.name == "admin"
                && state
                    .identity
                    .domains
                    .get(&a.facts.domain_id)
                    .is_some_and(|d| d.facts.parent_id.is_none())
        })
        .ok_or_else(|| {
            ApiError::internal("the demo template needs the admin account, which does not exist")
        })?;
    let zone_id = demo_id("zone");
    let pod_id = demo_id("pod");
    let cluster_id = demo_id("cluster");
    let pod = PodFacts {
        pod_id,
        zone_id,
        name: "demo-pod".into(),
        gateway: [192, 168, 0, 1].into(),
        netmask: "255.255.255.0".into(),
        start_ip: [192, 168, 0, 10].into(),
        end_ip: Some([192, 168, 0, 250].into()),
        allocation_state: "Enabled".into(),
    };
    let cluster = ClusterFacts {
        cluster_id,
        name: "demo-cluster".into(),
        zone_id,
        pod_id,
        hypervisor: "Simulator".into(),
        cluster_type: "CloudManaged".into(),
        allocation_state: "Enabled".into(),
    };
    let host = |n: u8| HostFacts {
        host_id: demo_id(&format!("host-{n}")),
        name: format!("demo-host-{n}").into(),
        zone_id,
        pod_id,
        cluster_id,
        hypervisor: "Simulator".into(),
        ip_address: Some([192, 168, 0, 10 + n].into()),
        cpu_number: 8,
        cpu_speed: 2000,
        memory: 16384,
        resource_state: "Enabled".into(),
        host_tags: None,
    };
    const GIB: u64 = 1024 * 1024 * 1024;
    let name = "CentOS 5.6 (64-bit) no GUI (Simulator)";
    let template = TemplateFacts {
        template_id: demo_id("template"),
        name: name.into(),
        display_text: name.into(),
        account_id: admin.facts.account_id,
        domain_id: admin.facts.domain_id,
        zone_id: Some(zone_id),
        // CloudStack's simulator ships its built-in template as a VHD.
        format: "VHD".into(),
        hypervisor: "Simulator".into(),
        os_type_id: Some(os_type_id("CentOS 5.6 (64-bit)")),
        size: 2 * GIB,
        virtual_size: 2 * GIB,
        is_public: true,
        is_featured: true,
        url: None,
        source_volume_id: None,
        source_snapshot_id: None,
    };
    Ok(vec![
        seeded(
            "pod",
            EventBody::Pod(PodEvent::Create(PodLifecycle { pod })),
        ),
        seeded(
            "cluster",
            EventBody::Host(HostEvent::ClusterAdd(ClusterLifecycle { cluster })),
        ),
        seeded(
            "host-1",
            EventBody::Host(HostEvent::Add(HostLifecycle { host: host(1) })),
        ),
        seeded(
            "host-2",
            EventBody::Host(HostEvent::Add(HostLifecycle { host: host(2) })),
        ),
        seeded(
            "template",
            EventBody::Template(TemplateEvent::Create(TemplateLifecycle { template })),
        ),
    ])
}

fn demo_events() -> Vec<NewEvent> {
    let zone = ZoneFacts {
        zone_id: demo_id("zone"),
        name: "Demo Zone".into(),
        description: Some("seeded by ledgerstack serve --demo".into()),
        network_type: "Advanced".into(),
        dns1: Some([8, 8, 8, 8].into()),
        dns2: None,
        internal_dns1: Some([10, 0, 0, 1].into()),
        internal_dns2: None,
        guest_cidr: Some("10.1.1.0/24".into()),
        network_domain: Some("demo.internal".into()),
        security_group_enabled: false,
        local_storage_enabled: true,
        allocation_state: "Enabled".into(),
    };
    let service =
        |kind: &str, name: &str, cpus: u32, speed: u32, memory: u64| ServiceOfferingFacts {
            service_offering_id: demo_id(kind),
            name: name.into(),
            display_text: format!("{name}: {cpus} vCPU x {speed} MHz, {memory} MiB"),
            cpu_number: Some(cpus),
            cpu_speed: Some(speed),
            memory: Some(memory),
            is_customized: false,
            offer_ha: false,
            limit_cpu_use: false,
            dynamic_scaling_enabled: true,
            storage_type: "shared".into(),
            host_tags: None,
            storage_tags: None,
            root_disk_size: None,
            domain_ids: vec![],
            zone_ids: vec![],
            system_vm_type: None,
        };
    let disk = |kind: &str, name: &str, gib: Option<u64>| DiskOfferingFacts {
        disk_offering_id: demo_id(kind),
        name: name.into(),
        display_text: match gib {
            Some(g) => format!("{name}: {g} GiB"),
            None => format!("{name}: any size"),
        },
        disk_size: gib.map(|g| g << 30),
        is_customized: gib.is_none(),
        storage_type: "shared".into(),
        tags: None,
        min_iops: None,
        max_iops: None,
        domain_ids: vec![],
        zone_ids: vec![],
    };
    vec![
        seeded(
            "zone",
            EventBody::Zone(ZoneEvent::Create(ZoneLifecycle { zone })),
        ),
        seeded(
            "small",
            EventBody::ServiceOffering(ServiceOfferingEvent::Create(ServiceOfferingLifecycle {
                offering: service("small", "Small Instance", 1, 1000, 512),
            })),
        ),
        seeded(
            "medium",
            EventBody::ServiceOffering(ServiceOfferingEvent::Create(ServiceOfferingLifecycle {
                offering: service("medium", "Medium Instance", 2, 2000, 2048),
            })),
        ),
        seeded(
            "disk-small",
            EventBody::DiskOffering(DiskOfferingEvent::Create(DiskOfferingLifecycle {
                offering: disk("disk-small", "Small", Some(5)),
            })),
        ),
        seeded(
            "disk-custom",
            EventBody::DiskOffering(DiskOfferingEvent::Create(DiskOfferingLifecycle {
                offering: disk("disk-custom", "Custom", None),
            })),
        ),
    ]
}
