//! One deterministic sample of every event type, for the round-trip, golden-bytes and
//! documentation tests. `body` matches on the wire name and has no fallback sample, so a new
//! event type without a sample fails `every_event_type_has_a_sample` at once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use uuid::Uuid;

use super::billing::*;
use super::common::{HexBytes, JsonDocument, KeyValue, SealedSecret};
use super::identity::*;
use super::infrastructure::*;
use super::network::*;
use super::operations::*;
use super::services::*;
use super::storage::*;
use super::vm::*;
use super::*;
use crate::time::Timestamp;

/// A fixed id whose last digits say what it is for, so golden files stay readable.
pub(crate) fn id(n: u32) -> Uuid {
    Uuid::from_u128(0x5ca1ab1e_0000_4000_8000_000000000000 | n as u128)
}

const ACCOUNT: u32 = 0xacc;
const DOMAIN: u32 = 0xd0;
const ZONE: u32 = 0x20e;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
}

fn host() -> HostFacts {
    HostFacts {
        host_id: id(0xb1),
        name: "sim-host-1".into(),
        zone_id: id(ZONE),
        pod_id: id(0x9d),
        cluster_id: id(0xc1),
        hypervisor: "Simulator".into(),
        ip_address: Some(ip(21)),
        cpu_number: 16,
        cpu_speed: 2400,
        memory: 65_536,
        resource_state: "Enabled".into(),
        host_tags: None,
    }
}

fn keypair() -> SshKeyPairFacts {
    SshKeyPairFacts {
        keypair_id: id(0x55),
        name: "deploy-key".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        fingerprint: "4f:2a:9c:0e:51:7d:aa:10:32:be:c1:77:0d:9e:e4:12".into(),
        public_key: "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 demo@example".into(),
    }
}

fn vm() -> VmFacts {
    VmFacts {
        vm_id: id(0x1),
        name: "web-01".into(),
        instance_name: "i-2-5-VM".into(),
        display_name: Some("Web server «prod»".into()),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        service_offering_id: id(0x50),
        template_id: id(0x7e),
        hypervisor: "Simulator".into(),
        cpu_number: 2,
        cpu_speed: 1000,
        memory: 2048,
    }
}

fn router() -> RouterFacts {
    RouterFacts {
        router_id: id(0x2),
        name: "r-7-VM".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        network_id: Some(id(0x4e)),
        vpc_id: None,
        host_id: Some(id(0x40)),
        service_offering_id: id(0x51),
        template_id: Some(id(0x7f)),
        public_ip: Some(ip(10)),
        guest_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1))),
    }
}

fn network() -> NetworkFacts {
    NetworkFacts {
        network_id: id(0x4e),
        name: "tier-a".into(),
        display_text: "Tier A".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        network_offering_id: id(0x4f),
        guest_type: "Isolated".into(),
        vpc_id: None,
        cidr: Some("10.1.1.0/24".into()),
        gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1))),
        vlan: Some("vlan://100".into()),
        network_domain: Some("cs2cloud.internal".into()),
    }
}

fn ip_address() -> IpAddressFacts {
    IpAddressFacts {
        ip_id: id(0x1b),
        address: ip(20),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        vlan_range_id: Some(id(0x71)),
        network_id: Some(id(0x4e)),
        vpc_id: None,
        is_source_nat: true,
        is_system: false,
    }
}

fn rule() -> NetworkRule {
    NetworkRule {
        rule_id: id(0x8f),
        purpose: RulePurpose::PortForwarding,
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        network_id: Some(id(0x4e)),
        ip_address_id: Some(id(0x1b)),
        protocol: "tcp".into(),
        public_start_port: Some(2222),
        public_end_port: Some(2222),
        private_start_port: Some(22),
        private_end_port: Some(22),
        vm_id: Some(id(0x1)),
        vm_guest_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 23))),
        cidrs: vec!["0.0.0.0/0".into()],
    }
}

fn firewall(direction: TrafficDirection) -> FirewallRuleFacts {
    FirewallRuleFacts {
        rule_id: id(0xf1),
        direction,
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        network_id: Some(id(0x4e)),
        ip_address_id: match direction {
            TrafficDirection::Ingress => Some(id(0x1b)),
            TrafficDirection::Egress => None,
        },
        protocol: "icmp".into(),
        start_port: None,
        end_port: None,
        icmp_type: Some(-1),
        icmp_code: Some(-1),
        source_cidrs: vec!["198.51.100.0/24".into()],
        destination_cidrs: vec![],
    }
}

fn nic() -> NicFacts {
    NicFacts {
        nic_id: id(0x41c),
        vm_id: id(0x1),
        network_id: id(0x4e),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        ip_address: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 23))),
        mac_address: "02:00:4c:5e:00:01".into(),
        is_default: true,
        device_id: 0,
    }
}

fn static_nat() -> StaticNatFacts {
    StaticNatFacts {
        ip_address_id: id(0x1b),
        address: ip(20),
        vm_id: id(0x1),
        vm_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 23))),
        network_id: id(0x4e),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
    }
}

fn vlan_range() -> VlanIpRangeFacts {
    VlanIpRangeFacts {
        vlan_range_id: id(0x71),
        zone_id: id(ZONE),
        pod_id: None,
        vlan: "untagged".into(),
        gateway: ip(1),
        netmask: "255.255.255.0".into(),
        start_ip: ip(10),
        end_ip: ip(250),
        for_virtual_network: true,
        network_id: None,
        account_id: None,
        domain_id: None,
    }
}

fn network_offering() -> NetworkOfferingFacts {
    NetworkOfferingFacts {
        network_offering_id: id(0x4f),
        name: "DefaultIsolatedNetworkOfferingWithSourceNatService".into(),
        display_text: "Offering for Isolated networks with Source Nat service enabled".into(),
        guest_ip_type: "Isolated".into(),
        traffic_type: "Guest".into(),
        services: vec![
            "Dhcp".into(),
            "Dns".into(),
            "SourceNat".into(),
            "Firewall".into(),
        ],
        state: "Enabled".into(),
        is_default: true,
        is_persistent: false,
        specify_vlan: false,
        for_vpc: false,
        egress_default_policy: true,
    }
}

fn offering_assignment() -> NetworkOfferingAssignment {
    NetworkOfferingAssignment {
        vm_id: id(0x1),
        nic_id: id(0x41c),
        network_id: id(0x4e),
        network_offering_id: id(0x4f),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        is_default: true,
    }
}

