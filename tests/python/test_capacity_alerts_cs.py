"""Capacity alerts through `cs` (issue 7) on a private `--demo` server: memory and CPU allocated
in the demo cluster, and public IPs allocated in the demo zone, cross their
`*.capacity.notificationthreshold` settings (lowered with updateConfiguration so a few resources
suffice); each alert is listed once while it stays open, and resolved when the allocation falls
back (a later crossing is then a new alert)."""
from __future__ import annotations

import ipaddress
import shutil
import tempfile
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from cs import CloudStackApiException

from conftest import api_error, eventually, launch_server, new_user, stop_server
from test_usage_cs import demo

MEMORY, CPU, PUBLIC_IP = 0, 1, 4
MEMORY_SETTING = "cluster.memory.allocated.capacity.notificationthreshold"
CPU_SETTING = "cluster.cpu.allocated.capacity.notificationthreshold"
IP_SETTING = "zone.virtualnetwork.publicip.capacity.notificationthreshold"


@pytest.fixture
def srv():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-capacity-"))
    server = launch_server(workdir / "data", workdir / "server.log", "--demo")
    try:
        yield server
        stop_server(server)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def alerts(admin, type_):
    return admin.listAlerts(type=type_, fetch_list=True)


def capacity(admin, zone, type_):
    """(allocated, total) of the zone's one cluster, as listCapacity shows it."""
    [row] = admin.listCapacity(zoneid=zone["id"], type=type_, fetch_list=True)
    return Decimal(row["capacityused"]), Decimal(row["capacitytotal"])


def between(low: Decimal, high: Decimal, total: Decimal) -> str:
    """A threshold fraction with `low / total` at or under it and `high / total` above it."""
    value = ((low + high) / 2 / total).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)
    assert low / total <= value < high / total
    return str(value)


def look_after(admin, setting, type_):
    """Waits for the watcher to look at the log as it stands: sets `setting` to 0, so that
    resource (allocated at all) is over it, and waits for its alert. The look that raises it
    sees everything appended before the setting, and appends its resolutions in the same
    batch as that raise."""
    admin.updateConfiguration(name=setting, value="0")
    eventually(lambda: alerts(admin, type_), f"an alert of type {type_}")


def test_memory_and_cpu_alerts_are_raised_once_and_resolved(srv):
    admin = srv.client(fetch_result=True)
    _, _, client = new_user(srv, admin)
    user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
    zone, template, small = demo(user)

    def deploy(name):
        return user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                         serviceofferingid=small["id"],
                                         name=name)["virtualmachine"]

    deploy("cap-1")
    memory_used, memory_total = capacity(admin, zone, MEMORY)
    cpu_used, cpu_total = capacity(admin, zone, CPU)
    vm_memory = Decimal(small["memory"]) * 2**20
    vm_cpu = Decimal(small["cpunumber"]) * Decimal(small["cpuspeed"])
    # One more VM crosses the memory threshold; two more cross the CPU one.
    admin.updateConfiguration(name=MEMORY_SETTING,
                              value=between(memory_used, memory_used + vm_memory, memory_total))
    admin.updateConfiguration(name=CPU_SETTING,
                              value=between(cpu_used + vm_cpu, cpu_used + 2 * vm_cpu, cpu_total))
    assert alerts(admin, MEMORY) == [] and alerts(admin, CPU) == []

    second = deploy("cap-2")
    [memory_alert] = eventually(lambda: alerts(admin, MEMORY), "the memory alert")
    assert memory_alert["name"] == "ALERT.MEMORY"
    assert "Low Available Memory in cluster demo-cluster" in memory_alert["description"]
    assert MEMORY_SETTING in memory_alert["description"]

    # The third VM crosses CPU; the look that raises it sees memory still over and its alert
    # open: nothing new for memory.
    third = deploy("cap-3")
    [cpu_alert] = eventually(lambda: alerts(admin, CPU), "the CPU alert")
    assert cpu_alert["name"] == "ALERT.CPU"
    assert "Low Unallocated CPU in cluster demo-cluster" in cpu_alert["description"]
    assert alerts(admin, MEMORY) == [memory_alert]

    # Back under both: both resolve. Crossing memory again is then a second, new alert (an
    # open one would have kept it from being raised).
    user.stopVirtualMachine(id=third["id"])
    user.stopVirtualMachine(id=second["id"])
    assert capacity(admin, zone, MEMORY)[0] == memory_used
    look_after(admin, IP_SETTING, PUBLIC_IP)
    user.startVirtualMachine(id=second["id"])
    again = eventually(lambda: [a for a in alerts(admin, MEMORY) if a["id"] != memory_alert["id"]],
                       "a second memory alert after the first was resolved")
    assert len(again) == 1
    assert alerts(admin, CPU) == [cpu_alert]

    # A restart looks at the same log: the open memory alert is not raised again.
    memory_alerts = alerts(admin, MEMORY)
    assert stop_server(srv) == 0
    restarted = launch_server(srv.workdir / "data", srv.workdir / "server.log", "--demo")
    try:
        admin = restarted.client(fetch_result=True)
        admin.updateConfiguration(name=CPU_SETTING, value="0")
        eventually(lambda: len(alerts(admin, CPU)) == 2, "a second CPU alert after the restart")
        assert alerts(admin, MEMORY) == memory_alerts
        assert len(alerts(admin, PUBLIC_IP)) == 1
    finally:
        assert stop_server(restarted) == 0


