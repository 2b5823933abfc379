"""Port forwarding, IP forwarding, ingress and egress firewall rules and load balancers through
the real `cs` client (spec/commands.md "Networks, IPs, NAT, firewall, load balancing"):
createPortForwardingRule, deletePortForwardingRule, listPortForwardingRules,
updatePortForwardingRule, createFirewallRule, deleteFirewallRule, listFirewallRules,
createEgressFirewallRule, deleteEgressFirewallRule, listEgressFirewallRules,
createIpForwardingRule, deleteIpForwardingRule, listIpForwardingRules, createLoadBalancerRule,
deleteLoadBalancerRule, updateLoadBalancerRule, assignToLoadBalancerRule,
removeFromLoadBalancerRule, listLoadBalancerRules, listLoadBalancerRuleInstances.

After every step, the Ledgerstack extension listRouterConfigurations must say that what the
simulated router programmed matches what the log implies, and hold the rules the step made.

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_rules_lb.py
"""

from __future__ import annotations

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

ISOLATED_OFFERING = "DefaultIsolatedNetworkOfferingWithSourceNatService"

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def user(server, api):
    """A new normal user: (account, client that waits for jobs)."""
    account, _, client = new_user(server, api)
    return account, waiting(server, client)


def isolated_network(api, client: cs.CloudStack, zone) -> dict:
    """A new isolated network of `client`'s account (with its source-NAT address and router)."""
    [offering] = [
        o for o in api.listNetworkOfferings().get("networkoffering", [])
        if o["name"] == ISOLATED_OFFERING
    ]
    name = unique("net")
    return client.createNetwork(
        name=name, displaytext=name, networkofferingid=offering["id"], zoneid=zone["id"]
    )["network"]


def deploy(client, zone, template, offering, network) -> dict:
    vm = client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
        networkids=network["id"], name=unique("vm"),
    )["virtualmachine"]
    assert vm["state"] == "Running", vm
    return vm


def address_on(vm: dict, network: dict) -> str:
    [nic] = [n for n in vm["nic"] if n["networkid"] == network["id"]]
    return nic["ipaddress"]


def router_config(api, commands, network: dict) -> dict | None:
    """The router configuration of `network` once the simulator's matches the log's (commands
    for facts finish shortly after the job that caused them: polled); None, with a warning,
    while listRouterConfigurations is not there."""
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


def programmed(api, commands, network, *, port_forwards=(), firewall=(), load_balancers=()):
    """Asserts the router matches and programs exactly these rule ids (each a collection); the
    programmed configuration (None when unchecked)."""
    config = router_config(api, commands, network)
    if config is None:
        return None
    assert set(config["port_forwards"]) == set(port_forwards), config["port_forwards"]
    assert set(config["firewall"]) == set(firewall), config["firewall"]
    assert set(config["load_balancers"]) == set(load_balancers), config["load_balancers"]
    return config


def related_firewall(client, ip: dict, port: int, protocol: str = "tcp") -> dict:
    """The firewall rule `openfirewall` created for a public port."""
    rows = [
        r for r in client.listFirewallRules(ipaddressid=ip["id"]).get("firewallrule", [])
        if r.get("startport") == port and r["protocol"] == protocol
    ]
    assert len(rows) == 1, rows
    assert rows[0]["cidrlist"] == "0.0.0.0/0", rows
    return rows[0]


# --------------------------------------------------------------------------------------------
# The whole story on one network
# --------------------------------------------------------------------------------------------