fn load_balancer() -> LoadBalancerFacts {
    LoadBalancerFacts {
        rule_id: id(0x1b1),
        name: "web-lb".into(),
        description: None,
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        network_id: Some(id(0x4e)),
        ip_address_id: id(0x1b),
        algorithm: "roundrobin".into(),
        protocol: "tcp".into(),
        public_port: 80,
        private_port: 8080,
        cidrs: vec![],
    }
}

fn lb_members() -> LoadBalancerMembers {
    LoadBalancerMembers {
        rule_id: id(0x1b1),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        vm_ids: vec![id(0x1), id(0x3)],
    }
}

fn lb_policy() -> LoadBalancerPolicy {
    LoadBalancerPolicy {
        policy_id: id(0x1b2),
        rule_id: id(0x1b1),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        name: "sticky".into(),
        method: "LbCookie".into(),
        params: vec![KeyValue {
            key: "holdtime".into(),
            value: "3600".into(),
        }],
    }
}

fn sealed() -> SealedSecret {
    SealedSecret {
        key_id: "mk-1".into(),
        nonce: HexBytes(vec![0x11; 12]),
        ciphertext: HexBytes(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]),
    }
}

fn remote_vpn() -> RemoteAccessVpnFacts {
    RemoteAccessVpnFacts {
        vpn_id: id(0x7b),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        public_ip_id: id(0x1b),
        public_ip: ip(20),
        network_id: Some(id(0x4e)),
        vpc_id: None,
        ip_range: "10.1.2.1-10.1.2.8".into(),
        preshared_key: Some(sealed()),
    }
}

fn vpn_user() -> VpnUserFacts {
    VpnUserFacts {
        vpn_user_id: id(0x7c),
        username: "road-warrior".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: Some(id(ZONE)),
    }
}

fn security_group() -> SecurityGroupFacts {
    SecurityGroupFacts {
        group_id: id(0x5e),
        name: "web".into(),
        description: Some("HTTP from anywhere".into()),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
    }
}

fn sg_rules() -> SecurityGroupRules {
    SecurityGroupRules {
        group_id: id(0x5e),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        rules: vec![
            SecurityGroupRule {
                rule_id: id(0x5f),
                protocol: "tcp".into(),
                start_port: Some(80),
                end_port: Some(443),
                icmp_type: None,
                icmp_code: None,
                cidr: Some("0.0.0.0/0".into()),
                source_group_id: None,
            },
            SecurityGroupRule {
                rule_id: id(0x60),
                protocol: "all".into(),
                start_port: None,
                end_port: None,
                icmp_type: None,
                icmp_code: None,
                cidr: None,
                source_group_id: Some(id(0x5d)),
            },
        ],
    }
}

fn sg_membership() -> SecurityGroupMembership {
    SecurityGroupMembership {
        group_id: id(0x5e),
        vm_id: id(0x1),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
    }
}

fn vpc() -> VpcFacts {
    VpcFacts {
        vpc_id: id(0x9c),
        name: "prod".into(),
        display_text: "Production VPC".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        vpc_offering_id: id(0x9d),
        cidr: "10.0.0.0/16".into(),
        network_domain: None,
    }
}

fn vpc_offering() -> VpcOfferingFacts {
    VpcOfferingFacts {
        vpc_offering_id: id(0x9d),
        name: "Default VPC offering".into(),
        display_text: "Default VPC offering".into(),
        services: vec!["SourceNat".into(), "NetworkACL".into()],
        state: "Enabled".into(),
        is_default: true,
    }
}

fn volume() -> VolumeFacts {
    VolumeFacts {
        volume_id: id(0x10),
        name: "DATA-5".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        volume_type: VolumeType::DataDisk,
        size: 21_474_836_480,
        disk_offering_id: Some(id(0xd1)),
        template_id: None,
    }
}

fn snapshot() -> SnapshotFacts {
    SnapshotFacts {
        snapshot_id: id(0x55),
        name: "web-01_ROOT-5_20260308050000".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        volume_id: id(0x10),
        size: 1_073_741_824,
        virtual_size: 21_474_836_480,
        interval: "MANUAL".into(),
    }
}

fn vm_snapshot() -> VmSnapshotFacts {
    VmSnapshotFacts {
        vm_snapshot_id: id(0x56),
        name: "i-2-5-VM_VS_20260308050000".into(),
        display_name: Some("before upgrade".into()),
        vm_id: id(0x1),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        service_offering_id: Some(id(0x50)),
        with_memory: true,
        volumes: vec![VmSnapshotVolume {
            volume_id: id(0x10),
            disk_offering_id: Some(id(0xd1)),
            size: 536_870_912,
        }],
    }
}

fn template() -> TemplateFacts {
    TemplateFacts {
        template_id: id(0x7e),
        name: "ubuntu-24.04".into(),
        display_text: "Ubuntu 24.04 LTS".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: Some(id(ZONE)),
        format: "QCOW2".into(),
        hypervisor: "Simulator".into(),
        os_type_id: Some(id(0x05)),
        size: 2_147_483_648,
        virtual_size: 10_737_418_240,
        is_public: true,
        is_featured: true,
        url: Some("http://images.example/ubuntu-24.04.qcow2".into()),
        source_volume_id: None,
        source_snapshot_id: None,
    }
}

fn iso() -> IsoFacts {
    IsoFacts {
        iso_id: id(0x150),
        name: "rescue".into(),
        display_text: "Rescue CD".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: None,
        os_type_id: None,
        size: 734_003_200,
        is_public: false,
        is_featured: false,
        bootable: true,
        url: Some("http://images.example/rescue.iso".into()),
    }
}

fn domain() -> DomainFacts {
    DomainFacts {
        domain_id: id(DOMAIN),
        name: "acme".into(),
        parent_id: Some(id(0xd00)),
        path: "/ROOT/acme".into(),
        network_domain: None,
    }
}

fn account() -> AccountFacts {
    AccountFacts {
        account_id: id(ACCOUNT),
        name: "acme-ops".into(),
        account_type: AccountType::User,
        domain_id: id(DOMAIN),
        network_domain: None,
    }
}

fn account_ref() -> AccountRef {
    AccountRef {
        account_id: id(ACCOUNT),
        name: "acme-ops".into(),
        domain_id: id(DOMAIN),
    }
}

fn user() -> UserFacts {
    UserFacts {
        user_id: id(0x05e),
        username: "jdoe".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        first_name: "Jane".into(),
        last_name: "Doe".into(),
        email: Some("jane@example.org".into()),
        timezone: Some("Europe/London".into()),
    }
}

fn user_ref() -> UserRef {
    UserRef {
        user_id: id(0x05e),
        username: "jdoe".into(),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
    }
}

