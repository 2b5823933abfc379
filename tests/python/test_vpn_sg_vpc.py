"""Remote access VPN and VPN users, security groups, VPCs and virtual routers through the real
`cs` client (spec/commands.md "VPN, security groups, VPC, routers"): createRemoteAccessVpn,
deleteRemoteAccessVpn, listRemoteAccessVpns, addVpnUser, removeVpnUser, listVpnUsers,
createSecurityGroup, deleteSecurityGroup, listSecurityGroups, authorize/revoke
SecurityGroupIngress/Egress, createVPC, listVPCs, updateVPC, restartVPC, deleteVPC,
listVPCOfferings, listRouters, startRouter, stopRouter, rebootRouter, destroyRouter.

After every step that reaches the network driver, the Ledgerstack extensions
listRouterConfigurations and listSecurityGroupConfigurations must say that what the simulator
programmed matches what the log implies.

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_vpn_sg_vpc.py
"""

from __future__ import annotations

import cs
import pytest

from conftest import (  # noqa: F401  (fixtures shared by the suites)
    api_error,
    assert_success,
    eventually,
    new_user,
    require,
    unique,
    waiting,
)

ISOLATED_OFFERING = "DefaultIsolatedNetworkOfferingWithSourceNatService"
VPC_TIER_OFFERING = "DefaultIsolatedNetworkOfferingForVpcNetworks"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def user(server, api):
    """A new normal user: (account, client that waits for jobs)."""
    account, _, client = new_user(server, api)
    return account, waiting(server, client)


def network_offering(api, name: str) -> dict:
    [offering] = [
        o for o in api.listNetworkOfferings().get("networkoffering", []) if o["name"] == name
    ]
    return offering


def isolated_network(api, client: cs.CloudStack, zone, **extra) -> dict:
    """A new isolated network of `client`'s account, with its source-NAT address and router."""
    offering = network_offering(api, ISOLATED_OFFERING)
    name = unique("net")
    return client.createNetwork(
        name=name, displaytext=name, networkofferingid=offering["id"], zoneid=zone["id"], **extra
    )["network"]


def routers(api, **filters) -> list[dict]:
    return api.listRouters(listall=True, **filters).get("router", [])


def running_router(api, **filters) -> dict:
    """The one router `filters` select, once it runs."""

    def probe():
        found = routers(api, **filters)
        return found[0] if len(found) == 1 and found[0]["state"] == "Running" else None

    return eventually(probe, f"a running router for {filters}", timeout=30)


def router_configurations(api, **filters) -> list[dict]:
    return api.listRouterConfigurations(**filters).get("routerconfiguration", [])


def routers_match(api, **filters) -> list[dict]:
    """Every running router `filters` select has the configuration the log implies (commands
    for facts finish shortly after the job that caused them: polled)."""

    def probe():
        rows = router_configurations(api, **filters)
        running = [r for r in rows if r.get("running")]
        return running if running and all(r["matches"] for r in running) else None

    return eventually(probe, f"router configurations matching for {filters}", timeout=30)


def groups_match(api, group_id: str) -> dict:
    def probe():
        rows = api.listSecurityGroupConfigurations(securitygroupid=group_id).get(
            "securitygroupconfiguration", []
        )
        return rows[0] if len(rows) == 1 and rows[0]["matches"] else None

    return eventually(probe, f"security group {group_id} applied as the log says", timeout=30)


def source_nat_ip(client: cs.CloudStack, **filters) -> dict:
    ips = client.listPublicIpAddresses(issourcenat=True, **filters).get("publicipaddress", [])
    assert len(ips) == 1, ips
    return ips[0]


# --------------------------------------------------------------------------------------------
# Remote access VPN and its users
# --------------------------------------------------------------------------------------------


