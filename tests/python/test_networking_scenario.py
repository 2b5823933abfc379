"""The networking story of one account through `cs`: a network, two VMs on it, a public IP,
port forwarding and firewall rules, a load balancer over both VMs, VPN users, then everything
torn down. After every step the virtual router's configuration, as the network simulator has
programmed it, is exactly what the list commands say (and what the read models expect)."""
from __future__ import annotations

import pytest

from conftest import eventually, new_user, require, unique


def _items(answer: dict, key: str) -> list:
    return answer.get(key, [])


def _demo(api):
    zone = api.listZones()["zone"][0]
    template = api.listTemplates(templatefilter="featured")["template"][0]
    small = [o for o in api.listServiceOfferings()["serviceoffering"]
             if o["name"] == "Small Instance"][0]
    offering = [o for o in api.listNetworkOfferings()["networkoffering"]
                if o["name"] == "DefaultIsolatedNetworkOfferingWithSourceNatService"][0]
    return zone, template, small, offering


def _seen_through_the_api(client, network_id: str) -> dict:
    """The router configuration a user can infer from the list commands alone."""
    vms = _items(client.listVirtualMachines(networkid=network_id), "virtualmachine")
    nic_ip = {}
    dhcp = {}
    for vm in vms:
        for nic in vm.get("nic", []):
            if nic["networkid"] == network_id:
                nic_ip[vm["id"]] = nic["ipaddress"]
                dhcp[nic["macaddress"]] = {"ip": nic["ipaddress"], "hostname": vm["name"],
                                           "default": nic["isdefault"]}
    ips = _items(client.listPublicIpAddresses(associatednetworkid=network_id),
                 "publicipaddress")
    public_ips = {ip["ipaddress"]: ip for ip in ips}
    forwards = {}
    firewall = set()
    balancers = {}
    for ip in ips:
        for rule in _items(client.listPortForwardingRules(ipaddressid=ip["id"]),
                           "portforwardingrule"):
            forwards[rule["id"]] = (rule["ipaddress"], int(rule["publicport"]),
                                    rule["vmguestip"], int(rule["privateport"]))
        for rule in _items(client.listFirewallRules(ipaddressid=ip["id"]), "firewallrule"):
            firewall.add(rule["id"])
        for lb in _items(client.listLoadBalancerRules(publicipid=ip["id"]), "loadbalancerrule"):
            members = _items(client.listLoadBalancerRuleInstances(id=lb["id"]),
                             "loadbalancerruleinstance")
            balancers[lb["id"]] = (lb["publicip"], int(lb["publicport"]), int(lb["privateport"]),
                                   sorted(nic_ip[m["id"]] for m in members))
    vpns = [v for v in _items(client.listRemoteAccessVpns(), "remoteaccessvpn")
            if v["publicip"] in public_ips]
    users = sorted(u["username"] for u in _items(client.listVpnUsers(), "vpnuser"))
    return {
        "public_ips": {a: ip["issourcenat"] for a, ip in public_ips.items()},
        "port_forwards": forwards,
        "firewall": firewall,
        "load_balancers": balancers,
        "dhcp": dhcp,
        "vpn": vpns[0]["publicip"] if vpns else None,
        "vpn_users": users if vpns else [],
    }


def _programmed_view(config: dict) -> dict:
    """The same view of what the simulator programmed."""
    return {
        "public_ips": {a: e["source_nat"] for a, e in config.get("public_ips", {}).items()},
        "port_forwards": {rid: (e["public_ip"], e["public_start_port"], e["private_ip"],
                                e["private_start_port"])
                          for rid, e in config.get("port_forwards", {}).items()},
        "firewall": set(config.get("firewall", {})),
        "load_balancers": {rid: (e["public_ip"], e["public_port"], e["private_port"],
                                 sorted(e.get("members", [])))
                           for rid, e in config.get("load_balancers", {}).items()},
        "dhcp": config.get("dhcp", {}),
        # The response layer leaves out null members and empty collections.
        "vpn": config["vpn"]["public_ip"] if config.get("vpn") else None,
        "vpn_users": sorted(config.get("vpn_users", [])),
    }


def _router_of(api, network_id: str) -> dict:
    [router] = api.listRouters(networkid=network_id, listall=True)["router"]
    return router


def _assert_router_matches(api, client, network_id: str, step: str):
    router = _router_of(api, network_id)

    def agrees():
        [config] = api.listRouterConfigurations(routerid=router["id"])["routerconfiguration"]
        if not config["matches"] or not config["running"]:
            return None
        if _programmed_view(config["programmed"]) != _seen_through_the_api(client, network_id):
            return None
        return config

    eventually(agrees, f"the router to be programmed as the API shows after {step}")


