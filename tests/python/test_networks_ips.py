"""Guest networks, network offerings, public IP ranges, NICs, public IPs and static NAT through
the real `cs` client (spec/commands.md "Networks, IPs, NAT, firewall, load balancing"):
listNetworkOfferings, createNetworkOffering, updateNetworkOffering, createNetwork,
listNetworks, updateNetwork, restartNetwork, deleteNetwork, createVlanIpRange,
listVlanIpRanges, deleteVlanIpRange, addNicToVirtualMachine, removeNicFromVirtualMachine,
updateDefaultNicForVirtualMachine, associateIpAddress, disassociateIpAddress,
listPublicIpAddresses, enableStaticNat, disableStaticNat; and the network side of
deployVirtualMachine.

After the steps that change a router, the Ledgerstack extension listRouterConfigurations must
say that what the simulated router programmed matches what the log implies.

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_networks_ips.py
"""

from __future__ import annotations

import ipaddress
import warnings

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

ISOLATED = "DefaultIsolatedNetworkOfferingWithSourceNatService"
SHARED = "DefaultSharedNetworkOffering"
L2 = "DefaultL2NetworkOffering"
VPC_TIER = "DefaultIsolatedNetworkOfferingForVpcNetworks"

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network_offerings(api) -> dict[str, dict]:
    return {o["name"]: o for o in api.listNetworkOfferings()["networkoffering"]}


def user(server, api):
    """A new normal user: (account, client that waits for jobs)."""
    account, _, client = new_user(server, api)
    return account, waiting(server, client)


def failed_job(excinfo, status: int) -> str:
    """A job that failed: cs raises with the job's result as `error`."""
    error = excinfo.value.error
    assert error["errorcode"] == status, error
    return error["errortext"]


def isolated_network(client, zone, network_offerings, **params) -> dict:
    name = unique("net")
    return client.createNetwork(
        name=name, displaytext=f"{name} text", networkofferingid=network_offerings[ISOLATED]["id"],
        zoneid=zone["id"], **params,
    )["network"]


def deploy(client, zone, template, offering, network=None, **params) -> dict:
    if network is not None:
        params["networkids"] = network["id"]
    vm = client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
        name=unique("vm"), **params,
    )["virtualmachine"]
    assert vm["state"] == "Running", vm
    return vm


def nic_on(vm: dict, network: dict) -> dict:
    [nic] = [n for n in vm["nic"] if n["networkid"] == network["id"]]
    return nic


def public_ips(client, **filters) -> list[dict]:
    return client.listPublicIpAddresses(**filters).get("publicipaddress", [])


def networks(client, **filters) -> list[dict]:
    return client.listNetworks(**filters).get("network", [])


def router_config(api, commands, network: dict) -> dict | None:
    """The programmed configuration of `network`'s router once the simulator's matches the
    log's (commands for facts finish shortly after the job that caused them: polled); None,
    with a warning, while listRouterConfigurations is not registered."""
    if "listRouterConfigurations" not in commands:
        warnings.warn("listRouterConfigurations is not registered: router configurations unchecked")
        return None

    def probe():
        rows = api.listRouterConfigurations(networkid=network["id"]).get(
            "routerconfiguration", []
        )
        return rows[0] if len(rows) == 1 and rows[0]["matches"] else None

    config = eventually(probe, f"the router of {network['id']} to match the log", timeout=30)
    assert config["programmed"] == config["expected"], config
    return config["programmed"]


def all_routers_match(api, commands):
    """Every router's programmed configuration equals the log's (polled)."""
    if "listRouterConfigurations" not in commands:
        warnings.warn("listRouterConfigurations is not registered: router configurations unchecked")
        return

    def probe():
        rows = api.listRouterConfigurations(pagesize=-1).get("routerconfiguration", [])
        return all(r["matches"] for r in rows) or None

    eventually(probe, "every router to match the log", timeout=30)


@pytest.fixture(scope="module")
def admin(server) -> cs.CloudStack:
    """The root admin, waiting for async jobs (users may not expunge by default)."""
    return server.client(fetch_result=True)