fn zone() -> ZoneFacts {
    ZoneFacts {
        zone_id: id(ZONE),
        name: "zone-1".into(),
        description: None,
        network_type: "Advanced".into(),
        dns1: Some(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))),
        dns2: Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0x4860, 0, 0, 0, 0, 0, 0x8888,
        ))),
        internal_dns1: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        internal_dns2: None,
        guest_cidr: Some("10.1.0.0/16".into()),
        network_domain: None,
        security_group_enabled: false,
        local_storage_enabled: true,
        allocation_state: "Enabled".into(),
    }
}

fn pod() -> PodFacts {
    PodFacts {
        pod_id: id(0x90d),
        zone_id: id(ZONE),
        name: "pod-1".into(),
        gateway: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
        netmask: "255.255.255.0".into(),
        start_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10)),
        end_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 99))),
        allocation_state: "Enabled".into(),
    }
}

fn service_offering() -> ServiceOfferingFacts {
    ServiceOfferingFacts {
        service_offering_id: id(0x50),
        name: "Small Instance".into(),
        display_text: "Small Instance, 2 vCPU 2 GiB".into(),
        cpu_number: Some(2),
        cpu_speed: Some(1000),
        memory: Some(2048),
        is_customized: false,
        offer_ha: false,
        limit_cpu_use: false,
        dynamic_scaling_enabled: true,
        storage_type: "shared".into(),
        host_tags: None,
        storage_tags: None,
        root_disk_size: None,
        domain_ids: vec![],
        zone_ids: vec![id(ZONE)],
        system_vm_type: None,
    }
}

fn disk_offering() -> DiskOfferingFacts {
    DiskOfferingFacts {
        disk_offering_id: id(0xd1),
        name: "Custom".into(),
        display_text: "Custom size disk".into(),
        disk_size: None,
        is_customized: true,
        storage_type: "shared".into(),
        tags: None,
        min_iops: None,
        max_iops: Some(1000),
        domain_ids: vec![],
        zone_ids: vec![],
    }
}

fn tags() -> ResourceTags {
    ResourceTags {
        resource_type: "UserVm".into(),
        resource_ids: vec![id(0x1)],
        tags: vec![KeyValue {
            key: "cost-centre".into(),
            value: "R&D".into(),
        }],
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
    }
}

fn backup_assignment() -> BackupOfferingAssignment {
    BackupOfferingAssignment {
        vm_id: id(0x1),
        backup_offering_id: id(0xba),
        account_id: id(ACCOUNT),
        domain_id: id(DOMAIN),
        zone_id: id(ZONE),
        size: 3_221_225_472,
        protected_size: 21_474_836_480,
    }
}

fn offering_changed() -> VmOfferingChanged {
    let mut vm = vm();
    vm.service_offering_id = id(0x52);
    vm.cpu_number = 4;
    vm.memory = 4096;
    VmOfferingChanged {
        vm,
        previous_service_offering_id: id(0x50),
        previous_cpu_number: 2,
        previous_cpu_speed: 1000,
        previous_memory: 2048,
    }
}