def test_public_ip_alert_per_zone_setting(srv):
    admin = srv.client(fetch_result=True)
    _, _, client = new_user(srv, admin)
    user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
    zone, template, small = demo(user)
    vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                   serviceofferingid=small["id"],
                                   name="ip-holder")["virtualmachine"]
    network_id = vm["nic"][0]["networkid"]

    ranges = [r for r in admin.listVlanIpRanges(zoneid=zone["id"], fetch_list=True)
              if r.get("forvirtualnetwork", True)]
    total = sum(int(ipaddress.ip_address(r["endip"])) - int(ipaddress.ip_address(r["startip"]))
                + 1 for r in ranges)
    held = len(admin.listPublicIpAddresses(zoneid=zone["id"], listall=True, allocatedonly=True,
                                           fetch_list=True))
    assert held >= 1, "the VM's network holds its source NAT address"

    # A zone-scoped value, as CloudStack scopes the setting: one more address crosses it.
    admin.updateConfiguration(name=IP_SETTING, zoneid=zone["id"],
                              value=between(Decimal(held), Decimal(held + 1), Decimal(total)))
    [setting] = admin.listConfigurations(name=IP_SETTING, zoneid=zone["id"])["configuration"]
    assert setting["scope"] == "zone"
    assert alerts(admin, PUBLIC_IP) == []

    ip = user.associateIpAddress(networkid=network_id)["ipaddress"]
    [alert] = eventually(lambda: alerts(admin, PUBLIC_IP), "the public IP alert")
    assert alert["name"] == "ALERT.NETWORK.PUBLICIP"
    assert "virtual network public IPs is low in availability zone Demo Zone" \
        in alert["description"]
    assert f"allocated {held + 1} addresses of {total} addresses" in alert["description"]

    # Released: resolved; a new acquisition crosses again and is a second alert.
    user.disassociateIpAddress(id=ip["id"])
    look_after(admin, MEMORY_SETTING, MEMORY)
    ip = user.associateIpAddress(networkid=network_id)["ipaddress"]
    later = eventually(lambda: [a for a in alerts(admin, PUBLIC_IP) if a["id"] != alert["id"]],
                       "a second public IP alert after the first was resolved")
    assert len(later) == 1
    user.disassociateIpAddress(id=ip["id"])


def test_bad_threshold_values_are_refused(srv):
    admin = srv.client()
    for value in ["1.5", "-0.1", "most"]:
        with pytest.raises(CloudStackApiException) as excinfo:
            admin.updateConfiguration(name=MEMORY_SETTING, value=value)
        api_error(excinfo, 431)
    [setting] = admin.listConfigurations(name=MEMORY_SETTING)["configuration"]
    assert setting["value"] == "0.75"