def test_rules_and_load_balancers_on_one_network(server, api, commands, zone, template, offering):
    require(
        commands,
        "createNetwork", "associateIpAddress", "enableStaticNat", "disableStaticNat",
        "deployVirtualMachine", "createPortForwardingRule", "createLoadBalancerRule",
    )
    account, client = user(server, api)
    network = isolated_network(api, client, zone)
    vm1 = deploy(client, zone, template, offering, network)
    vm2 = deploy(client, zone, template, offering, network)
    ip = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    programmed(api, commands, network)

    # Port forwarding: the rule and, by default, the firewall rule opening its public port.
    pf = client.createPortForwardingRule(
        ipaddressid=ip["id"], protocol="TCP", publicport=2222, privateport=22,
        virtualmachineid=vm1["id"],
    )["portforwardingrule"]
    assert pf["state"] == "Active", pf
    assert pf["ipaddressid"] == ip["id"] and pf["ipaddress"] == ip["ipaddress"]
    assert pf["protocol"] == "tcp"
    assert (pf["publicport"], pf["publicendport"]) == ("2222", "2222")
    assert (pf["privateport"], pf["privateendport"]) == ("22", "22")
    assert pf["virtualmachineid"] == vm1["id"]
    assert pf["virtualmachinename"] == vm1["name"]
    assert pf["vmguestip"] == address_on(vm1, network)
    assert pf["networkid"] == network["id"]
    assert pf["account"] == account["name"] and pf["domainid"] == account["domainid"]
    [listed] = client.listPortForwardingRules(ipaddressid=ip["id"])["portforwardingrule"]
    assert listed["id"] == pf["id"]
    assert client.listPortForwardingRules(networkid=network["id"])["count"] == 1
    pf_firewall = related_firewall(client, ip, 2222)
    config = programmed(
        api, commands, network, port_forwards=[pf["id"]], firewall=[pf_firewall["id"]]
    )
    if config is not None:
        entry = config["port_forwards"][pf["id"]]
        assert entry["public_ip"] == ip["ipaddress"]
        assert entry["private_ip"] == address_on(vm1, network)
        assert (entry["public_start_port"], entry["private_start_port"]) == (2222, 22)

    # Overlapping public ports of the same protocol: 537 with CloudStack's text, nothing kept.
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createPortForwardingRule(
            ipaddressid=ip["id"], protocol="tcp", publicport=2220, publicendport=2230,
            privateport=2220, privateendport=2230, virtualmachineid=vm2["id"],
            openfirewall=False,
        )
    text = api_error(refused, 537)
    assert text.startswith("The range specified, 2220-2230, conflicts with rule FirewallRule"), text
    assert pf["id"] in text and text.endswith("which has 2222-2222"), text
    # With its firewall rule, the firewall rule conflicts first.
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createPortForwardingRule(
            ipaddressid=ip["id"], protocol="tcp", publicport=2220, publicendport=2230,
            privateport=2220, privateendport=2230, virtualmachineid=vm2["id"],
        )
    assert "conflicts with rule" in api_error(refused, 537)
    # Public and private ranges of different lengths: 431.
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createPortForwardingRule(
            ipaddressid=ip["id"], protocol="tcp", publicport=3000, publicendport=3001,
            privateport=3000, virtualmachineid=vm2["id"],
        )
    assert "ranges should be of equal sizes" in api_error(refused, 431)
    assert client.listPortForwardingRules()["count"] == 1
    # The same port for another protocol is fine.
    pf_udp = client.createPortForwardingRule(
        ipaddressid=ip["id"], protocol="udp", publicport=2222, privateport=22,
        virtualmachineid=vm2["id"], openfirewall=False,
    )["portforwardingrule"]
    programmed(
        api, commands, network,
        port_forwards=[pf["id"], pf_udp["id"]], firewall=[pf_firewall["id"]],
    )

    # Moving a port forward to the other VM.
    moved = client.updatePortForwardingRule(
        id=pf_udp["id"], virtualmachineid=vm1["id"], privateport=2022
    )["portforwardingrule"]
    assert moved["virtualmachineid"] == vm1["id"] and moved["privateport"] == "2022", moved
    assert moved["vmguestip"] == address_on(vm1, network)
    config = programmed(
        api, commands, network,
        port_forwards=[pf["id"], pf_udp["id"]], firewall=[pf_firewall["id"]],
    )
    if config is not None:
        assert config["port_forwards"][pf_udp["id"]]["private_start_port"] == 2022

    # Firewall rules: a duplicate (same protocol, overlapping ports, same CIDRs) is 537.
    fw = client.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=80, endport=90, cidrlist="10.0.0.0/8"
    )["firewallrule"]
    assert fw["state"] == "Active" and fw["traffictype"] == "Ingress", fw
    assert (fw["startport"], fw["endport"], fw["cidrlist"]) == (80, 90, "10.0.0.0/8"), fw
    assert fw["ipaddress"] == ip["ipaddress"] and fw["networkid"] == network["id"]
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createFirewallRule(
            ipaddressid=ip["id"], protocol="tcp", startport=85, cidrlist="10.0.0.0/8"
        )
    assert "conflicts with rule" in api_error(refused, 537)
    # Another source range does not conflict.
    fw_other = client.createFirewallRule(
        ipaddressid=ip["id"], protocol="tcp", startport=85, cidrlist="192.168.0.0/16"
    )["firewallrule"]
    ping = client.createFirewallRule(ipaddressid=ip["id"], protocol="icmp")["firewallrule"]
    assert (ping["icmptype"], ping["icmpcode"]) == (-1, -1), ping
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createFirewallRule(ipaddressid=ip["id"], protocol="icmp")
    assert api_error(refused, 431).startswith("New rule conflicts with existing rule")
    firewall = [pf_firewall["id"], fw["id"], fw_other["id"], ping["id"]]
    assert client.listFirewallRules(ipaddressid=ip["id"])["count"] == 4
    programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"]], firewall=firewall
    )

    # Egress: per network, its sources default to the guest CIDR.
    egress = client.createEgressFirewallRule(
        networkid=network["id"], protocol="tcp", startport=443, destcidrlist="8.8.8.8/32"
    )["firewallrule"]
    assert egress["traffictype"] == "Egress" and egress["cidrlist"] == network["cidr"], egress
    assert egress["destcidrlist"] == "8.8.8.8/32" and "ipaddressid" not in egress, egress
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createEgressFirewallRule(
            networkid=network["id"], protocol="tcp", startport=440, endport=450,
            destcidrlist="8.8.8.8/32",
        )
    api_error(refused, 537)
    [listed] = client.listEgressFirewallRules(networkid=network["id"])["firewallrule"]
    assert listed["id"] == egress["id"]
    assert egress["id"] not in {
        r["id"] for r in client.listFirewallRules().get("firewallrule", [])
    }
    firewall.append(egress["id"])
    programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"]], firewall=firewall
    )

    # A load balancer over both VMs.
    lb = client.createLoadBalancerRule(
        publicipid=ip["id"], name="web", algorithm="roundrobin", publicport=8080,
        privateport=80,
    )["loadbalancer"]
    assert lb["state"] == "Active" and lb["name"] == "web", lb
    assert (lb["publicport"], lb["privateport"]) == ("8080", "80"), lb
    assert lb["publicip"] == ip["ipaddress"] and lb["networkid"] == network["id"], lb
    lb_firewall = related_firewall(client, ip, 8080)
    firewall.append(lb_firewall["id"])
    # A load balancer and a port forward never share a public port, whatever the protocol.
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createLoadBalancerRule(
            publicipid=ip["id"], name="clash", algorithm="source", publicport=2222,
            privateport=22, openfirewall=False,
        )
    assert "conflicts with rule" in api_error(refused, 537)
    assert_success(client.assignToLoadBalancerRule(
        id=lb["id"], virtualmachineids=f"{vm1['id']},{vm2['id']}"
    ))
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=vm1["id"])
    assert "is already mapped to load balancer" in api_error(refused, 431)
    instances = client.listLoadBalancerRuleInstances(id=lb["id"])["loadbalancerruleinstance"]
    assert {vm["id"] for vm in instances} == {vm1["id"], vm2["id"]}
    with_ips = client.listLoadBalancerRuleInstances(id=lb["id"], lbvmips=True)["lbrulevmidip"]
    assert {
        (item["loadbalancerruleinstance"]["id"], tuple(item["lbvmipaddresses"]))
        for item in with_ips
    } == {(vm1["id"], (address_on(vm1, network),)), (vm2["id"], (address_on(vm2, network),))}
    [listed] = client.listLoadBalancerRules(publicipid=ip["id"])["loadbalancerrule"]
    assert listed["id"] == lb["id"]
    config = programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"]], firewall=firewall,
        load_balancers=[lb["id"]],
    )
    if config is not None:
        members = set(config["load_balancers"][lb["id"]]["members"])
        assert members == {address_on(vm1, network), address_on(vm2, network)}, config

    assert_success(client.removeFromLoadBalancerRule(id=lb["id"], virtualmachineids=vm2["id"]))
    instances = client.listLoadBalancerRuleInstances(id=lb["id"])["loadbalancerruleinstance"]
    assert [vm["id"] for vm in instances] == [vm1["id"]]
    assignable = client.listLoadBalancerRuleInstances(id=lb["id"], applied=False)
    assert [vm["id"] for vm in assignable["loadbalancerruleinstance"]] == [vm2["id"]]
    updated = client.updateLoadBalancerRule(id=lb["id"], algorithm="leastconn")["loadbalancer"]
    assert updated["algorithm"] == "leastconn", updated
    config = programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"]], firewall=firewall,
        load_balancers=[lb["id"]],
    )
    if config is not None:
        entry = config["load_balancers"][lb["id"]]
        assert entry["members"] == [address_on(vm1, network)], entry
        assert entry["algorithm"] == "leastconn", entry

    assert_success(client.deleteLoadBalancerRule(id=lb["id"]))
    firewall.remove(lb_firewall["id"])
    assert client.listLoadBalancerRules().get("loadbalancerrule", []) == []
    programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"]], firewall=firewall
    )

    # Static NAT: refused on an address with port forwards; IP forwarding on another address.
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.enableStaticNat(ipaddressid=ip["id"], virtualmachineid=vm2["id"])
    assert "already has PortForwarding rules assigned" in api_error(refused, 537)
    nat_ip = client.associateIpAddress(networkid=network["id"])["ipaddress"]
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createIpForwardingRule(ipaddressid=nat_ip["id"], protocol="tcp", startport=22)
    assert "Can't do static nat on ip address" in api_error(refused, 537)
    assert_success(client.enableStaticNat(ipaddressid=nat_ip["id"], virtualmachineid=vm2["id"]))
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createPortForwardingRule(
            ipaddressid=nat_ip["id"], protocol="tcp", publicport=22, privateport=22,
            virtualmachineid=vm2["id"],
        )
    assert "has static nat enabled" in api_error(refused, 431)
    ipf = client.createIpForwardingRule(
        ipaddressid=nat_ip["id"], protocol="tcp", startport=22, endport=25
    )["ipforwardingrule"]
    assert ipf["state"] == "Active" and ipf["ipaddress"] == nat_ip["ipaddress"], ipf
    assert (ipf["startport"], ipf["endport"]) == (22, 25), ipf
    assert ipf["virtualmachineid"] == vm2["id"], ipf
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.createIpForwardingRule(ipaddressid=nat_ip["id"], protocol="tcp", startport=25)
    assert "conflicts with rule" in api_error(refused, 537)
    [listed] = client.listIpForwardingRules(ipaddressid=nat_ip["id"])["ipforwardingrule"]
    assert listed["id"] == ipf["id"]
    assert client.listPortForwardingRules(ipaddressid=nat_ip["id"]).get(
        "portforwardingrule", []
    ) == []
    ipf_firewall = related_firewall(client, nat_ip, 22)
    firewall.append(ipf_firewall["id"])
    config = programmed(
        api, commands, network, port_forwards=[pf["id"], pf_udp["id"], ipf["id"]],
        firewall=firewall,
    )
    if config is not None:
        assert config["public_ips"][nat_ip["ipaddress"]]["static_nat"] == address_on(
            vm2, network
        )

    # Another account may neither see nor touch any of it.
    _, other = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as refused:
        other.createPortForwardingRule(
            ipaddressid=ip["id"], protocol="tcp", publicport=9000, privateport=9000,
            virtualmachineid=vm1["id"],
        )
    api_error(refused, 531)
    with pytest.raises(cs.CloudStackApiException) as refused:
        other.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=9000)
    api_error(refused, 531)
    with pytest.raises(cs.CloudStackApiException) as refused:
        other.createLoadBalancerRule(
            publicipid=ip["id"], name="x", algorithm="source", publicport=9000, privateport=80
        )
    api_error(refused, 531)
    with pytest.raises(cs.CloudStackApiException) as refused:
        other.deletePortForwardingRule(id=pf["id"])
    api_error(refused, 531)
    with pytest.raises(cs.CloudStackApiException) as refused:
        other.listPortForwardingRules(ipaddressid=ip["id"])
    api_error(refused, 531)
    assert other.listPortForwardingRules().get("portforwardingrule", []) == []
    assert other.listFirewallRules().get("firewallrule", []) == []

    # Deleting everything; the rules a rule opened go with it.
    assert_success(client.deleteIpForwardingRule(id=ipf["id"]))
    firewall.remove(ipf_firewall["id"])
    assert_success(client.disableStaticNat(ipaddressid=nat_ip["id"]))
    assert_success(client.deletePortForwardingRule(id=pf["id"]))
    firewall.remove(pf_firewall["id"])
    assert_success(client.deletePortForwardingRule(id=pf_udp["id"]))
    programmed(api, commands, network, firewall=firewall)
    for rule in (fw, fw_other, ping):
        assert_success(client.deleteFirewallRule(id=rule["id"]))
    with pytest.raises(cs.CloudStackApiException) as refused:
        client.deleteFirewallRule(id=egress["id"])
    api_error(refused, 431)
    assert_success(client.deleteEgressFirewallRule(id=egress["id"]))
    assert client.listPortForwardingRules().get("portforwardingrule", []) == []
    assert client.listIpForwardingRules().get("ipforwardingrule", []) == []
    assert client.listFirewallRules().get("firewallrule", []) == []
    assert client.listEgressFirewallRules().get("firewallrule", []) == []
    config = programmed(api, commands, network)
    if config is not None:
        assert config["public_ips"][nat_ip["ipaddress"]].get("static_nat") is None