/// The sample body of one event type.
pub(crate) fn body(t: EventType) -> EventBody {
    use EventBody as B;
    match t.name() {
        "VM.CREATE" => B::Vm(VmEvent::Create(VmCreated {
            vm: vm(),
            host_id: None,
            disk_offering_id: Some(id(0xd1)),
            root_disk_size: Some(21_474_836_480),
            user_data: Some("I2Nsb3VkLWNvbmZpZwo=".into()),
            ssh_keypairs: vec!["laptop".into()],
            affinity_group_ids: vec![],
        })),
        "VM.DESTROY" => B::Vm(VmEvent::Destroy(VmDestroyed { vm: vm(), expunge: true })),
        "VM.START" => B::Vm(VmEvent::Start(VmStarted { vm: vm(), host_id: Some(id(0x40)) })),
        "VM.STOP" => B::Vm(VmEvent::Stop(VmStopped { vm: vm(), forced: false })),
        "VM.REBOOT" => B::Vm(VmEvent::Reboot(VmLifecycle { vm: vm() })),
        "VM.UPDATE" => B::Vm(VmEvent::Update(VmUpdated {
            vm: vm(),
            user_data: None,
            group: Some("frontend".into()),
            ha_enabled: Some(true),
        })),
        "VM.UPGRADE" => B::Vm(VmEvent::Upgrade(offering_changed())),
        "VM.DYNAMIC.SCALE" => B::Vm(VmEvent::DynamicScale(offering_changed())),
        "VM.RESETPASSWORD" => B::Vm(VmEvent::ResetPassword(VmLifecycle { vm: vm() })),
        "VM.RESETSSHKEY" => B::Vm(VmEvent::ResetSshKey(VmSshKeyReset {
            vm: vm(),
            ssh_keypairs: vec!["laptop".into(), "ci".into()],
        })),
        "VM.MIGRATE" => B::Vm(VmEvent::Migrate(VmMigrated {
            vm: vm(),
            from_host_id: Some(id(0x40)),
            to_host_id: id(0x41),
        })),
        "VM.MOVE" => B::Vm(VmEvent::Move(VmMoved {
            vm: vm(),
            previous_account_id: id(0xacd),
            previous_domain_id: id(DOMAIN),
        })),
        "VM.RESTORE" => B::Vm(VmEvent::Restore(VmRestored {
            vm: vm(),
            previous_template_id: id(0x7d),
        })),
        "VM.EXPUNGE" => B::Vm(VmEvent::Expunge(VmLifecycle { vm: vm() })),
        "VM.RECOVER" => B::Vm(VmEvent::Recover(VmLifecycle { vm: vm() })),

        "ROUTER.CREATE" => B::Router(RouterEvent::Create(RouterLifecycle { router: router() })),
        "ROUTER.DESTROY" => B::Router(RouterEvent::Destroy(RouterLifecycle { router: router() })),
        "ROUTER.START" => B::Router(RouterEvent::Start(RouterLifecycle { router: router() })),
        "ROUTER.STOP" => B::Router(RouterEvent::Stop(RouterLifecycle { router: router() })),
        "ROUTER.REBOOT" => B::Router(RouterEvent::Reboot(RouterLifecycle { router: router() })),
        "ROUTER.HA" => B::Router(RouterEvent::Ha(RouterLifecycle { router: router() })),
        "ROUTER.UPGRADE" => B::Router(RouterEvent::Upgrade(RouterLifecycle { router: router() })),
        "ROUTER.STATS" => B::Router(RouterEvent::Stats(NetworkCounterReading {
            router_id: id(0x2),
            network_id: id(0x4e),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            zone_id: id(ZONE),
            bytes_sent: 1_048_576,
            bytes_received: 73_400_320,
        })),

        "NET.IPASSIGN" => B::Net(NetEvent::IpAssign(ip_address())),
        "NET.IPRELEASE" => B::Net(NetEvent::IpRelease(ip_address())),
        "NET.RULEADD" => B::Net(NetEvent::RuleAdd(rule())),
        "NET.RULEDELETE" => B::Net(NetEvent::RuleDelete(rule())),
        "NET.RULEMODIFY" => B::Net(NetEvent::RuleModify(NetworkRule {
            purpose: RulePurpose::StaticNat,
            ..rule()
        })),

        "NETWORK.CREATE" => B::Network(NetworkEvent::Create(NetworkLifecycle { network: network() })),
        "NETWORK.DELETE" => B::Network(NetworkEvent::Delete(NetworkLifecycle { network: network() })),
        "NETWORK.UPDATE" => B::Network(NetworkEvent::Update(NetworkLifecycle { network: network() })),
        "NETWORK.RESTART" => B::Network(NetworkEvent::Restart(NetworkRestarted {
            network: network(),
            cleanup: true,
        })),

        "FIREWALL.OPEN" => B::Firewall(FirewallEvent::Open(firewall(TrafficDirection::Ingress))),
        "FIREWALL.CLOSE" => B::Firewall(FirewallEvent::Close(firewall(TrafficDirection::Ingress))),
        "FIREWALL.EGRESS.OPEN" => {
            B::Firewall(FirewallEvent::EgressOpen(firewall(TrafficDirection::Egress)))
        }
        "FIREWALL.EGRESS.CLOSE" => {
            B::Firewall(FirewallEvent::EgressClose(firewall(TrafficDirection::Egress)))
        }

        "NIC.CREATE" => B::Nic(NicEvent::Create(nic())),
        "NIC.DELETE" => B::Nic(NicEvent::Delete(nic())),
        "NIC.UPDATE" => B::Nic(NicEvent::Update(nic())),

        "STATICNAT.ENABLE" => B::StaticNat(StaticNatEvent::Enable(static_nat())),
        "STATICNAT.DISABLE" => B::StaticNat(StaticNatEvent::Disable(static_nat())),

        "VLAN.IP.RANGE.CREATE" => B::Vlan(VlanEvent::IpRangeCreate(vlan_range())),
        "VLAN.IP.RANGE.DELETE" => B::Vlan(VlanEvent::IpRangeDelete(vlan_range())),

        "NETWORK.OFFERING.CREATE" => {
            B::NetworkOffering(NetworkOfferingEvent::Create(network_offering()))
        }
        "NETWORK.OFFERING.ASSIGN" => {
            B::NetworkOffering(NetworkOfferingEvent::Assign(offering_assignment()))
        }
        "NETWORK.OFFERING.EDIT" => B::NetworkOffering(NetworkOfferingEvent::Edit(network_offering())),
        "NETWORK.OFFERING.REMOVE" => {
            B::NetworkOffering(NetworkOfferingEvent::Remove(offering_assignment()))
        }
        "NETWORK.OFFERING.DELETE" => {
            B::NetworkOffering(NetworkOfferingEvent::Delete(network_offering()))
        }

        "LB.ASSIGN.TO.RULE" => B::LoadBalancer(LoadBalancerEvent::AssignToRule(lb_members())),
        "LB.REMOVE.FROM.RULE" => B::LoadBalancer(LoadBalancerEvent::RemoveFromRule(lb_members())),
        "LB.CREATE" => B::LoadBalancer(LoadBalancerEvent::Create(load_balancer())),
        "LB.DELETE" => B::LoadBalancer(LoadBalancerEvent::Delete(load_balancer())),
        "LB.STICKINESSPOLICY.CREATE" => {
            B::LoadBalancer(LoadBalancerEvent::StickinessPolicyCreate(lb_policy()))
        }
        "LB.STICKINESSPOLICY.DELETE" => {
            B::LoadBalancer(LoadBalancerEvent::StickinessPolicyDelete(lb_policy()))
        }
        "LB.HEALTHCHECKPOLICY.CREATE" => {
            B::LoadBalancer(LoadBalancerEvent::HealthCheckPolicyCreate(lb_policy()))
        }
        "LB.HEALTHCHECKPOLICY.DELETE" => {
            B::LoadBalancer(LoadBalancerEvent::HealthCheckPolicyDelete(lb_policy()))
        }
        "LB.UPDATE" => B::LoadBalancer(LoadBalancerEvent::Update(LoadBalancerFacts {
            algorithm: "leastconn".into(),
            ..load_balancer()
        })),

        "VPN.REMOTE.ACCESS.CREATE" => B::Vpn(VpnEvent::RemoteAccessCreate(remote_vpn())),
        "VPN.REMOTE.ACCESS.DESTROY" => B::Vpn(VpnEvent::RemoteAccessDestroy(remote_vpn())),
        "VPN.USER.ADD" => B::Vpn(VpnEvent::UserAdd(vpn_user())),
        "VPN.USER.REMOVE" => B::Vpn(VpnEvent::UserRemove(vpn_user())),

        "SG.AUTH.INGRESS" => B::SecurityGroup(SecurityGroupEvent::AuthIngress(sg_rules())),
        "SG.REVOKE.INGRESS" => B::SecurityGroup(SecurityGroupEvent::RevokeIngress(sg_rules())),
        "SG.AUTH.EGRESS" => B::SecurityGroup(SecurityGroupEvent::AuthEgress(sg_rules())),
        "SG.REVOKE.EGRESS" => B::SecurityGroup(SecurityGroupEvent::RevokeEgress(sg_rules())),
        "SG.CREATE" => B::SecurityGroup(SecurityGroupEvent::Create(security_group())),
        "SG.DELETE" => B::SecurityGroup(SecurityGroupEvent::Delete(security_group())),
        "SG.ASSIGN" => B::SecurityGroup(SecurityGroupEvent::Assign(sg_membership())),
        "SG.REMOVE" => B::SecurityGroup(SecurityGroupEvent::Remove(sg_membership())),

        "VPC.CREATE" => B::Vpc(VpcEvent::Create(vpc())),
        "VPC.UPDATE" => B::Vpc(VpcEvent::Update(vpc())),
        "VPC.DELETE" => B::Vpc(VpcEvent::Delete(vpc())),
        "VPC.RESTART" => B::Vpc(VpcEvent::Restart(vpc())),

        "VPC.OFFERING.CREATE" => B::VpcOffering(VpcOfferingEvent::Create(vpc_offering())),
        "VPC.OFFERING.UPDATE" => B::VpcOffering(VpcOfferingEvent::Update(vpc_offering())),
        "VPC.OFFERING.DELETE" => B::VpcOffering(VpcOfferingEvent::Delete(vpc_offering())),

        "VOLUME.CREATE" => B::Volume(VolumeEvent::Create(VolumeCreated {
            volume: volume(),
            vm_id: None,
            snapshot_id: Some(id(0x55)),
        })),
        "VOLUME.DELETE" => B::Volume(VolumeEvent::Delete(VolumeLifecycle { volume: volume() })),
        "VOLUME.ATTACH" => B::Volume(VolumeEvent::Attach(VolumeAttachment {
            volume: volume(),
            vm_id: id(0x1),
            device_id: Some(1),
        })),
        "VOLUME.DETACH" => B::Volume(VolumeEvent::Detach(VolumeAttachment {
            volume: volume(),
            vm_id: id(0x1),
            device_id: None,
        })),
        "VOLUME.EXTRACT" => B::Volume(VolumeEvent::Extract(VolumeLifecycle { volume: volume() })),
        "VOLUME.UPLOAD" => B::Volume(VolumeEvent::Upload(VolumeUploaded {
            volume: volume(),
            format: "QCOW2".into(),
            url: Some("http://images.example/data.qcow2".into()),
        })),
        "VOLUME.MIGRATE" => B::Volume(VolumeEvent::Migrate(VolumeLifecycle { volume: volume() })),
        "VOLUME.RESIZE" => B::Volume(VolumeEvent::Resize(VolumeResized {
            volume: VolumeFacts {
                size: 42_949_672_960,
                ..volume()
            },
            previous_size: 21_474_836_480,
            previous_disk_offering_id: Some(id(0xd1)),
        })),
        "VOLUME.STATS" => B::Volume(VolumeEvent::Stats(VolumeCounterReading {
            volume_id: id(0x10),
            vm_id: id(0x1),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            zone_id: id(ZONE),
            io_read: 1200,
            io_write: 3400,
            bytes_read: 4_915_200,
            bytes_write: u64::MAX,
        })),

        "SNAPSHOT.CREATE" => B::Snapshot(SnapshotEvent::Create(SnapshotLifecycle { snapshot: snapshot() })),
        "SNAPSHOT.DELETE" => B::Snapshot(SnapshotEvent::Delete(SnapshotLifecycle { snapshot: snapshot() })),
        "SNAPSHOT.REVERT" => B::Snapshot(SnapshotEvent::Revert(SnapshotLifecycle { snapshot: snapshot() })),

        name @ ("SNAPSHOTPOLICY.CREATE" | "SNAPSHOTPOLICY.UPDATE" | "SNAPSHOTPOLICY.DELETE") => {
            let policy = SnapshotPolicyFacts {
                policy_id: id(0x57),
                volume_id: id(0x10),
                account_id: id(ACCOUNT),
                domain_id: id(DOMAIN),
                interval: "DAILY".into(),
                schedule: "30:2".into(),
                timezone: "America/New_York".into(),
                max_snapshots: 7,
            };
            B::SnapshotPolicy(match name {
                "SNAPSHOTPOLICY.CREATE" => SnapshotPolicyEvent::Create(policy),
                "SNAPSHOTPOLICY.UPDATE" => SnapshotPolicyEvent::Update(policy),
                _ => SnapshotPolicyEvent::Delete(policy),
            })
        }

        "VMSNAPSHOT.CREATE" => B::VmSnapshot(VmSnapshotEvent::Create(VmSnapshotLifecycle { vm_snapshot: vm_snapshot() })),
        "VMSNAPSHOT.DELETE" => B::VmSnapshot(VmSnapshotEvent::Delete(VmSnapshotLifecycle { vm_snapshot: vm_snapshot() })),
        "VMSNAPSHOT.REVERTTO" => B::VmSnapshot(VmSnapshotEvent::RevertTo(VmSnapshotLifecycle { vm_snapshot: vm_snapshot() })),
        "VMSNAPSHOT.ON_PRIMARY" => B::VmSnapshot(VmSnapshotEvent::OnPrimary(VmSnapshotLifecycle { vm_snapshot: vm_snapshot() })),
        "VMSNAPSHOT.OFF_PRIMARY" => B::VmSnapshot(VmSnapshotEvent::OffPrimary(VmSnapshotLifecycle { vm_snapshot: vm_snapshot() })),

        "TEMPLATE.CREATE" => B::Template(TemplateEvent::Create(TemplateLifecycle { template: template() })),
        "TEMPLATE.DELETE" => B::Template(TemplateEvent::Delete(TemplateLifecycle { template: template() })),
        "TEMPLATE.UPDATE" => B::Template(TemplateEvent::Update(TemplateLifecycle { template: template() })),
        "TEMPLATE.DOWNLOAD.START" => B::Template(TemplateEvent::DownloadStart(TemplateLifecycle { template: template() })),
        "TEMPLATE.DOWNLOAD.SUCCESS" => B::Template(TemplateEvent::DownloadSuccess(TemplateLifecycle { template: template() })),
        "TEMPLATE.DOWNLOAD.FAILED" => B::Template(TemplateEvent::DownloadFailed(TemplateDownloadFailed {
            template: template(),
            error: "HTTP 404 from images.example".into(),
        })),
        "TEMPLATE.COPY" => B::Template(TemplateEvent::Copy(TemplateCopied {
            template: template(),
            source_zone_id: id(0x20f),
        })),
        "TEMPLATE.EXTRACT" => B::Template(TemplateEvent::Extract(TemplateLifecycle { template: template() })),
        "TEMPLATE.UPLOAD" => B::Template(TemplateEvent::Upload(TemplateLifecycle { template: template() })),
        "TEMPLATE.CLEANUP" => B::Template(TemplateEvent::Cleanup(TemplateLifecycle { template: template() })),

        "ISO.CREATE" => B::Iso(IsoEvent::Create(IsoLifecycle { iso: iso() })),
        "ISO.DELETE" => B::Iso(IsoEvent::Delete(IsoLifecycle { iso: iso() })),
        "ISO.COPY" => B::Iso(IsoEvent::Copy(IsoCopied { iso: iso(), source_zone_id: id(0x20f) })),
        "ISO.ATTACH" | "ISO.DETACH" => {
            let attachment = IsoAttachment {
                iso_id: id(0x150),
                vm_id: id(0x1),
                account_id: id(ACCOUNT),
                domain_id: id(DOMAIN),
                zone_id: id(ZONE),
            };
            B::Iso(if t.name() == "ISO.ATTACH" {
                IsoEvent::Attach(attachment)
            } else {
                IsoEvent::Detach(attachment)
            })
        }
        "ISO.EXTRACT" => B::Iso(IsoEvent::Extract(IsoLifecycle { iso: iso() })),
        "ISO.UPLOAD" => B::Iso(IsoEvent::Upload(IsoLifecycle { iso: iso() })),

        "DOMAIN.CREATE" => B::Domain(DomainEvent::Create(DomainLifecycle { domain: domain() })),
        "DOMAIN.DELETE" => B::Domain(DomainEvent::Delete(DomainDeleted { domain: domain(), cleanup: true })),
        "DOMAIN.UPDATE" => B::Domain(DomainEvent::Update(DomainLifecycle { domain: domain() })),

        "ACCOUNT.ENABLE" => B::Account(AccountEvent::Enable(account_ref())),
        "ACCOUNT.DISABLE" => B::Account(AccountEvent::Disable(AccountDisabled {
            account_id: id(ACCOUNT),
            name: "acme-ops".into(),
            domain_id: id(DOMAIN),
            locked: true,
            reason: Some("quota balance below zero".into()),
        })),
        "ACCOUNT.CREATE" => B::Account(AccountEvent::Create(AccountCreated { account: account() })),
        "ACCOUNT.DELETE" => B::Account(AccountEvent::Delete(account_ref())),
        "ACCOUNT.UPDATE" => B::Account(AccountEvent::Update(AccountUpdated {
            account: AccountFacts {
                account_type: AccountType::DomainAdmin,
                ..account()
            },
            previous_name: Some("acme".into()),
        })),
        "ACCOUNT.MARK.DEFAULT.ZONE" => B::Account(AccountEvent::MarkDefaultZone(AccountDefaultZone {
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            zone_id: id(ZONE),
        })),

        "USER.LOGIN" => B::User(UserEvent::Login(user_ref())),
        "USER.LOGOUT" => B::User(UserEvent::Logout(user_ref())),
        "USER.CREATE" => B::User(UserEvent::Create(UserCreated {
            user: user(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into()),
        })),
        "USER.DELETE" => B::User(UserEvent::Delete(user_ref())),
        "USER.DISABLE" => B::User(UserEvent::Disable(user_ref())),
        "USER.UPDATE" => B::User(UserEvent::Update(UserUpdated { user: user(), password_hash: None })),
        "USER.ENABLE" => B::User(UserEvent::Enable(user_ref())),
        "USER.LOCK" => B::User(UserEvent::Lock(user_ref())),

        "REGISTER.USER.KEY" => B::Register(RegisterEvent::UserKey(UserKeysRegistered {
            user_id: id(0x05e),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            api_key: "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg".into(),
            secret_key: sealed(),
        })),
        "REGISTER.SSH.KEYPAIR" => B::Register(RegisterEvent::SshKeyPair(SshKeyPairRegistered {
            keypair_id: id(0x55b),
            name: "laptop".into(),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            fingerprint: "51:9a:3c:47:2b:18:7f:c0:1e:55:33:d2:aa:91:4b:0c".into(),
            public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx jane@laptop".into(),
        })),

        "ZONE.CREATE" => B::Zone(ZoneEvent::Create(ZoneLifecycle { zone: zone() })),
        "ZONE.EDIT" => B::Zone(ZoneEvent::Edit(ZoneLifecycle { zone: zone() })),
        "ZONE.DELETE" => B::Zone(ZoneEvent::Delete(ZoneLifecycle { zone: zone() })),

        "POD.CREATE" => B::Pod(PodEvent::Create(PodLifecycle { pod: pod() })),
        "POD.EDIT" => B::Pod(PodEvent::Edit(PodLifecycle { pod: pod() })),
        "POD.DELETE" => B::Pod(PodEvent::Delete(PodLifecycle { pod: pod() })),

        "SERVICE.OFFERING.CREATE" => B::ServiceOffering(ServiceOfferingEvent::Create(ServiceOfferingLifecycle { offering: service_offering() })),
        "SERVICE.OFFERING.EDIT" => B::ServiceOffering(ServiceOfferingEvent::Edit(ServiceOfferingLifecycle { offering: service_offering() })),
        "SERVICE.OFFERING.DELETE" => B::ServiceOffering(ServiceOfferingEvent::Delete(ServiceOfferingLifecycle { offering: service_offering() })),

        "DISK.OFFERING.CREATE" => B::DiskOffering(DiskOfferingEvent::Create(DiskOfferingLifecycle { offering: disk_offering() })),
        "DISK.OFFERING.EDIT" => B::DiskOffering(DiskOfferingEvent::Edit(DiskOfferingLifecycle { offering: disk_offering() })),
        "DISK.OFFERING.DELETE" => B::DiskOffering(DiskOfferingEvent::Delete(DiskOfferingLifecycle { offering: disk_offering() })),

        "CONFIGURATION.VALUE.EDIT" => B::Configuration(ConfigurationEvent::ValueEdit(ConfigurationChanged {
            name: "usage.aggregation.timezone".into(),
            value: Some("America/New_York".into()),
            previous_value: Some("GMT".into()),
            scope: ConfigScope::Account,
            scope_id: Some(id(ACCOUNT)),
        })),

        "CREATE_TAGS" => B::Tags(TagsEvent::Create(tags())),
        "DELETE_TAGS" => B::Tags(TagsEvent::Delete(tags())),

        "BACKUP.OFFERING.ASSIGN" => B::Backup(BackupEvent::OfferingAssign(backup_assignment())),
        "BACKUP.OFFERING.REMOVE" => B::Backup(BackupEvent::OfferingRemove(backup_assignment())),

        "ASYNCJOB.SUBMIT" => B::AsyncJob(AsyncJobEvent::Submit(AsyncJobSubmitted {
            job_id: id(0x10b),
            command: "deployVirtualMachine".into(),
            account_id: id(ACCOUNT),
            user_id: id(0x05e),
            domain_id: id(DOMAIN),
            instance_type: Some("VirtualMachine".into()),
            instance_id: Some(id(0x1)),
            event_type: Some("VM.CREATE".into()),
            description: "deploying VM web-1".into(),
        })),
        "ASYNCJOB.START" => B::AsyncJob(AsyncJobEvent::Start(AsyncJobStarted { job_id: id(0x10b) })),
        "ASYNCJOB.COMPLETE" => B::AsyncJob(AsyncJobEvent::Complete(AsyncJobCompleted {
            job_id: id(0x10b),
            outcome: JobOutcome::Failed,
            result_code: 533,
            result: JsonDocument::new(&serde_json::json!({
                "errorcode": 533,
                "errortext": "Unable to create a deployment for VM[User|i-2-5-VM]",
            })),
        })),

        "ALERT.RAISE" => B::Alert(AlertEvent::Raise(AlertRaised {
            alert_id: id(0xa1),
            alert_type: 13,
            name: "ALERT.USAGE".into(),
            description: "usage computation lags the log by 3 periods".into(),
            zone_id: None,
            pod_id: None,
            cluster_id: None,
            account_id: None,
        })),
        "ALERT.RESOLVE" => B::Alert(AlertEvent::Resolve(AlertResolved { alert_id: id(0xa1), alert_type: 13 })),
        "ALERT.ARCHIVE" => B::Alert(AlertEvent::Archive(AlertsHidden { alert_ids: vec![id(0xa1)] })),
        "ALERT.DELETE" => B::Alert(AlertEvent::Delete(AlertsHidden { alert_ids: vec![id(0xa1), id(0xa2)] })),
        "EVENT.ARCHIVE" => B::EventHistory(EventHistoryEvent::Archive(EventsHidden { event_ids: vec![id(0xe1)] })),
        "EVENT.DELETE" => B::EventHistory(EventHistoryEvent::Delete(EventsHidden { event_ids: vec![id(0xe1), id(0xe2)] })),
        "CLOCK.ADVANCE" => B::Clock(ClockEvent::Advance(ClockAdvanced {
            from: Timestamp::from_millis(1_714_557_600_000),
            to: Timestamp::from_millis(1_714_644_000_000),
        })),

        "HOST.ADD" => B::Host(HostEvent::Add(HostLifecycle { host: host() })),
        "HOST.UPDATE" => B::Host(HostEvent::Update(HostLifecycle { host: host() })),
        "MAINT.PREPARE" => B::Host(HostEvent::MaintenancePrepare(HostLifecycle {
            host: HostFacts { resource_state: "Maintenance".into(), ..host() },
        })),
        "MAINT.CANCEL" => B::Host(HostEvent::MaintenanceCancel(HostLifecycle { host: host() })),
        "CLUSTER.ADD" => B::Host(HostEvent::ClusterAdd(ClusterLifecycle {
            cluster: ClusterFacts {
                cluster_id: id(0xc1),
                name: "sim-cluster-1".into(),
                zone_id: id(ZONE),
                pod_id: id(0x9d),
                hypervisor: "Simulator".into(),
                cluster_type: "CloudManaged".into(),
                allocation_state: "Enabled".into(),
            },
        })),
        "USAGE.CLOSE" => B::Usage(UsageEvent::Close(UsagePeriodsClosed {
            until: Timestamp::from_millis(1_714_523_400_000),
            recompute_from: Some(Timestamp::from_millis(1_714_435_200_000)),
        })),
        "USAGE.PRUNE" => B::Usage(UsageEvent::Prune(UsageRecordsPruned {
            before: Timestamp::from_millis(1_714_435_200_000),
            interval_days: 30,
        })),
        "DRIVER.FAILED" => B::Driver(DriverEvent::Failed(DriverFailed {
            command_id: id(0xd1),
            command: "StartCommand".into(),
            resource_type: "VirtualMachine".into(),
            resource_id: id(0x1),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            error: "Simulated failure of StartCommand".into(),
        })),
        "DRIVER.APPLIED" => B::Driver(DriverEvent::Applied(DriverApplied {
            command_id: id(0xd2),
            command: "DhcpEntryCommand".into(),
            resource_type: "DomainRouter".into(),
            resource_id: id(0xd3),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
        })),
        "SSH.KEYPAIR.CREATE" => B::SshKeyPair(SshKeyPairEvent::Create(keypair())),
        "SSH.KEYPAIR.DELETE" => B::SshKeyPair(SshKeyPairEvent::Delete(keypair())),
        "RESOURCE.LIMIT.UPDATE" => B::ResourceLimit(ResourceLimitEvent::Update(ResourceLimitChanged {
            resource_type: 0,
            owner: LimitOwner::Account,
            owner_id: id(ACCOUNT),
            max: Some(20),
        })),
        name @ ("QUOTA.TARIFF.CREATE" | "QUOTA.TARIFF.UPDATE") => {
            let tariff = QuotaTariffDefined {
                tariff_id: id(0x7a),
                name: "compute-hourly".into(),
                description: Some("Running VMs, per compute-month".into()),
                usage_type: 1,
                value: "720.00".parse().expect("decimal"),
                effective_on: Timestamp::from_millis(1_714_521_600_000),
                end_date: (name == "QUOTA.TARIFF.UPDATE")
                    .then(|| Timestamp::from_millis(1_717_200_000_000)),
                position: Some(1),
            };
            if name == "QUOTA.TARIFF.CREATE" {
                B::Quota(QuotaEvent::TariffCreate(tariff))
            } else {
                B::Quota(QuotaEvent::TariffUpdate(tariff))
            }
        }
        "QUOTA.TARIFF.DELETE" => B::Quota(QuotaEvent::TariffDelete(QuotaTariffRemoved {
            tariff_id: id(0x7a),
            name: "compute-hourly".into(),
        })),
        "QUOTA.CREDITS" => B::Quota(QuotaEvent::Credits(QuotaCreditsAdded {
            credit_id: id(0x7c),
            account_id: id(ACCOUNT),
            domain_id: id(DOMAIN),
            amount: "250.50".parse().expect("decimal"),
            min_balance: Some("25".parse().expect("decimal")),
            enforce: Some(true),
        })),
        name @ ("ALERT.SINK.CREATE" | "ALERT.SINK.UPDATE") => {
            let webhook = name == "ALERT.SINK.CREATE";
            let sink = AlertSinkDefined {
                sink_id: id(if webhook { 0x51 } else { 0x52 }),
                name: if webhook { "billing-hook" } else { "ops-mail" }.into(),
                kind: if webhook { AlertSinkKind::Webhook } else { AlertSinkKind::Email },
                alert_types: if webhook { vec![] } else { vec![13, 20, 23] },
                url: webhook.then(|| "https://billing.example.com/alerts".into()),
                secret: webhook.then(sealed),
                smtp_host: (!webhook).then(|| "smtp.example.com".into()),
                smtp_port: (!webhook).then_some(587),
                smtp_username: (!webhook).then(|| "alerts".into()),
                smtp_password: (!webhook).then(sealed),
                email_from: (!webhook).then(|| "cloud@example.com".into()),
                email_to: if webhook { vec![] } else { vec!["ops@example.com".into()] },
                max_attempts: 8,
            };
            if webhook {
                B::AlertDelivery(AlertDeliveryEvent::SinkCreate(sink))
            } else {
                B::AlertDelivery(AlertDeliveryEvent::SinkUpdate(sink))
            }
        }
        "ALERT.SINK.DELETE" => B::AlertDelivery(AlertDeliveryEvent::SinkDelete(AlertSinkRemoved {
            sink_id: id(0x51),
            name: "billing-hook".into(),
        })),
        "ALERT.DELIVERY.DONE" => B::AlertDelivery(AlertDeliveryEvent::Done(AlertDelivered {
            notification_id: id(0xa1),
            sink_id: id(0x51),
            idempotency_key: id(0x5a),
            attempt: 3,
        })),
        "ALERT.DELIVERY.FAILED" => B::AlertDelivery(AlertDeliveryEvent::Failed(AlertDeliveryFailed {
            notification_id: id(0xa1),
            sink_id: id(0x51),
            idempotency_key: id(0x5a),
            attempt: 2,
            error: "HTTP 503 Service Unavailable".into(),
            retry_at: Some(Timestamp::from_millis(1_714_521_604_000)),
        })),
        name @ ("USAGE.THRESHOLD.CREATE" | "USAGE.THRESHOLD.UPDATE") => {
            let create = name == "USAGE.THRESHOLD.CREATE";
            let threshold = UsageThresholdDefined {
                threshold_id: id(0x7d),
                account_id: id(ACCOUNT),
                domain_id: id(DOMAIN),
                name: "daily-compute".into(),
                metric: if create { ThresholdMetric::Usage } else { ThresholdMetric::Quota },
                usage_type: create.then_some(1),
                limit: if create { "48" } else { "80" }.parse().expect("decimal"),
                budget: (!create).then(|| "1000.00".parse().expect("decimal")),
                notify_resolve: !create,
            };
            if create {
                B::UsageThreshold(UsageThresholdEvent::Create(threshold))
            } else {
                B::UsageThreshold(UsageThresholdEvent::Update(threshold))
            }
        }
        "USAGE.THRESHOLD.DELETE" => B::UsageThreshold(UsageThresholdEvent::Delete(UsageThresholdRemoved {
            threshold_id: id(0x7d),
            account_id: id(ACCOUNT),
        })),

        other => panic!("no sample for event type {other}: add one to event/samples.rs"),
    }
}