def test_network_lifecycle_keeps_the_router_programmed_as_the_api_shows(server, api, commands):
    require(commands, "createNetwork", "associateIpAddress", "createPortForwardingRule",
            "createFirewallRule", "createLoadBalancerRule", "createRemoteAccessVpn",
            "addVpnUser", "listRouterConfigurations")
    zone, template, small, offering = _demo(api)
    _account, _user, plain = new_user(server, api)
    # The user's client, waiting for async jobs; and the admin's.
    client = server.client(key=plain.key, secret=plain.secret, fetch_result=True)
    api = server.client(fetch_result=True)

    network = client.createNetwork(name=unique("net"), displaytext="web tier",
                                   zoneid=zone["id"], networkofferingid=offering["id"])["network"]
    net = network["id"]
    _assert_router_matches(api, client, net, "createNetwork")

    vms = []
    for n in range(2):
        vm = client.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                         serviceofferingid=small["id"], networkids=net,
                                         name=unique("web"))["virtualmachine"]
        assert vm["state"] == "Running", vm
        vms.append(vm)
        _assert_router_matches(api, client, net, f"deploying VM {n + 1}")
    addresses = {vm["nic"][0]["ipaddress"] for vm in vms}
    assert len(addresses) == 2, "each VM has its own address"

    ip = client.associateIpAddress(networkid=net)["ipaddress"]
    assert ip["state"] == "Allocated" and ip["issourcenat"] is False, ip
    _assert_router_matches(api, client, net, "associateIpAddress")

    forward = client.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp",
                                              publicport=2222, privateport=22,
                                              virtualmachineid=vms[0]["id"])["portforwardingrule"]
    assert forward["state"] == "Active", forward
    _assert_router_matches(api, client, net, "createPortForwardingRule")

    web = client.createFirewallRule(ipaddressid=ip["id"], protocol="tcp", startport=80,
                                    endport=80, cidrlist="0.0.0.0/0")["firewallrule"]
    assert web["state"] == "Active", web
    _assert_router_matches(api, client, net, "createFirewallRule")

    lb = client.createLoadBalancerRule(name=unique("lb"), publicipid=ip["id"], publicport=8080,
                                       privateport=80, algorithm="roundrobin")["loadbalancer"]
    _assert_router_matches(api, client, net, "createLoadBalancerRule")
    client.assignToLoadBalancerRule(id=lb["id"],
                                    virtualmachineids=",".join(vm["id"] for vm in vms))
    _assert_router_matches(api, client, net, "assignToLoadBalancerRule")
    members = client.listLoadBalancerRuleInstances(id=lb["id"])["loadbalancerruleinstance"]
    assert {m["id"] for m in members} == {vm["id"] for vm in vms}

    [source_nat] = client.listPublicIpAddresses(associatednetworkid=net,
                                                issourcenat=True)["publicipaddress"]
    vpn = client.createRemoteAccessVpn(publicipid=source_nat["id"])["remoteaccessvpn"]
    assert vpn["publicip"] == source_nat["ipaddress"], vpn
    _assert_router_matches(api, client, net, "createRemoteAccessVpn")
    for name in ("alice", "bob"):
        client.addVpnUser(username=name, password="Secret-pw-1")
        _assert_router_matches(api, client, net, f"addVpnUser {name}")

    # Tear down, one step at a time.
    client.removeVpnUser(username="alice")
    _assert_router_matches(api, client, net, "removeVpnUser")
    client.deleteRemoteAccessVpn(publicipid=source_nat["id"])
    _assert_router_matches(api, client, net, "deleteRemoteAccessVpn")
    client.removeFromLoadBalancerRule(id=lb["id"], virtualmachineids=vms[1]["id"])
    _assert_router_matches(api, client, net, "removeFromLoadBalancerRule")
    client.deleteLoadBalancerRule(id=lb["id"])
    _assert_router_matches(api, client, net, "deleteLoadBalancerRule")
    client.deleteFirewallRule(id=web["id"])
    _assert_router_matches(api, client, net, "deleteFirewallRule")
    client.deletePortForwardingRule(id=forward["id"])
    _assert_router_matches(api, client, net, "deletePortForwardingRule")
    client.disassociateIpAddress(id=ip["id"])
    _assert_router_matches(api, client, net, "disassociateIpAddress")
    for vm in vms:
        api.destroyVirtualMachine(id=vm["id"], expunge=True)
        _assert_router_matches(api, client, net, "destroying a VM")
    config = _seen_through_the_api(client, net)
    assert config.get("dhcp", {}) == {} and config.get("port_forwards", {}) == {}, config
    assert list(config.get("public_ips", {}).values()) == [True], "only the source-NAT address is left"

    client.deleteNetwork(id=net)
    assert _items(client.listNetworks(id=net), "network") == []
    assert _items(api.listRouters(networkid=net, listall=True), "router") == []


def test_expunging_a_vm_revokes_its_rules_and_the_firewall_they_opened(server, api, commands):
    require(commands, "createPortForwardingRule", "listRouterConfigurations")
    zone, template, small, _offering = _demo(api)
    _account, _user, plain = new_user(server, api)
    client = server.client(key=plain.key, secret=plain.secret, fetch_result=True)
    admin = server.client(fetch_result=True)
    vm = client.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                     serviceofferingid=small["id"])["virtualmachine"]
    net = vm["nic"][0]["networkid"]
    ip = client.associateIpAddress(networkid=net)["ipaddress"]
    client.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp", publicport=2222,
                                    privateport=22, virtualmachineid=vm["id"])
    [opened] = client.listFirewallRules(ipaddressid=ip["id"])["firewallrule"]
    assert (opened["startport"], opened["endport"]) == (2222, 2222), opened
    admin.destroyVirtualMachine(id=vm["id"], expunge=True)
    assert _items(client.listPortForwardingRules(ipaddressid=ip["id"]), "portforwardingrule") == []
    assert _items(client.listFirewallRules(ipaddressid=ip["id"]), "firewallrule") == []
    _assert_router_matches(admin, client, net, "expunging the VM")