def test_vpn_on_a_source_nat_address_with_users(server, api, commands, zone):
    require(commands, "createNetwork", "listPublicIpAddresses", "createRemoteAccessVpn")
    account, client = user(server, api)
    # A guest CIDR clear of the default client range (10.1.2.1-10.1.2.8).
    network = isolated_network(api, client, zone, gateway="10.3.1.1", netmask="255.255.255.0")
    router = running_router(api, networkid=network["id"])
    ip = source_nat_ip(client, associatednetworkid=network["id"])
    assert router["publicip"] == ip["ipaddress"]

    vpn = client.createRemoteAccessVpn(publicipid=ip["id"])["remoteaccessvpn"]
    assert vpn["publicipid"] == ip["id"]
    assert vpn["publicip"] == ip["ipaddress"]
    assert vpn["state"] == "Running"
    assert vpn["account"] == account["name"]
    # The default range of remote.access.vpn.client.iprange; its first address is the server's.
    assert vpn["iprange"] == "10.1.2.2-10.1.2.8"
    assert len(vpn["presharedkey"]) == 24 and vpn["presharedkey"].isalnum()
    [listed] = client.listRemoteAccessVpns()["remoteaccessvpn"]
    assert listed["id"] == vpn["id"]
    assert listed["presharedkey"] == vpn["presharedkey"]
    [config] = routers_match(api, routerid=router["id"])
    assert config["expected"]["vpn"] == {"public_ip": ip["ipaddress"], "ip_range": vpn["iprange"]}

    # One VPN per address.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createRemoteAccessVpn(publicipid=ip["id"])
    assert "already exists" in api_error(excinfo, 431)

    alice = client.addVpnUser(username="alice", password="s3cret-1")["vpnuser"]
    bob = client.addVpnUser(username="bob.b", password="s3cret-2")["vpnuser"]
    assert alice["username"] == "alice" and alice["state"] == "Active"
    assert alice["account"] == account["name"]
    assert bob["state"] == "Active"
    users = client.listVpnUsers()["vpnuser"]
    assert sorted(u["username"] for u in users) == ["alice", "bob.b"]
    assert client.listVpnUsers(username="alice")["vpnuser"][0]["id"] == alice["id"]
    [config] = routers_match(api, routerid=router["id"])
    assert sorted(config["expected"]["vpn_users"]) == ["alice", "bob.b"]

    # Usernames are unique per account, and checked as CloudStack checks them.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addVpnUser(username="alice", password="other-pw")
    assert "already added" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addVpnUser(username="x", password="s3cret-3")
    assert "Username [x] is invalid" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addVpnUser(username="carol", password="no spaces")
    assert "Password has to be" in api_error(excinfo, 431)

    assert_success(client.removeVpnUser(username="alice"))
    assert [u["username"] for u in client.listVpnUsers()["vpnuser"]] == ["bob.b"]
    [config] = routers_match(api, routerid=router["id"])
    assert config["expected"]["vpn_users"] == ["bob.b"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.removeVpnUser(username="alice")
    assert "Could not find VPN user" in api_error(excinfo, 431)

    # Another account can neither see nor delete the VPN.
    _, other = user(server, api)
    assert other.listRemoteAccessVpns().get("remoteaccessvpn", []) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.deleteRemoteAccessVpn(publicipid=ip["id"])
    api_error(excinfo, 531)

    assert_success(client.deleteRemoteAccessVpn(publicipid=ip["id"]))
    assert client.listRemoteAccessVpns().get("remoteaccessvpn", []) == []
    [config] = routers_match(api, routerid=router["id"])
    assert config["expected"].get("vpn") is None
    # VPN users belong to the account and stay.
    assert [u["username"] for u in client.listVpnUsers()["vpnuser"]] == ["bob.b"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteRemoteAccessVpn(publicipid=ip["id"])
    api_error(excinfo, 431)


def test_vpn_users_without_a_vpn_are_recorded_at_once(server, api, commands):
    require(commands, "addVpnUser")
    _, client = user(server, api)
    added = client.addVpnUser(username="dave", password="pw-dave")["vpnuser"]
    assert added["state"] == "Active"
    assert [u["id"] for u in client.listVpnUsers()["vpnuser"]] == [added["id"]]
    assert_success(client.removeVpnUser(username="dave"))
    assert client.listVpnUsers().get("vpnuser", []) == []


def test_a_vpn_needs_a_source_nat_address_and_a_client_range_off_the_guest_cidr(
    server, api, commands, zone
):
    require(commands, "createNetwork", "associateIpAddress", "createRemoteAccessVpn")
    _, client = user(server, api)
    # A guest CIDR that holds the default client range (10.1.2.1-10.1.2.8).
    network = isolated_network(api, client, zone, gateway="10.1.2.1", netmask="255.255.255.0")
    router = running_router(api, networkid=network["id"])
    extra = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createRemoteAccessVpn(publicipid=extra["id"])
    assert "Source NAT IP" in api_error(excinfo, 431)
    ip = source_nat_ip(client, associatednetworkid=network["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createRemoteAccessVpn(publicipid=ip["id"])
    assert "overlaps with guest ip range" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createRemoteAccessVpn(publicipid=ip["id"], iprange="192.168.9.9")
    assert "is an invalid IP range" in api_error(excinfo, 431)
    vpn = client.createRemoteAccessVpn(publicipid=ip["id"], iprange="192.168.9.1-192.168.9.20")[
        "remoteaccessvpn"
    ]
    assert vpn["iprange"] == "192.168.9.2-192.168.9.20"
    routers_match(api, routerid=router["id"])


# --------------------------------------------------------------------------------------------
# Security groups
# --------------------------------------------------------------------------------------------


def test_security_group_rules(server, api, commands):
    require(commands, "createSecurityGroup", "listSecurityGroupConfigurations")
    account, client = user(server, api)
    name = unique("sg")
    group = client.createSecurityGroup(name=name, description="web tier")["securitygroup"]
    assert group["name"] == name
    assert group["description"] == "web tier"
    assert group["account"] == account["name"]
    assert group.get("ingressrule", []) == [] and group.get("egressrule", []) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createSecurityGroup(name=name)
    assert "already exists" in api_error(excinfo, 431)

    ingress = client.authorizeSecurityGroupIngress(
        securitygroupid=group["id"], protocol="TCP", startport=22, endport=22,
        cidrlist="0.0.0.0/0,10.0.0.0/8",
    )["securitygroup"]
    assert ingress["id"] == group["id"]
    rules = ingress["ingressrule"]
    assert sorted(r["cidr"] for r in rules) == ["0.0.0.0/0", "10.0.0.0/8"]
    assert all(r["protocol"] == "tcp" and r["startport"] == 22 and r["endport"] == 22
               for r in rules)
    # By name, ICMP: type and code instead of ports.
    icmp = client.authorizeSecurityGroupIngress(
        securitygroupname=name, protocol="ICMP", icmptype=8, icmpcode=0, cidrlist="0.0.0.0/0",
    )["securitygroup"]["ingressrule"]
    assert [(r["icmptype"], r["icmpcode"]) for r in icmp] == [(8, 0)]
    assert "startport" not in icmp[0]
    egress = client.authorizeSecurityGroupEgress(
        securitygroupid=group["id"], protocol="udp", startport=53, endport=53,
        cidrlist="192.168.0.0/16",
    )["securitygroup"]
    [egress_rule] = egress["egressrule"]
    assert egress.get("ingressrule", []) == []
    groups_match(api, group["id"])

    # CloudStack skips rules the group already has; nothing new is a failure.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.authorizeSecurityGroupIngress(
            securitygroupid=group["id"], protocol="tcp", startport=22, endport=22,
            cidrlist="0.0.0.0/0",
        )
    api_error(excinfo, 530)
    # Invalid input is refused before anything is recorded.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.authorizeSecurityGroupIngress(
            securitygroupid=group["id"], protocol="tcp", startport=80, endport=22,
            cidrlist="0.0.0.0/0",
        )
    assert "Invalid port range" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.authorizeSecurityGroupIngress(
            securitygroupid=group["id"], protocol="tcp", startport=80, endport=80,
            cidrlist="nonsense",
        )
    assert "Invalid cidr" in api_error(excinfo, 431)

    [listed] = client.listSecurityGroups(id=group["id"])["securitygroup"]
    assert len(listed["ingressrule"]) == 3 and len(listed["egressrule"]) == 1
    assert listed["virtualmachinecount"] == 0
    assert [g["id"] for g in client.listSecurityGroups(securitygroupname=name)["securitygroup"]] \
        == [group["id"]]

    # Revoke by rule id, of the right direction only.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.revokeSecurityGroupEgress(id=rules[0]["ruleid"])
    assert "Mismatch in rule type" in api_error(excinfo, 431)
    assert_success(client.revokeSecurityGroupIngress(id=rules[0]["ruleid"]))
    assert_success(client.revokeSecurityGroupEgress(id=egress_rule["ruleid"]))
    [listed] = client.listSecurityGroups(id=group["id"])["securitygroup"]
    assert rules[0]["ruleid"] not in [r["ruleid"] for r in listed["ingressrule"]]
    assert len(listed["ingressrule"]) == 2 and listed.get("egressrule", []) == []
    groups_match(api, group["id"])

    # Another account may not touch it.
    _, other = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.deleteSecurityGroup(id=group["id"])
    api_error(excinfo, 531)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.authorizeSecurityGroupIngress(
            securitygroupid=group["id"], protocol="tcp", startport=1, endport=2,
            cidrlist="0.0.0.0/0",
        )
    api_error(excinfo, 531)

    # A rule may admit another group instead of a CIDR; the admitted group is then in use.
    peer_name = unique("sg")
    peer = client.createSecurityGroup(name=peer_name)["securitygroup"]
    [from_group] = client.authorizeSecurityGroupIngress(
        securitygroupid=peer["id"], protocol="tcp", startport=3306, endport=3306,
        usersecuritygrouplist=[{"account": account["name"], "group": name}],
    )["securitygroup"]["ingressrule"]
    assert from_group["securitygroupname"] == name
    assert from_group["account"] == account["name"]
    assert "cidr" not in from_group
    groups_match(api, peer["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteSecurityGroup(name=name)
    assert "security rules that allow this group" in api_error(excinfo, 536)
    assert client.deleteSecurityGroup(id=peer["id"])["success"] is True

    assert client.deleteSecurityGroup(name=name)["success"] is True
    assert client.listSecurityGroups(id=group["id"]).get("securitygroup", []) == []
    groups_match_none = api.listSecurityGroupConfigurations(securitygroupid=group["id"])
    assert groups_match_none.get("securitygroupconfiguration", []) == []


def test_a_security_group_in_use_cannot_be_deleted(server, api, commands, zone):
    require(commands, "createSecurityGroup", "deployVirtualMachine")
    [deploy] = api.listApis(name="deployVirtualMachine")["api"]
    if "securitygroupids" not in {p["name"] for p in deploy["params"]}:
        pytest.skip("deployVirtualMachine has no securitygroupids yet (networks helper)")
    _, client = user(server, api)
    group = client.createSecurityGroup(name=unique("sg"))["securitygroup"]
    [template] = [
        t for t in api.listTemplates(templatefilter="featured")["template"]
        if t["zoneid"] == zone["id"]
    ][:1]
    offering = next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )
    vm = client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
        securitygroupids=group["id"],
    )["virtualmachine"]
    [listed] = client.listSecurityGroups(id=group["id"])["securitygroup"]
    assert listed["virtualmachineids"] == [vm["id"]]
    assert [g["id"] for g in client.listSecurityGroups(virtualmachineid=vm["id"])
            ["securitygroup"]] == [group["id"]]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteSecurityGroup(id=group["id"])
    assert api_error(excinfo, 536) == "Cannot delete group when it's in use by virtual machines"
    groups_match(api, group["id"])

    # Once the VM is expunged the group is free (and the VM's host capacity too, for the
    # suites that share this server).
    server.client(fetch_result=True).destroyVirtualMachine(id=vm["id"], expunge=True)

    def freed():
        [row] = client.listSecurityGroups(id=group["id"])["securitygroup"]
        return row["virtualmachinecount"] == 0

    eventually(freed, "the expunged VM to leave its security group")
    groups_match(api, group["id"])
    assert client.deleteSecurityGroup(id=group["id"])["success"] is True


# --------------------------------------------------------------------------------------------
# VPCs
# --------------------------------------------------------------------------------------------


def test_vpc_lifecycle(server, api, commands, zone):
    require(commands, "createVPC", "listVPCOfferings")
    [offering] = api.listVPCOfferings(isdefault=True)["vpcoffering"]
    assert offering["state"] == "Enabled"
    assert "SourceNat" in [s["name"] for s in offering["service"]]
    account, client = user(server, api)
    assert [o["id"] for o in client.listVPCOfferings(id=offering["id"])["vpcoffering"]] \
        == [offering["id"]]

    name = unique("vpc")
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createVPC(name=name, zoneid=zone["id"], vpcofferingid=offering["id"],
                         cidr="8.8.0.0/16")
    assert "RFC1918" in api_error(excinfo, 431)
    vpc = client.createVPC(
        name=name, displaytext="my vpc", zoneid=zone["id"], vpcofferingid=offering["id"],
        cidr="10.10.0.0/16",
    )["vpc"]
    assert vpc["name"] == name and vpc["displaytext"] == "my vpc"
    assert vpc["state"] == "Enabled"
    assert vpc["cidr"] == "10.10.0.0/16"
    assert vpc["vpcofferingid"] == offering["id"]
    assert vpc["zoneid"] == zone["id"]
    assert vpc["account"] == account["name"]
    assert vpc.get("network", []) == []
    assert vpc["restartrequired"] is False
    # The job ends once the VPC's router runs.
    [router] = routers(api, vpcid=vpc["id"])
    assert router["state"] == "Running"
    assert router["vpcid"] == vpc["id"] and router["vpcname"] == name
    routers_match(api, routerid=router["id"])
    [listed] = client.listVPCs(id=vpc["id"])["vpc"]
    assert listed["id"] == vpc["id"]

    # Another account: not listed, not updatable, not deletable.
    _, other = user(server, api)
    assert other.listVPCs().get("vpc", []) == []
    for call in (lambda: other.updateVPC(id=vpc["id"], name="stolen"),
                 lambda: other.deleteVPC(id=vpc["id"]),
                 lambda: other.restartVPC(id=vpc["id"])):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        api_error(excinfo, 531)

    updated = client.updateVPC(id=vpc["id"], name=name + "-b", displaytext="renamed")["vpc"]
    assert updated["name"] == name + "-b" and updated["displaytext"] == "renamed"
    assert_success(client.restartVPC(id=vpc["id"]))
    routers_match(api, routerid=router["id"])

    # A tier keeps the VPC from being deleted.
    if "createNetwork" in commands:
        tier_offering = network_offering(api, VPC_TIER_OFFERING)
        tier = client.createNetwork(
            name=unique("tier"), displaytext="tier", networkofferingid=tier_offering["id"],
            zoneid=zone["id"], vpcid=vpc["id"], gateway="10.10.1.1", netmask="255.255.255.0",
        )["network"]
        [listed] = client.listVPCs(id=vpc["id"])["vpc"]
        assert [n["id"] for n in listed["network"]] == [tier["id"]]
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            client.deleteVPC(id=vpc["id"])
        assert "as its used by 1 networks" in api_error(excinfo, 536)
        assert_success(client.deleteNetwork(id=tier["id"]))

    assert_success(client.deleteVPC(id=vpc["id"]))
    assert client.listVPCs(id=vpc["id"]).get("vpc", []) == []
    assert routers(api, vpcid=vpc["id"]) == []
    assert router_configurations(api, routerid=router["id"]) == []


def test_vpc_limit(server, api, commands, zone):
    require(commands, "createVPC", "updateResourceLimit")
    account, client = user(server, api)
    api.updateResourceLimit(account=account["name"], domainid=account["domainid"],
                            resourcetype=7, max=0)
    [offering] = api.listVPCOfferings(isdefault=True)["vpcoffering"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createVPC(name=unique("vpc"), zoneid=zone["id"], vpcofferingid=offering["id"],
                         cidr="10.20.0.0/16")
    api_error(excinfo, 532)


# --------------------------------------------------------------------------------------------
# Routers
# --------------------------------------------------------------------------------------------


def test_router_lifecycle(server, api, commands, zone):
    require(commands, "createNetwork", "listRouters", "listRouterConfigurations")
    account, client = user(server, api)
    network = isolated_network(api, client, zone)
    router = running_router(api, networkid=network["id"])
    assert router["guestnetworkid"] == network["id"]
    assert router["guestnetworkname"] == network["name"]
    assert router["account"] == account["name"]
    assert router["role"] == "VIRTUAL_ROUTER"
    assert router["isredundantrouter"] is False
    assert router["zoneid"] == zone["id"]
    for key in ("name", "publicip", "hostid", "serviceofferingid", "created", "version"):
        assert router.get(key), (key, router)
    routers_match(api, routerid=router["id"])
    # Router commands are for admins only.
    with pytest.raises(cs.CloudStackApiException):
        client.listRouters()

    admin = server.client(fetch_result=True)
    stopped = admin.stopRouter(id=router["id"])["router"]
    assert stopped["state"] == "Stopped"
    [config] = router_configurations(api, routerid=router["id"])
    assert config["running"] is False
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.stopRouter(id=router["id"])
    assert "is in state Stopped" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.rebootRouter(id=router["id"])
    api_error(excinfo, 534)

    started = admin.startRouter(id=router["id"])["router"]
    assert started["state"] == "Running"
    routers_match(api, routerid=router["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.startRouter(id=router["id"])
    assert "is in state Running" in api_error(excinfo, 431)

    rebooted = admin.rebootRouter(id=router["id"])["router"]
    assert rebooted["state"] == "Running"
    routers_match(api, routerid=router["id"])
    assert [r["id"] for r in routers(api, state="Running", networkid=network["id"])] \
        == [router["id"]]
    assert [r["id"] for r in routers(api, account=account["name"],
                                     domainid=account["domainid"])] == [router["id"]]


def test_destroyed_vpc_router(server, api, commands, zone):
    require(commands, "createVPC", "destroyRouter")
    _, client = user(server, api)
    [offering] = api.listVPCOfferings(isdefault=True)["vpcoffering"]
    vpc = client.createVPC(name=unique("vpc"), zoneid=zone["id"], vpcofferingid=offering["id"],
                           cidr="172.16.0.0/16")["vpc"]
    [router] = routers(api, vpcid=vpc["id"])
    admin = server.client(fetch_result=True)
    destroyed = admin.destroyRouter(id=router["id"])["router"]
    assert destroyed["id"] == router["id"]
    assert destroyed["state"] == "Destroyed"
    assert routers(api, id=router["id"]) == []
    # Without a router, restart and delete are recorded at once.
    assert_success(client.restartVPC(id=vpc["id"]))
    assert_success(client.deleteVPC(id=vpc["id"]))
    assert client.listVPCs(id=vpc["id"]).get("vpc", []) == []