def destroy(admin, vm):
    """Destroys and expunges a VM (its NICs, rules and memberships go)."""
    admin.destroyVirtualMachine(id=vm["id"], expunge=True)


# --------------------------------------------------------------------------------------------
# Offerings
# --------------------------------------------------------------------------------------------


def test_default_network_offerings_are_listed(server, api, commands, network_offerings):
    assert {ISOLATED, SHARED, L2, VPC_TIER} <= set(network_offerings)
    isolated = network_offerings[ISOLATED]
    assert isolated["guestiptype"] == "Isolated" and isolated["state"] == "Enabled"
    assert isolated["isdefault"] is True and isolated["forvpc"] is False
    assert isolated["traffictype"] == "Guest" and isolated["availability"] == "Required"
    services = {s["name"] for s in isolated["service"]}
    assert {"SourceNat", "StaticNat", "PortForwarding", "Firewall", "Lb", "Dhcp", "Dns"} <= services
    assert all(s["provider"][0]["name"] == "VirtualRouter" for s in isolated["service"])
    assert network_offerings[SHARED]["guestiptype"] == "Shared"
    assert network_offerings[SHARED]["specifyvlan"] is True
    assert network_offerings[L2]["service"] == []
    assert network_offerings[VPC_TIER]["forvpc"] is True
    assert "NetworkACL" in {s["name"] for s in network_offerings[VPC_TIER]["service"]}

    # Filters, as a user sees them.
    _, client = user(server, api)
    shared = client.listNetworkOfferings(guestiptype="Shared")["networkoffering"]
    assert SHARED in {o["name"] for o in shared}
    assert all(o["guestiptype"] == "Shared" for o in shared)
    vpc = client.listNetworkOfferings(forvpc=True)["networkoffering"]
    assert {o["name"] for o in vpc} >= {VPC_TIER} and all(o["forvpc"] for o in vpc)
    nat = client.listNetworkOfferings(supportedservices="SourceNat,StaticNat")["networkoffering"]
    assert ISOLATED in {o["name"] for o in nat} and L2 not in {o["name"] for o in nat}

    # The default VPC offering is there too, when VPC offerings are listed.
    if "listVPCOfferings" in commands:
        names = {o["name"] for o in api.listVPCOfferings().get("vpcoffering", [])}
        assert "Default VPC offering" in names


def test_create_and_enable_a_network_offering(server, api, zone):
    name = unique("offering")
    created = api.createNetworkOffering(
        name=name, displaytext="mine", traffictype="GUEST", guestiptype="Isolated",
        supportedservices="Dhcp,Dns,SourceNat,StaticNat",
    )["networkoffering"]
    assert created["name"] == name and created["state"] == "Disabled"
    assert {s["name"] for s in created["service"]} == {"Dhcp", "Dns", "SourceNat", "StaticNat"}
    assert created["isdefault"] is False

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createNetworkOffering(name=name, traffictype="GUEST", guestiptype="Isolated")
    api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createNetworkOffering(name=unique("o"), traffictype="GUEST", guestiptype="Nope")
    api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createNetworkOffering(
            name=unique("o"), traffictype="GUEST", guestiptype="Isolated",
            supportedservices="Teleport",
        )
    api_error(excinfo, 431)

    _, client = user(server, api)
    # A user neither creates offerings nor sees disabled ones...
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createNetworkOffering(name=unique("o"), traffictype="GUEST", guestiptype="L2")
    api_error(excinfo, 432)
    assert name not in {o["name"] for o in client.listNetworkOfferings()["networkoffering"]}
    # ... nor creates networks from them.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createNetwork(name=unique("n"), networkofferingid=created["id"], zoneid=zone["id"])
    assert "not Enabled" in api_error(excinfo, 431)

    enabled = api.updateNetworkOffering(
        id=created["id"], state="Enabled", displaytext="mine, enabled"
    )["networkoffering"]
    assert enabled["state"] == "Enabled" and enabled["displaytext"] == "mine, enabled"
    network = client.createNetwork(
        name=unique("n"), networkofferingid=created["id"], zoneid=zone["id"]
    )["network"]
    assert network["networkofferingid"] == created["id"]
    assert network["networkofferingname"] == name
    assert_success(client.deleteNetwork(id=network["id"]))


