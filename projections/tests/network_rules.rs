//! The network read model folded from a real (in-memory) log: requests, driver results and
//! driver failures move rules through Add → Active → Revoke exactly as the module's invariant
//! says, the router configuration counts only programmed rows, and facts schedule their own
//! driver commands.

use std::net::IpAddr;
use std::sync::Arc;

use engine::clock::ManualClock;
use engine::event::network::{
    IpAddressFacts, NetworkFacts, NetworkLifecycle, NetworkRule, NicFacts, RulePurpose,
};
use engine::event::operations::DriverFailed;
use engine::event::vm::{RouterFacts, RouterLifecycle, VmCreated, VmFacts};
use engine::event::{
    DriverEvent, EventBody, EventState, NetEvent, NetworkEvent, NewEvent, NicEvent, RouterEvent,
    StreamId, VmEvent,
};
use engine::store::memory::MemoryStore;
use engine::store::{EventStore, ExpectedVersion};
use engine::time::Timestamp;
use projections::driver::DriverAction;
use projections::driver::network::NetworkAction;
use projections::network::{IpState, RouterState, RuleState};
use projections::runner::replay_in_memory;
use uuid::Uuid;

struct World {
    store: MemoryStore,
    account: Uuid,
    domain: Uuid,
    zone: Uuid,
    network: Uuid,
    router: RouterFacts,
    public_ip: IpAddressFacts,
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

impl World {
    fn new() -> World {
        let store = MemoryStore::new(ManualClock::new(Timestamp::from_millis(0)));
        let (account, domain, zone, network) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let router = RouterFacts {
            router_id: Uuid::new_v4(),
            name: "r-1-VM".into(),
            account_id: account,
            domain_id: domain,
            zone_id: zone,
            network_id: Some(network),
            vpc_id: None,
            host_id: None,
            service_offering_id: Uuid::new_v4(),
            template_id: None,
            public_ip: Some(ip("172.16.0.10")),
            guest_ip: Some(ip("10.1.1.1")),
        };
        let public_ip = IpAddressFacts {
            ip_id: Uuid::new_v4(),
            address: ip("172.16.0.11"),
            account_id: account,
            domain_id: domain,
            zone_id: zone,
            vlan_range_id: None,
            network_id: Some(network),
            vpc_id: None,
            is_source_nat: false,
            is_system: false,
        };
        World {
            store,
            account,
            domain,
            zone,
            network,
            router,
            public_ip,
        }
    }

    async fn append(&self, events: Vec<NewEvent>) {
        let stream = StreamId::new("test", Uuid::new_v4()).unwrap();
        self.store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }

    async fn state(&self) -> projections::State {
        replay_in_memory(
            Arc::new(self.store.clone()),
            projections::runner::no_downstream,
        )
        .await
        .unwrap()
    }

    /// The network, its running router, and one VM NIC on it.
    async fn setup(&self) {
        let network = NetworkFacts {
            network_id: self.network,
            name: "net".into(),
            display_text: "net".into(),
            account_id: self.account,
            domain_id: self.domain,
            zone_id: self.zone,
            network_offering_id: Uuid::new_v4(),
            guest_type: "Isolated".into(),
            vpc_id: None,
            cidr: Some("10.1.1.0/24".into()),
            gateway: Some(ip("10.1.1.1")),
            vlan: None,
            network_domain: None,
        };
        let lifecycle = || RouterLifecycle {
            router: self.router.clone(),
        };
        let start = Uuid::new_v4();
        self.append(vec![
            NewEvent::new(EventBody::Network(NetworkEvent::Create(NetworkLifecycle {
                network,
            }))),
            NewEvent::new(EventBody::Router(RouterEvent::Create(lifecycle()))),
            NewEvent::with_id(start, EventBody::Router(RouterEvent::Start(lifecycle())))
                .state(EventState::Started),
        ])
        .await;
        self.answer(start, EventBody::Router(RouterEvent::Start(lifecycle())))
            .await;
        let assign = Uuid::new_v4();
        self.append(vec![
            NewEvent::with_id(
                assign,
                EventBody::Net(NetEvent::IpAssign(self.public_ip.clone())),
            )
            .state(EventState::Started),
        ])
        .await;
        self.answer(
            assign,
            EventBody::Net(NetEvent::IpAssign(self.public_ip.clone())),
        )
        .await;
    }