/// Every event type's sample, recorded at consecutive positions of one chain.
pub(crate) fn recorded_events() -> Vec<RecordedEvent> {
    let mut prev_hash = ChainHash::GENESIS;
    let base = Timestamp::from_millis(1_772_946_000_000);
    EventType::all()
        .enumerate()
        .map(|(i, t)| {
            let n = i as u64 + 1;
            let body = body(t);
            let imported = i % 3 == 0;
            let event = RecordedEvent {
                envelope: Envelope {
                    id: id(0xe0000 + i as u32),
                    position: Position(n),
                    stream: StreamId::new("sample", id(0xe5)).expect("valid category"),
                    version: n,
                    occurred_at: if imported {
                        base.add_millis(-86_400_000)
                    } else {
                        base.add_millis(n as i64)
                    },
                    recorded_at: base.add_millis(n as i64),
                    actor: if i % 2 == 0 {
                        Actor::user(id(0x05e), id(ACCOUNT))
                    } else {
                        Actor::SYSTEM
                    },
                    correlation_id: (i % 4 != 0).then(|| id(0xc0)),
                    causation_id: (i % 5 == 0).then(|| id(0xca)),
                    level: [Level::Info, Level::Warn, Level::Error][i % 3],
                    state: [
                        EventState::Created,
                        EventState::Scheduled,
                        EventState::Started,
                        EventState::Completed,
                    ][i % 4],
                    schema: body.schema(),
                    prev_hash,
                },
                body: Box::new(body),
            };
            prev_hash = event.chain_hash().expect("samples encode");
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_sample() {
        for t in EventType::all() {
            assert_eq!(body(t).event_type(), t, "sample for {t} has the wrong type");
        }
    }
}

/// `docs/events.md` carries the catalogue and an example per family, generated from the code.
#[cfg(test)]
mod docs {
    use super::*;

    const LEDGERSTACK_ONLY: &[&str] = &[
        "ROUTER.STATS",
        "VOLUME.STATS",
        "ASYNCJOB.",
        "ALERT.",
        "USAGE.",
        "QUOTA.",
    ];

    fn catalogue_table() -> String {
        let mut out =
            String::from("| code | type | family | payload | schema |\n|---|---|---|---|---|\n");
        for t in EventType::all() {
            let info = t.info();
            let note = if LEDGERSTACK_ONLY.iter().any(|p| info.name.starts_with(p)) {
                " (*Ledgerstack*)"
            } else {
                ""
            };
            out.push_str(&format!(
                "| `{:#06x}` | `{}`{} | {} | `{}` | {} |\n",
                info.code, info.name, note, info.family, info.payload, info.schema
            ));
        }
        out
    }

    fn examples() -> String {
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        for event in recorded_events() {
            let info = event.body.event_type().info();
            if !seen.insert(info.family) {
                continue;
            }
            let line = event.to_json_line().unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            out.push_str(&format!(
                "### {} (`{}`)\n\n```json\n{}\n```\n\n",
                info.family,
                info.name,
                serde_json::to_string_pretty(&value).unwrap()
            ));
        }
        out.trim_end().to_owned() + "\n"
    }

    fn replace_section(doc: &str, name: &str, content: &str) -> String {
        let begin = doc
            .find(&format!("<!-- BEGIN GENERATED: {name}"))
            .unwrap_or_else(|| panic!("docs/events.md lacks the {name} markers"));
        let body_start = begin + doc[begin..].find("-->").unwrap() + 3;
        let end = doc
            .find(&format!("<!-- END GENERATED: {name} -->"))
            .unwrap();
        format!("{}\n{}{}", &doc[..body_start], content, &doc[end..])
    }

    #[test]
    fn docs_events_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let generated = replace_section(
            &replace_section(&doc, "catalogue", &catalogue_table()),
            "examples",
            &examples(),
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        assert!(
            generated == doc,
            "docs/events.md is out of date: run `UPDATE_GOLDEN=1 cargo test -p engine docs_events` and commit it"
        );
    }
}