# --------------------------------------------------------------------------------------------
# Isolated networks, VMs on them, public IPs and static NAT
# --------------------------------------------------------------------------------------------


def test_isolated_network_with_two_vms(
    server, api, admin, commands, zone, template, offering, network_offerings
):
    account, client = user(server, api)
    network = isolated_network(client, zone, network_offerings)
    assert network["type"] == "Isolated" and network["zoneid"] == zone["id"]
    assert network["account"] == account["name"] and network["domainid"] == account["domainid"]
    assert network["networkofferingname"] == ISOLATED
    assert network["traffictype"] == "Guest" and network["issystem"] is False
    cidr = ipaddress.ip_network(network["cidr"])
    assert ipaddress.ip_address(network["gateway"]) in cidr
    assert network["netmask"] == str(cidr.netmask)
    assert "SourceNat" in {s["name"] for s in network["service"]}

    # Implemented: its router runs, with the source-NAT address.
    def implemented():
        [n] = networks(client, id=network["id"])
        return n if n["state"] == "Implemented" else None

    eventually(implemented, "the network to be implemented", timeout=30)
    [source_nat] = public_ips(client, associatednetworkid=network["id"])
    assert source_nat["issourcenat"] is True and source_nat["isstaticnat"] is False
    assert source_nat["state"] == "Allocated" and source_nat["zoneid"] == zone["id"]
    assert source_nat["associatednetworkid"] == network["id"]
    assert source_nat["associatednetworkname"] == network["name"]
    assert source_nat["forvirtualnetwork"] is True
    assert source_nat["account"] == account["name"]
    config = router_config(api, commands, network)
    if config is not None:
        assert config["public_ips"][source_nat["ipaddress"]]["source_nat"] is True

    first = deploy(client, zone, template, offering, network)
    second = deploy(client, zone, template, offering, network)
    a, b = nic_on(first, network), nic_on(second, network)
    assert a["ipaddress"] != b["ipaddress"]
    for nic in (a, b):
        assert ipaddress.ip_address(nic["ipaddress"]) in cidr
        assert nic["ipaddress"] != network["gateway"]
        assert nic["isdefault"] is True and nic["type"] == "Isolated"
        assert nic["traffictype"] == "Guest" and nic["gateway"] == network["gateway"]
        assert nic["netmask"] == network["netmask"] and nic["networkname"] == network["name"]
        assert nic["macaddress"] and nic["deviceid"] == "0"
    config = router_config(api, commands, network)
    if config is not None:
        assert {e["ip"] for e in config["dhcp"].values()} == {a["ipaddress"], b["ipaddress"]}

    # Filters.
    assert [n["id"] for n in networks(client, type="Isolated")] == [network["id"]]
    assert networks(client, type="Shared", id=network["id"]) == []
    assert [n["id"] for n in networks(client, keyword=network["name"])] == [network["id"]]
    assert [n["id"] for n in networks(client, zoneid=zone["id"], isdefault=True)] == [network["id"]]
    assert [
        v["id"] for v in client.listVirtualMachines(networkid=network["id"])["virtualmachine"]
    ] == [first["id"], second["id"]]

    # updateNetwork and restartNetwork.
    renamed = client.updateNetwork(id=network["id"], name="renamed", displaytext="new text")
    assert renamed["network"]["name"] == "renamed"
    assert renamed["network"]["displaytext"] == "new text"
    assert_success(client.restartNetwork(id=network["id"], cleanup=True))
    router_config(api, commands, network)

    for vm in (first, second):
        destroy(admin, vm)
    assert_success(client.deleteNetwork(id=network["id"]))
    assert networks(client, id=network["id"]) == []
    assert public_ips(client, associatednetworkid=network["id"]) == []
    all_routers_match(api, commands)