    async fn answer(&self, request: Uuid, body: EventBody) {
        self.append(vec![
            NewEvent::derived(request, "result", body).caused_by(request),
        ])
        .await;
    }

    async fn fail(&self, request: Uuid) {
        let failed = DriverFailed {
            command_id: request,
            command: "SetPortForwardingRulesCommand".into(),
            resource_type: "FirewallRule".into(),
            resource_id: Uuid::nil(),
            account_id: self.account,
            domain_id: self.domain,
            error: "injected".into(),
        };
        self.append(vec![
            NewEvent::derived(
                request,
                "result",
                EventBody::Driver(DriverEvent::Failed(failed)),
            )
            .caused_by(request),
        ])
        .await;
    }

    fn port_forward(&self, rule_id: Uuid, public_port: u16) -> NetworkRule {
        NetworkRule {
            rule_id,
            purpose: RulePurpose::PortForwarding,
            account_id: self.account,
            domain_id: self.domain,
            zone_id: self.zone,
            network_id: Some(self.network),
            ip_address_id: Some(self.public_ip.ip_id),
            protocol: "tcp".into(),
            public_start_port: Some(public_port),
            public_end_port: Some(public_port),
            private_start_port: Some(22),
            private_end_port: Some(22),
            vm_id: Some(Uuid::new_v4()),
            vm_guest_ip: Some(ip("10.1.1.5")),
            cidrs: vec![],
        }
    }
}

#[tokio::test]
async fn a_rule_is_programmed_only_once_the_driver_confirms_it() {
    let world = World::new();
    world.setup().await;
    let state = world.state().await;
    let router = state.network.routers.get(&world.router.router_id).unwrap();
    assert_eq!(router.state, RouterState::Running);
    let ip_row = state
        .network
        .public_ips
        .get(&world.public_ip.ip_id)
        .unwrap();
    assert_eq!(ip_row.state, IpState::Allocated);

    let rule_id = Uuid::new_v4();
    let add = Uuid::new_v4();
    let rule = world.port_forward(rule_id, 2222);
    world
        .append(vec![
            NewEvent::with_id(add, EventBody::Net(NetEvent::RuleAdd(rule.clone())))
                .state(EventState::Started),
        ])
        .await;
    let state = world.state().await;
    assert_eq!(
        state.network.nat_rules.get(&rule_id).unwrap().state,
        RuleState::Add
    );
    let config = state
        .network
        .router_config(&state.compute, world.router.router_id);
    assert!(config.port_forwards.is_empty(), "not programmed yet");
    let pending = state.orchestration.pending.get(&add).unwrap();
    assert!(matches!(
        pending.command.action,
        DriverAction::Network(NetworkAction::AddPortForward { rule_id: r, .. }) if r == rule_id
    ));

    world
        .answer(add, EventBody::Net(NetEvent::RuleAdd(rule.clone())))
        .await;
    let state = world.state().await;
    assert_eq!(
        state.network.nat_rules.get(&rule_id).unwrap().state,
        RuleState::Active
    );
    let config = state
        .network
        .router_config(&state.compute, world.router.router_id);
    let entry = &config.port_forwards[&rule_id];
    assert_eq!(entry.public_ip, world.public_ip.address);
    assert_eq!(entry.public_start_port, Some(2222));
    assert!(state.orchestration.pending.get(&add).is_none());

    // A removal that the driver refuses leaves the rule programmed.
    let delete = Uuid::new_v4();
    world
        .append(vec![
            NewEvent::with_id(delete, EventBody::Net(NetEvent::RuleDelete(rule.clone())))
                .state(EventState::Started),
        ])
        .await;
    let state = world.state().await;
    assert_eq!(
        state.network.nat_rules.get(&rule_id).unwrap().state,
        RuleState::Revoke
    );
    assert!(
        state
            .network
            .router_config(&state.compute, world.router.router_id)
            .port_forwards
            .contains_key(&rule_id),
        "a rule being revoked is still on the router"
    );
    world.fail(delete).await;
    let state = world.state().await;
    assert_eq!(
        state.network.nat_rules.get(&rule_id).unwrap().state,
        RuleState::Active
    );

    // A confirmed removal takes it away.
    let delete = Uuid::new_v4();
    world
        .append(vec![
            NewEvent::with_id(delete, EventBody::Net(NetEvent::RuleDelete(rule.clone())))
                .state(EventState::Started),
        ])
        .await;
    world
        .answer(delete, EventBody::Net(NetEvent::RuleDelete(rule)))
        .await;
    let state = world.state().await;
    assert!(state.network.nat_rules.get(&rule_id).is_none());
}

#[tokio::test]
async fn a_refused_addition_leaves_no_rule() {
    let world = World::new();
    world.setup().await;
    let rule_id = Uuid::new_v4();
    let add = Uuid::new_v4();
    world
        .append(vec![
            NewEvent::with_id(
                add,
                EventBody::Net(NetEvent::RuleAdd(world.port_forward(rule_id, 80))),
            )
            .state(EventState::Started),
        ])
        .await;
    world.fail(add).await;
    let state = world.state().await;
    assert!(state.network.nat_rules.get(&rule_id).is_none());
    assert!(matches!(
        state.orchestration.results.get(&add).map(|r| &r.result),
        Some(projections::orchestration::CommandResult::Failed(e)) if e == "injected"
    ));
}

#[tokio::test]
async fn a_nic_fact_schedules_its_dhcp_entry_and_the_config_has_it() {
    let world = World::new();
    world.setup().await;
    let nic = NicFacts {
        nic_id: Uuid::new_v4(),
        vm_id: Uuid::new_v4(),
        network_id: world.network,
        account_id: world.account,
        domain_id: world.domain,
        zone_id: world.zone,
        ip_address: Some(ip("10.1.1.7")),
        mac_address: "02:00:00:00:00:07".into(),
        is_default: true,
        device_id: 0,
    };
    let vm = VmFacts {
        vm_id: nic.vm_id,
        name: "web-1".into(),
        instance_name: "i-2-7-VM".into(),
        display_name: None,
        account_id: world.account,
        domain_id: world.domain,
        zone_id: world.zone,
        service_offering_id: Uuid::new_v4(),
        template_id: Uuid::new_v4(),
        hypervisor: "Simulator".into(),
        cpu_number: 1,
        cpu_speed: 1000,
        memory: 512,
    };
    let fact = NewEvent::new(EventBody::Nic(NicEvent::Create(nic.clone())));
    let fact_id = fact.id;
    world
        .append(vec![
            NewEvent::new(EventBody::Vm(VmEvent::Create(VmCreated {
                vm,
                host_id: None,
                disk_offering_id: None,
                root_disk_size: None,
                user_data: None,
                ssh_keypairs: vec![],
                affinity_group_ids: vec![],
            }))),
            fact,
        ])
        .await;
    let state = world.state().await;
    let pending = state.orchestration.pending.get(&fact_id).unwrap();
    assert!(pending.fact && pending.job_id.is_none());
    assert!(matches!(
        &pending.command.action,
        DriverAction::Network(NetworkAction::AddDhcpEntry { mac, entry, .. })
            if mac == "02:00:00:00:00:07" && entry.hostname == "web-1"
    ));
    let config = state
        .network
        .router_config(&state.compute, world.router.router_id);
    assert_eq!(config.dhcp["02:00:00:00:00:07"].ip, ip("10.1.1.7"));

    // Its DRIVER.APPLIED answers the command.
    let applied = engine::event::operations::DriverApplied {
        command_id: fact_id,
        command: "DhcpEntryCommand".into(),
        resource_type: "Nic".into(),
        resource_id: nic.nic_id,
        account_id: world.account,
        domain_id: world.domain,
    };
    world
        .answer(fact_id, EventBody::Driver(DriverEvent::Applied(applied)))
        .await;
    let state = world.state().await;
    assert!(state.orchestration.pending.get(&fact_id).is_none());
    assert!(state.orchestration.results.get(&fact_id).is_some());
}