def test_acquire_release_and_static_nat(
    server, api, admin, commands, zone, template, offering, network_offerings
):
    _, client = user(server, api)
    network = isolated_network(client, zone, network_offerings)
    vm = deploy(client, zone, template, offering, network)
    other_vm = deploy(client, zone, template, offering, network)
    [source_nat] = public_ips(client, issourcenat=True)

    plain = server.client(key=client.key, secret=client.secret)
    reply = plain.associateIpAddress(networkid=network["id"])
    assert set(reply) == {"id", "jobid"}, reply  # async-create
    ip = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    assert ip["state"] == "Allocated" and ip["issourcenat"] is False
    assert ip["associatednetworkid"] == network["id"] and ip["isstaticnat"] is False
    eventually(
        lambda: [p for p in public_ips(client, id=reply["id"]) if p["state"] == "Allocated"],
        "the first acquired address",
    )
    assert {p["id"] for p in public_ips(client)} == {source_nat["id"], ip["id"], reply["id"]}
    assert [p["id"] for p in public_ips(client, ipaddress=ip["ipaddress"])] == [ip["id"]]
    assert [p["id"] for p in public_ips(client, issourcenat=True)] == [source_nat["id"]]
    config = router_config(api, commands, network)
    if config is not None:
        assert ip["ipaddress"] in config["public_ips"]

    # By zone: the account's default network gets it.
    by_zone = client.associateIpAddress(zoneid=zone["id"])["ipaddress"]
    assert by_zone["associatednetworkid"] == network["id"]

    # Static NAT.
    assert_success(client.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=vm["id"]))
    [nat] = public_ips(client, id=ip["id"])
    assert nat["isstaticnat"] is True and nat["virtualmachineid"] == vm["id"]
    assert nat["virtualmachinename"] == vm["name"]
    assert nat["vmipaddress"] == nic_on(vm, network)["ipaddress"]
    assert [p["id"] for p in public_ips(client, isstaticnat=True)] == [ip["id"]]
    [listed_vm] = client.listVirtualMachines(id=vm["id"])["virtualmachine"]
    assert nic_on(listed_vm, network)["publicip"] == ip["ipaddress"]
    config = router_config(api, commands, network)
    if config is not None:
        assert config["public_ips"][ip["ipaddress"]]["static_nat"] == nat["vmipaddress"]

    # Enabling it again for the same VM changes nothing; for another VM it conflicts.
    assert_success(client.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=vm["id"]))
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=other_vm["id"])
    assert "already assigned" in api_error(excinfo, 537)
    # The VM has its static NAT address already.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.enableStaticNat(ipaddressid=by_zone["id"], virtualmachineid=vm["id"])
    assert "already associated with another public ip" in api_error(excinfo, 431)
    # Not on the source NAT address.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.enableStaticNat(ipaddressid=source_nat["id"], virtualmachineid=other_vm["id"])
    assert "sourceNat" in api_error(excinfo, 431)

    assert_success(client.disableStaticNat(ipaddressid=ip["id"]))
    [plain_ip] = public_ips(client, id=ip["id"])
    assert plain_ip["isstaticnat"] is False and "virtualmachineid" not in plain_ip
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        plain.disableStaticNat(ipaddressid=ip["id"])
    api_error(excinfo, 431)
    router_config(api, commands, network)

    # Released with its static NAT: the cleanup comes first.
    assert_success(
        client.enableStaticNat(ipaddressid=by_zone["id"], virtualmachineid=other_vm["id"])
    )
    assert_success(client.disassociateIpAddress(id=by_zone["id"]))
    assert_success(client.disassociateIpAddress(id=ip["id"]))
    assert_success(client.disassociateIpAddress(id=reply["id"]))
    assert [p["id"] for p in public_ips(client)] == [source_nat["id"]]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.disassociateIpAddress(id=source_nat["id"])
    assert "source nat" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.disassociateIpAddress(id=ip["id"])
    api_error(excinfo, 431)
    config = router_config(api, commands, network)
    if config is not None:
        assert list(config["public_ips"]) == [source_nat["ipaddress"]]

    # A network with VMs is in use; once they are expunged it goes, with its addresses.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        plain.deleteNetwork(id=network["id"])
    assert "not all user vms are expunged" in api_error(excinfo, 536)
    acquired = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    assert_success(client.enableStaticNat(ipaddressid=acquired["id"], virtualmachineid=vm["id"]))
    for v in (vm, other_vm):
        destroy(admin, v)
    # Expunging the VM took its static NAT away.
    [kept] = public_ips(client, id=acquired["id"])
    assert kept["isstaticnat"] is False
    assert_success(client.deleteNetwork(id=network["id"]))
    assert public_ips(client) == []
    all_routers_match(api, commands)


def test_public_ip_limit(server, api, admin, zone, template, offering):
    account, client = user(server, api)
    # The default network, made by the first deploy, holds the source-NAT address.
    vm = deploy(client, zone, template, offering)
    assert len(public_ips(client)) == 1
    api.updateResourceLimit(
        resourcetype=1, max=1, account=account["name"], domainid=account["domainid"]
    )
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.associateIpAddress(zoneid=zone["id"])
    assert "public_ip" in api_error(excinfo, 532)
    api.updateResourceLimit(
        resourcetype=1, max=2, account=account["name"], domainid=account["domainid"]
    )
    ip = client.associateIpAddress(zoneid=zone["id"])["ipaddress"]
    assert ip["associatednetworkid"] == vm["nic"][0]["networkid"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.associateIpAddress(zoneid=zone["id"])
    api_error(excinfo, 532)
    destroy(admin, vm)


def test_permissions(server, api, admin, zone, template, offering, network_offerings):
    _, owner = user(server, api)
    _, stranger = user(server, api)
    network = isolated_network(owner, zone, network_offerings)
    ip = owner.associateIpAddress(networkid=network["id"])["ipaddress"]
    vm = deploy(owner, zone, template, offering, network)

    assert networks(stranger, id=network["id"]) == []
    assert public_ips(stranger, id=ip["id"]) == []
    for call in (
        lambda: stranger.deployVirtualMachine(
            zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
            networkids=network["id"],
        ),
        lambda: stranger.associateIpAddress(networkid=network["id"]),
        lambda: stranger.disassociateIpAddress(id=ip["id"]),
        lambda: stranger.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=vm["id"]),
        lambda: stranger.disableStaticNat(ipaddressid=ip["id"]),
        lambda: stranger.deleteNetwork(id=network["id"]),
        lambda: stranger.restartNetwork(id=network["id"]),
        lambda: stranger.updateNetwork(id=network["id"], name="mine"),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        api_error(excinfo, 531)
    # Admin-only commands are not offered to users at all.
    for call in (
        lambda: stranger.listVlanIpRanges(),
        lambda: stranger.createVlanIpRange(
            zoneid=zone["id"], startip="10.9.9.10", endip="10.9.9.20", gateway="10.9.9.1",
            netmask="255.255.255.0",
        ),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        api_error(excinfo, 432)
    # Unknown ids are 431.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        owner.disassociateIpAddress(id="6c656467-6572-0000-0000-000000000000")
    api_error(excinfo, 431)
    destroy(admin, vm)
    assert_success(owner.deleteNetwork(id=network["id"]))


# --------------------------------------------------------------------------------------------
# NICs
# --------------------------------------------------------------------------------------------


def test_add_remove_and_switch_nics(
    server, api, admin, commands, zone, template, offering, network_offerings
):
    _, client = user(server, api)
    first = isolated_network(client, zone, network_offerings)
    second = isolated_network(
        client, zone, network_offerings, gateway="10.30.0.1", netmask="255.255.255.0"
    )
    assert second["cidr"] == "10.30.0.0/24" and second["gateway"] == "10.30.0.1"
    vm = deploy(client, zone, template, offering, first)

    vm = client.addNicToVirtualMachine(
        virtualmachineid=vm["id"], networkid=second["id"], ipaddress="10.30.0.42"
    )["virtualmachine"]
    assert len(vm["nic"]) == 2
    added = nic_on(vm, second)
    assert added["ipaddress"] == "10.30.0.42" and added["isdefault"] is False
    assert added["deviceid"] == "1"
    assert nic_on(vm, first)["isdefault"] is True
    router_config(api, commands, second)
    # One NIC per network, and addresses are checked.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addNicToVirtualMachine(virtualmachineid=vm["id"], networkid=second["id"])
    api_error(excinfo, 431)
    other = deploy(client, zone, template, offering, first)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addNicToVirtualMachine(
            virtualmachineid=other["id"], networkid=second["id"], ipaddress="10.30.0.42"
        )
    assert "already in use" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.addNicToVirtualMachine(
            virtualmachineid=other["id"], networkid=second["id"], ipaddress="10.31.0.5"
        )
    api_error(excinfo, 431)

    # The default NIC cannot be removed; the default can move.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.removeNicFromVirtualMachine(virtualmachineid=vm["id"], nicid=nic_on(vm, first)["id"])
    assert "default" in api_error(excinfo, 431)
    vm = client.updateDefaultNicForVirtualMachine(
        virtualmachineid=vm["id"], nicid=added["id"]
    )["virtualmachine"]
    assert nic_on(vm, second)["isdefault"] is True and nic_on(vm, first)["isdefault"] is False
    assert vm["nic"][0]["networkid"] == second["id"]  # the default comes first
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.updateDefaultNicForVirtualMachine(virtualmachineid=vm["id"], nicid=added["id"])
    api_error(excinfo, 431)
    router_config(api, commands, first)
    router_config(api, commands, second)

    vm = client.removeNicFromVirtualMachine(
        virtualmachineid=vm["id"], nicid=nic_on(vm, first)["id"]
    )["virtualmachine"]
    assert [n["networkid"] for n in vm["nic"]] == [second["id"]]
    config = router_config(api, commands, first)
    if config is not None:
        assert {e["ip"] for e in config["dhcp"].values()} == {nic_on(other, first)["ipaddress"]}

    for v in (vm, other):
        destroy(admin, v)
    for n in (first, second):
        assert_success(client.deleteNetwork(id=n["id"]))
    all_routers_match(api, commands)


def test_deploy_with_security_groups(server, api, admin, commands, zone, template, offering):
    account, client = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(
            zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
            securitygroupnames="no-such-group",
        )
    api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(
            zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
            securitygroupnames="a", securitygroupids="6c656467-6572-0000-0000-000000000000",
        )
    api_error(excinfo, 431)
    require(commands, "createSecurityGroup")
    group = client.createSecurityGroup(name=unique("sg"), description="web")["securitygroup"]
    _, stranger = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        stranger.deployVirtualMachine(
            zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
            securitygroupids=group["id"],
        )
    api_error(excinfo, 431)
    vm = deploy(client, zone, template, offering, securitygroupnames=group["name"])
    [member] = vm["securitygroup"]
    assert member["id"] == group["id"] and member["name"] == group["name"]
    assert member["description"] == "web" and member["account"] == account["name"]
    destroy(admin, vm)


# --------------------------------------------------------------------------------------------
# Public IP ranges and shared networks
# --------------------------------------------------------------------------------------------


def test_demo_zone_has_a_public_range(api, zone):
    ranges = api.listVlanIpRanges(zoneid=zone["id"])["vlaniprange"]
    public = [r for r in ranges if r["forvirtualnetwork"]]
    assert public, ranges
    assert any(r["vlan"] == "untagged" and r["gateway"] == "172.16.0.1" for r in public)


def test_vlan_ranges_overlap_and_exhaustion(server, api, network_offerings):
    zone = api.createZone(
        name=unique("zone"), networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.1",
    )["zone"]
    created = api.createVlanIpRange(
        zoneid=zone["id"], vlan="untagged", gateway="198.51.100.1", netmask="255.255.255.0",
        startip="198.51.100.10", endip="198.51.100.11", forvirtualnetwork=True,
    )["vlan"]
    assert created["startip"] == "198.51.100.10" and created["endip"] == "198.51.100.11"
    assert created["forvirtualnetwork"] is True and created["zoneid"] == zone["id"]
    assert created["cidr"] == "198.51.100.0/24" and created["vlan"] == "untagged"
    [listed] = api.listVlanIpRanges(id=created["id"])["vlaniprange"]
    assert listed["description"] == "198.51.100.10-198.51.100.11"

    for start, end in (("198.51.100.10", "198.51.100.11"), ("198.51.100.5", "198.51.100.10")):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            api.createVlanIpRange(
                zoneid=zone["id"], vlan="untagged", gateway="198.51.100.1",
                netmask="255.255.255.0", startip=start, endip=end,
            )
        assert "overlap" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createVlanIpRange(
            zoneid=zone["id"], gateway="198.51.100.1", netmask="255.255.255.0",
            startip="198.51.100.1", endip="198.51.100.3",
        )
    assert "gateway" in api_error(excinfo, 431)

    # Two addresses: the network's source NAT takes one, an acquisition the other, then 533.
    _, client = user(server, api)
    network = isolated_network(client, zone, network_offerings)
    ip = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    assert ip["ipaddress"] in {"198.51.100.10", "198.51.100.11"}
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.associateIpAddress(networkid=network["id"])
    api_error(excinfo, 533)

    # A range with addresses in use stays.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.deleteVlanIpRange(id=created["id"])
    assert "in use" in api_error(excinfo, 536)
    assert_success(client.disassociateIpAddress(id=ip["id"]))
    assert_success(client.deleteNetwork(id=network["id"]))
    assert_success(api.deleteVlanIpRange(id=created["id"]))
    assert api.listVlanIpRanges(zoneid=zone["id"]).get("vlaniprange", []) == []


def test_shared_network(
    server, api, admin, commands, zone, template, offering, network_offerings
):
    shared = network_offerings[SHARED]
    params = dict(
        networkofferingid=shared["id"], zoneid=zone["id"], gateway="192.0.2.1",
        netmask="255.255.255.0", startip="192.0.2.100", endip="192.0.2.101",
    )
    _, client = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createNetwork(name=unique("shared"), vlan="300", **params)
    api_error(excinfo, 531)
    # The offering wants a VLAN.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createNetwork(name=unique("shared"), **params)
    api_error(excinfo, 431)
    network = api.createNetwork(name=unique("shared"), vlan="300", **params)["network"]
    assert network["type"] == "Shared" and network["state"] == "Setup"
    assert network["cidr"] == "192.0.2.0/24" and network["vlan"] == "300"
    assert network["broadcasturi"] == "vlan://300" and network["acltype"] == "Domain"
    [network_range] = api.listVlanIpRanges(networkid=network["id"])["vlaniprange"]
    assert network_range["forvirtualnetwork"] is False
    assert (network_range["startip"], network_range["endip"]) == ("192.0.2.100", "192.0.2.101")

    # Users below its domain see it and deploy on it, from its range.
    assert network["id"] in {n["id"] for n in networks(client, type="Shared")}
    first = deploy(client, zone, template, offering, network)
    second = deploy(client, zone, template, offering, network)
    assert {nic_on(first, network)["ipaddress"], nic_on(second, network)["ipaddress"]} == {
        "192.0.2.100", "192.0.2.101",
    }
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, offering, network)
    api_error(excinfo, 533)
    # No public addresses on a shared network.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.associateIpAddress(networkid=network["id"])
    api_error(excinfo, 431)
    for vm in (first, second):
        destroy(admin, vm)
    assert_success(admin.deleteNetwork(id=network["id"]))
    assert api.listVlanIpRanges(networkid=network["id"]).get("vlaniprange", []) == []
    all_routers_match(api, commands)
