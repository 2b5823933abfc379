"""The VM lifecycle end to end through the real `cs` client: deploy, stop, start, reboot, scale,
volumes, snapshot and template around a VM, destroy with expunge, and what `listEvents` says
about all of it; deploy options; the error codes (431, 531, 532, 533, 536); driver failures
injected with `configureSimulator`; concurrent deploys against the demo hosts' capacity; and
jobs that survive a SIGKILL of the server.

Every VM a test deploys is destroyed with `expunge=true` at its end (the `reap` fixture), since
the demo hosts are shared by every suite of the session.

Alone:
    cargo build -p tools && LEDGERSTACK_BIN=target/debug/ledgerstack \
        .venv/bin/python -m pytest -x -q tests/python/test_vm_lifecycle.py
"""

from __future__ import annotations

import base64
import ipaddress
import shutil
import signal
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cs
import pytest

from conftest import (  # noqa: F401  (fixtures shared by the suites)
    api_error,
    assert_success,
    eventually,
    launch_server,
    new_user,
    require,
    stop_server,
    unique,
    waiting,
)

GIB = 1024**3
MIB = 1024**2
TEMPLATE_NAME = "CentOS 5.6 (64-bit) no GUI (Simulator)"
INJECTED = "Simulated failure of StartCommand"
# States in which a VM holds capacity on its host.
HOLDING_HOST = {"Starting", "Running", "Stopping", "Migrating"}


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(api, zone):
    [template] = [
        t for t in api.listTemplates(templatefilter="featured")["template"]
        if t["name"] == TEMPLATE_NAME and t["zoneid"] == zone["id"]
    ]
    return template


@pytest.fixture(scope="module")
def offerings(api):
    """Service offerings by name (the demo's `Small Instance` and `Medium Instance`, ...)."""
    return {o["name"]: o for o in api.listServiceOfferings()["serviceoffering"]}


@pytest.fixture(scope="module")
def disk_offerings(api):
    """Disk offerings by name (the demo's `Small`, 5 GiB, and `Custom`)."""
    return {o["name"]: o for o in api.listDiskOfferings()["diskoffering"]}


@pytest.fixture(scope="module", autouse=True)
def users_may_expunge(api):
    """The tests below let users expunge their VMs, as an operator allows with
    `allow.user.expunge.recover.vm` (CloudStack's default, false, is tested on its own)."""
    api.updateConfiguration(name="allow.user.expunge.recover.vm", value="true")
    yield
    api.updateConfiguration(name="allow.user.expunge.recover.vm", value="false")


def test_users_may_not_expunge_or_recover_by_default(server, api, zone, template, offerings, reap):
    api.updateConfiguration(name="allow.user.expunge.recover.vm", value="false")
    try:
        assert api.listCapabilities()["capability"]["allowuserexpungerecovervm"] is False
        _account, _user, client = new_user(server, api)
        vm = client.deployVirtualMachine(
            zoneid=zone["id"], templateid=template["id"],
            serviceofferingid=offerings["Small Instance"]["id"], startvm=False,
            fetch_result=True,
        )["virtualmachine"]
        reap.append(vm["id"])
        with pytest.raises(cs.CloudStackException) as excinfo:
            client.destroyVirtualMachine(id=vm["id"], expunge=True, fetch_result=True)
        assert "allow.user.expunge.recover.vm" in api_error(excinfo, 531)
        client.destroyVirtualMachine(id=vm["id"], fetch_result=True)
        for command in ("recoverVirtualMachine", "expungeVirtualMachine"):
            with pytest.raises(cs.CloudStackException) as excinfo:
                getattr(client, command)(id=vm["id"], fetch_result=True)
            api_error(excinfo, 531)
        # The admin may, whatever the setting.
        assert api.recoverVirtualMachine(id=vm["id"])["virtualmachine"]["state"] == "Stopped"
    finally:
        api.updateConfiguration(name="allow.user.expunge.recover.vm", value="true")


@pytest.fixture
def reap(server, api):
    """VM ids to destroy with expunge at the end of the test, whatever happened."""
    ids: list[str] = []
    yield ids
    admin = server.client(fetch_result=True)
    for vm_id in ids:
        listed = admin.listVirtualMachines(id=vm_id, listall=True).get("virtualmachine", [])
        if not listed:
            continue
        try:
            if listed[0]["state"] == "Destroyed":
                admin.expungeVirtualMachine(id=vm_id)
            else:
                admin.destroyVirtualMachine(id=vm_id, expunge=True)
        except cs.CloudStackException as e:  # the test's own assertion is what matters
            print(f"could not expunge VM {vm_id}: {e!r}")


def waiting_user(server, api):
    """A new normal user: (account, user, client that waits for jobs)."""
    account, usr, client = new_user(server, api)
    return account, usr, waiting(server, client)


def deploy(client, zone, template, offering, **params) -> dict:
    """deployVirtualMachine with the demo zone and template; the job's VM."""
    params.setdefault("name", unique("vm"))
    return client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"], **params
    )["virtualmachine"]


def vm_of(client, vm_id) -> dict | None:
    listed = client.listVirtualMachines(id=vm_id).get("virtualmachine", [])
    assert len(listed) <= 1, listed
    return listed[0] if listed else None


def job_result(client: cs.CloudStack, reply: dict, timeout: float = 30) -> dict:
    """Polls queryAsyncJobResult for an async reply's job until it is done; the job."""

    def finished():
        job = client.queryAsyncJobResult(jobid=reply["jobid"])
        return job if job["jobstatus"] != 0 else None

    return eventually(finished, f"job {reply['jobid']}", timeout=timeout, step=0.1)


def all_events(client: cs.CloudStack, **filters) -> list[dict]:
    """Every event the caller sees, oldest first (listEvents answers newest first)."""
    events, page = [], 1
    while True:
        reply = client.listEvents(page=page, pagesize=500, **filters)
        batch = reply.get("event", [])
        events.extend(batch)
        if len(events) >= reply.get("count", 0) or not batch:
            break
        page += 1
    return list(reversed(events))


def demo_hosts(api, zone) -> list[dict]:
    return [
        h for h in api.listHosts(zoneid=zone["id"]).get("host", [])
        if h.get("resourcestate") == "Enabled" and h.get("type", "Routing") == "Routing"
    ]


def allocated(api, zone) -> dict[str, tuple[int, int]]:
    """Per host: (allocated MHz, allocated MiB), as listHosts shows them."""
    return {
        h["id"]: (h["cpuallocatedvalue"], h["memoryallocated"] // MIB)
        for h in demo_hosts(api, zone)
    }


def all_vms(api, **filters) -> list[dict]:
    reply = api.listVirtualMachines(listall=True, page=1, pagesize=500, **filters)
    assert reply.get("count", 0) <= 500, "more VMs than one page: page through them"
    return reply.get("virtualmachine", [])


def raise_limits(api, commands, account, *types: int):
    """Lifts the account's limits of these resource types (a test about capacity, not limits)."""
    if "updateResourceLimit" not in commands:
        return
    for resource_type in types:
        api.updateResourceLimit(
            resourcetype=resource_type, max=-1, account=account["name"],
            domainid=account["domainid"],
        )


def refused(excinfo_or_exception, status: int) -> str:
    """A request refused with `status` (not a failed job); the error text."""
    e = getattr(excinfo_or_exception, "value", excinfo_or_exception)
    assert isinstance(e, cs.CloudStackApiException), repr(e)
    assert e.response.status_code == status, (e.response.status_code, e.error)
    assert e.error["errorcode"] == status, e.error
    return e.error["errortext"]


# --------------------------------------------------------------------------------------------
# 1. The whole lifecycle, as a user, and its events
# --------------------------------------------------------------------------------------------


def test_full_lifecycle_and_its_events(
    server, api, commands, zone, template, disk_offerings, reap
):
    require(
        commands,
        "deployVirtualMachine", "stopVirtualMachine", "startVirtualMachine",
        "rebootVirtualMachine", "scaleVirtualMachine", "changeServiceForVirtualMachine",
        "destroyVirtualMachine", "listEvents", "createVolume", "attachVolume", "detachVolume",
        "resizeVolume", "deleteVolume", "listVolumes", "createSnapshot", "createTemplate",
    )
    account, usr, client = waiting_user(server, api)

    # What the user sees: the zone, the template as executable and as featured, the offerings.
    assert zone["id"] in {z["id"] for z in client.listZones()["zone"]}
    for templatefilter in ("executable", "featured"):
        listed = client.listTemplates(templatefilter=templatefilter)["template"]
        assert template["id"] in {t["id"] for t in listed}, templatefilter
    offerings = [
        o for o in client.listServiceOfferings()["serviceoffering"] if not o["iscustomized"]
    ]
    small = min(offerings, key=lambda o: (o["cpunumber"] * o["cpuspeed"], o["memory"]))
    # A bigger offering the running VM may scale to (CloudStack only scales up).
    bigger = [
        o for o in offerings
        if o["id"] != small["id"] and o["cpunumber"] >= small["cpunumber"]
        and o["cpuspeed"] >= small["cpuspeed"] and o["memory"] >= small["memory"]
    ]
    assert bigger, offerings
    dynamic = [o for o in bigger if o.get("dynamicscalingenabled")]
    target = (dynamic or bigger)[0]

    # Deploy.
    name = unique("life")
    vm = deploy(client, zone, template, small, name=name)
    reap.append(vm["id"])
    assert vm["state"] == "Running", vm
    assert vm["name"] == name and vm["displayname"] == name
    assert vm["account"] == account["name"] and vm["domainid"] == account["domainid"]
    assert vm["hypervisor"] == "Simulator"
    assert vm["hostid"] and vm["hostname"], vm
    assert vm["hostid"] in {h["id"] for h in demo_hosts(api, zone)}
    assert vm["serviceofferingid"] == small["id"]
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (
        small["cpunumber"], small["cpuspeed"], small["memory"])
    assert vm["templateid"] == template["id"] and vm["zoneid"] == zone["id"]
    [nic] = vm["nic"]
    network = ipaddress.ip_network(f"{nic['gateway']}/{nic['netmask']}", strict=False)
    address = ipaddress.ip_address(nic["ipaddress"])
    assert address in network, (nic, network)
    assert address not in (network.network_address, network.broadcast_address)
    assert address != ipaddress.ip_address(nic["gateway"])
    assert nic["isdefault"] is True
    if "listNetworks" in commands:
        [net] = client.listNetworks(id=nic["networkid"])["network"]
        assert address in ipaddress.ip_network(net["cidr"]), net
    assert vm_of(client, vm["id"])["state"] == "Running"

    # Stop, start, reboot.
    stopped = client.stopVirtualMachine(id=vm["id"])["virtualmachine"]
    assert stopped["state"] == "Stopped" and "hostid" not in stopped, stopped
    assert vm_of(client, vm["id"])["state"] == "Stopped"
    started = client.startVirtualMachine(id=vm["id"])["virtualmachine"]
    assert started["state"] == "Running" and started["hostid"], started
    rebooted = client.rebootVirtualMachine(id=vm["id"])["virtualmachine"]
    assert rebooted["state"] == "Running" and rebooted["hostid"] == started["hostid"]

    # Scale: the running VM with a dynamically scalable offering, else stopped.
    if target.get("dynamicscalingenabled"):
        scaled = client.scaleVirtualMachine(id=vm["id"], serviceofferingid=target["id"])
        scale_type = "VM.DYNAMIC.SCALE"
    else:
        client.stopVirtualMachine(id=vm["id"])
        scaled = client.changeServiceForVirtualMachine(id=vm["id"], serviceofferingid=target["id"])
        client.startVirtualMachine(id=vm["id"])
        scale_type = "VM.UPGRADE"
    scaled = scaled["virtualmachine"]
    assert scaled["serviceofferingid"] == target["id"], scaled
    assert (scaled["cpunumber"], scaled["cpuspeed"], scaled["memory"]) == (
        target["cpunumber"], target["cpuspeed"], target["memory"])
    assert vm_of(client, vm["id"])["state"] == "Running"
    if scale_type == "VM.DYNAMIC.SCALE":
        # CloudStack scales a running VM up only; back down needs it stopped.
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            client.scaleVirtualMachine(id=vm["id"], serviceofferingid=small["id"])
        assert "Only scaling up" in api_error(excinfo, 431, 4350)
        assert vm_of(client, vm["id"])["serviceofferingid"] == target["id"]

    # A data volume: create (custom size), attach, detach, resize, delete.
    custom = next(o for o in disk_offerings.values() if o["iscustomized"])
    volume = client.createVolume(
        name=unique("data"), zoneid=zone["id"], diskofferingid=custom["id"], size=1
    )["volume"]
    assert volume["size"] == 1 * GIB and volume["type"] == "DATADISK", volume
    attached = client.attachVolume(id=volume["id"], virtualmachineid=vm["id"])["volume"]
    assert attached["virtualmachineid"] == vm["id"], attached
    detached = client.detachVolume(id=volume["id"])["volume"]
    assert "virtualmachineid" not in detached, detached
    resized = client.resizeVolume(id=volume["id"], size=2)["volume"]
    assert resized["size"] == 2 * GIB, resized
    assert_success(client.deleteVolume(id=volume["id"]))
    assert client.listVolumes(id=volume["id"]).get("volume", []) == []

    # A snapshot of the ROOT volume, and a template from it.
    [root] = client.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"]
    snapshot = client.createSnapshot(volumeid=root["id"])["snapshot"]
    assert snapshot["volumeid"] == root["id"] and snapshot["state"] == "BackedUp", snapshot
    new_template = client.createTemplate(
        snapshotid=snapshot["id"], name=unique("tpl"), displaytext="from a snapshot",
        ostypeid=template["ostypeid"],
    )["template"]
    assert new_template["account"] == account["name"], new_template
    mine = client.listTemplates(templatefilter="self")["template"]
    assert new_template["id"] in {t["id"] for t in mine}

    # Stopped, it changes offering back (VM.UPGRADE), then it goes for good.
    client.stopVirtualMachine(id=vm["id"])
    downgraded = client.changeServiceForVirtualMachine(
        id=vm["id"], serviceofferingid=small["id"])["virtualmachine"]
    assert downgraded["serviceofferingid"] == small["id"] and downgraded["state"] == "Stopped"
    gone = client.destroyVirtualMachine(id=vm["id"], expunge=True)["virtualmachine"]
    assert gone["id"] == vm["id"] and gone["state"] == "Expunging", gone
    assert vm_of(client, vm["id"]) is None
    assert api.listVirtualMachines(id=vm["id"], listall=True).get("virtualmachine", []) == []
    assert client.listVolumes(id=root["id"]).get("volume", []) == []

    # The events, as the user sees them, oldest first.
    events = all_events(client)
    assert events, "the user sees no events"
    for e in events:
        assert e["account"] == account["name"], e
        assert e["level"] == "INFO", e
    assert {e["username"] for e in events if e.get("username")} == {usr["username"]}
    # The root admin sees the same rows for that account.
    as_admin = all_events(api, account=account["name"], domainid=account["domainid"])
    assert [e["id"] for e in as_admin] == [e["id"] for e in events]

    def rows(event_type, state=None, resource=None):
        return [
            e for e in events
            if e["type"] == event_type and (state is None or e["state"] == state)
            and (resource is None or e.get("resourceid") == resource)
        ]

    # Every async command: a Scheduled row, and a Started row whose parent it is.
    jobs = {
        "VM.CREATE": vm["id"], "VM.START": vm["id"], "VM.STOP": vm["id"],
        "VM.REBOOT": vm["id"], "VM.DESTROY": vm["id"],
        "VOLUME.CREATE": volume["id"], "VOLUME.ATTACH": volume["id"],
        "VOLUME.DETACH": volume["id"], "VOLUME.RESIZE": volume["id"],
        "SNAPSHOT.CREATE": snapshot["id"], "TEMPLATE.CREATE": new_template["id"],
    }
    if scale_type == "VM.DYNAMIC.SCALE":
        jobs[scale_type] = vm["id"]
    for event_type, resource in jobs.items():
        scheduled = rows(event_type, "Scheduled", resource)
        started = rows(event_type, "Started", resource)
        assert scheduled, f"no {event_type} Scheduled row for {resource}"
        assert len(started) == len(scheduled), (event_type, scheduled, started)
        assert {s["parentid"] for s in started} == {s["id"] for s in scheduled}, event_type
        assert all(not s.get("parentid") for s in scheduled), scheduled
    assert len(rows("VM.STOP", "Scheduled")) == 2 and len(rows("VM.START", "Scheduled")) == 1

    # What was done: a Completed row per step, in the order of the steps.
    steps = [
        ("VM.CREATE", vm["id"]),
        ("VM.START", vm["id"]),  # deploy's start
        ("VM.STOP", vm["id"]),
        ("VM.START", vm["id"]),
        ("VM.REBOOT", vm["id"]),
        (scale_type, vm["id"]),
        ("VOLUME.CREATE", volume["id"]),
        ("VOLUME.ATTACH", volume["id"]),
        ("VOLUME.DETACH", volume["id"]),
        ("VOLUME.RESIZE", volume["id"]),
        ("VOLUME.DELETE", volume["id"]),
        ("SNAPSHOT.CREATE", snapshot["id"]),
        ("TEMPLATE.CREATE", new_template["id"]),
        ("VM.STOP", vm["id"]),
        ("VM.UPGRADE", vm["id"]),
        ("VM.DESTROY", vm["id"]),
        ("VOLUME.DELETE", root["id"]),
        ("VM.EXPUNGE", vm["id"]),
    ]
    completed = [
        (e["type"], e.get("resourceid")) for e in events
        if e["state"] == "Completed" and (e["type"], e.get("resourceid")) in set(steps)
    ]
    assert completed == steps, completed


def test_driver_results_are_linked_to_their_job(server, api, commands, zone, template,
                                                offerings, reap):
    require(commands, "deployVirtualMachine", "stopVirtualMachine", "startVirtualMachine",
            "rebootVirtualMachine", "listEvents")
    _, _, client = waiting_user(server, api)
    vm = deploy(client, zone, template, offerings["Small Instance"])
    reap.append(vm["id"])
    for _ in range(3):
        client.stopVirtualMachine(id=vm["id"])
        client.startVirtualMachine(id=vm["id"])
        client.rebootVirtualMachine(id=vm["id"])
    events = all_events(client, resourcetype="VirtualMachine", resourceid=vm["id"])
    position = {e["id"]: n for n, e in enumerate(events)}
    for e in events:
        if e["type"] in ("VM.STOP", "VM.START", "VM.REBOOT") and e["state"] == "Completed":
            assert e.get("parentid") in position, e
            assert position[e["parentid"]] < position[e["id"]], e


# --------------------------------------------------------------------------------------------
# 2. Deploy options
# --------------------------------------------------------------------------------------------


def test_deploy_with_startvm_false_is_stopped_and_holds_no_host(
    server, api, commands, zone, template, offerings, reap
):
    require(commands, "deployVirtualMachine", "startVirtualMachine", "listHosts")
    _, _, client = waiting_user(server, api)
    offering = offerings["Small Instance"]
    before = allocated(api, zone)
    vm = deploy(client, zone, template, offering, startvm=False)
    reap.append(vm["id"])
    assert vm["state"] == "Stopped", vm
    assert "hostid" not in vm and "hostname" not in vm, vm
    assert vm["nic"] and vm["nic"][0]["ipaddress"], vm
    listed = vm_of(client, vm["id"])
    assert listed["state"] == "Stopped" and "hostid" not in listed
    assert allocated(api, zone) == before
    if "listVolumes" in commands:
        [root] = client.listVolumes(virtualmachineid=vm["id"])["volume"]
        assert root["type"] == "ROOT", root

    started = client.startVirtualMachine(id=vm["id"])["virtualmachine"]
    assert started["state"] == "Running" and started["hostid"], started
    after = allocated(api, zone)
    cpu, mem = before[started["hostid"]]
    assert after[started["hostid"]] == (
        cpu + offering["cpunumber"] * offering["cpuspeed"], mem + offering["memory"])
    assert {h: a for h, a in after.items() if h != started["hostid"]} == {
        h: b for h, b in before.items() if h != started["hostid"]}

    client.destroyVirtualMachine(id=vm["id"], expunge=True)
    assert allocated(api, zone) == before


def test_deploy_options(server, api, commands, zone, template, offerings, disk_offerings, reap):
    require(commands, "deployVirtualMachine", "listVolumes", "deleteVolume")
    _, _, client = waiting_user(server, api)
    name = unique("opts")
    user_data = base64.b64encode(b"#cloud-config\nruncmd:\n - echo hello\n").decode()
    keypair = None
    if "createSSHKeyPair" in commands:
        keypair = client.createSSHKeyPair(name=unique("kp"))["keypair"]["name"]
    fixed = next(o for o in disk_offerings.values() if not o["iscustomized"])
    params = dict(
        name=name, displayname="Options test VM", userdata=user_data, rootdisksize=10,
        diskofferingid=fixed["id"],
    )
    if keypair:
        params["keypair"] = keypair
    vm = deploy(client, zone, template, offerings["Small Instance"], **params)
    reap.append(vm["id"])
    assert vm["state"] == "Running", vm
    assert vm["name"] == name and vm["displayname"] == "Options test VM", vm
    assert vm["instancename"] and vm["instancename"] != name
    if keypair:
        assert vm["keypairs"] == keypair, vm
    assert vm.get("diskofferingid") == fixed["id"], vm
    volumes = {v["type"]: v for v in client.listVolumes(virtualmachineid=vm["id"])["volume"]}
    assert set(volumes) == {"ROOT", "DATADISK"}, volumes
    assert volumes["ROOT"]["size"] == 10 * GIB, volumes["ROOT"]
    data = volumes["DATADISK"]
    assert data["size"] == fixed["disksize"] * GIB and data["diskofferingid"] == fixed["id"]
    assert data["virtualmachineid"] == vm["id"] and data["deviceid"] >= 1, data

    # A custom disk offering takes its size from `size`.
    custom = next(o for o in disk_offerings.values() if o["iscustomized"])
    other = deploy(client, zone, template, offerings["Small Instance"],
                   diskofferingid=custom["id"], size=3)
    reap.append(other["id"])
    [data3] = client.listVolumes(virtualmachineid=other["id"], type="DATADISK")["volume"]
    assert data3["size"] == 3 * GIB, data3
    # Without a size it is refused, and so is a root disk smaller than the template.
    count = client.listVirtualMachines()["count"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, offerings["Small Instance"], diskofferingid=custom["id"])
    api_error(excinfo, 431, 4350)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, offerings["Small Instance"], rootdisksize=1)
    api_error(excinfo, 431, 4350)
    # The same name twice in one account.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, offerings["Small Instance"], name=name)
    assert name in api_error(excinfo, 431, 4350)
    assert client.listVirtualMachines()["count"] == count

    # Expunging a VM deletes its ROOT volume and detaches its data disks.
    for v in (vm, other):
        client.destroyVirtualMachine(id=v["id"], expunge=True)
    left = client.listVolumes().get("volume", [])
    assert {v["id"] for v in left} == {data["id"], data3["id"]}, left
    for v in left:
        assert "virtualmachineid" not in v, v
        assert_success(client.deleteVolume(id=v["id"]))


# --------------------------------------------------------------------------------------------
# 3. Errors
# --------------------------------------------------------------------------------------------


def test_533_when_no_host_fits_appends_nothing(server, api, commands, zone, template, reap):
    require(commands, "deployVirtualMachine", "listHosts", "createServiceOffering")
    account, _, client = waiting_user(server, api)
    hosts = demo_hosts(api, zone)
    biggest = max(h["cpunumber"] * h["cpuspeed"] for h in hosts)
    # A custom offering: the shape comes with the deploy.
    customs = [
        o for o in api.listServiceOfferings()["serviceoffering"]
        if o["iscustomized"] and not o.get("issystem")
    ]
    custom = customs[0] if customs else api.createServiceOffering(
        name=unique("custom"), displaytext="custom shape", customized=True)["serviceoffering"]
    # CPU and memory limits go first (532): lift them, this is about capacity.
    raise_limits(api, commands, account, 8, 9)
    if "updateResourceLimit" in commands:
        shape = {"cpuNumber": 64, "cpuSpeed": 2000, "memory": 1024}
    else:
        shape = {"cpuNumber": 1, "cpuSpeed": biggest + 1, "memory": 512}
    before_allocated = allocated(api, zone)
    before_events = len(all_events(client))

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, custom, details=[shape])
    text = api_error(excinfo, 533, 4325)
    assert "deployment" in text or "capacity" in text, text
    assert client.listVirtualMachines().get("count", 0) == 0
    if "listVolumes" in commands:
        assert client.listVolumes().get("count", 0) == 0
    assert len(all_events(client)) == before_events
    assert allocated(api, zone) == before_allocated

    # The root admin choosing a host too small for a fixed offering: 533 as well.
    too_big = api.createServiceOffering(
        name=unique("toobig"), displaytext="bigger than a host",
        cpunumber=hosts[0]["cpunumber"] + 1, cpuspeed=hosts[0]["cpuspeed"], memory=1024,
    )["serviceoffering"]
    admin = server.client(fetch_result=True)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(admin, zone, template, too_big, hostid=hosts[0]["id"],
               account=account["name"], domainid=account["domainid"])
    api_error(excinfo, 533, 4325)
    assert client.listVirtualMachines().get("count", 0) == 0
    assert allocated(api, zone) == before_allocated

    # A shape that fits is deployed on the same offering.
    vm = deploy(client, zone, template, custom,
                details=[{"cpuNumber": 1, "cpuSpeed": 500, "memory": 256}])
    reap.append(vm["id"])
    assert (vm["cpunumber"], vm["cpuspeed"], vm["memory"]) == (1, 500, 256)
    assert vm["state"] == "Running"


def test_532_vm_limit(server, api, commands, zone, template, offerings, reap):
    require(commands, "deployVirtualMachine", "updateResourceLimit")
    account, _, client = waiting_user(server, api)
    limit = api.updateResourceLimit(
        resourcetype=0, max=1, account=account["name"], domainid=account["domainid"]
    )["resourcelimit"]
    assert limit["max"] == 1, limit
    vm = deploy(client, zone, template, offerings["Small Instance"])
    reap.append(vm["id"])
    before_events = len(all_events(client))
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        deploy(client, zone, template, offerings["Small Instance"])
    assert "user_vm" in api_error(excinfo, 532, 4280)
    assert [v["id"] for v in client.listVirtualMachines()["virtualmachine"]] == [vm["id"]]
    assert len(all_events(client)) == before_events
    # Once the first is gone, there is room again.
    client.destroyVirtualMachine(id=vm["id"], expunge=True)
    second = deploy(client, zone, template, offerings["Small Instance"])
    reap.append(second["id"])
    assert second["state"] == "Running"


def test_536_deleting_an_attached_volume(server, api, commands, zone, template, offerings,
                                         disk_offerings, reap):
    require(commands, "deployVirtualMachine", "createVolume", "attachVolume", "detachVolume",
            "deleteVolume", "listVolumes")
    _, _, client = waiting_user(server, api)
    vm = deploy(client, zone, template, offerings["Small Instance"])
    reap.append(vm["id"])
    fixed = next(o for o in disk_offerings.values() if not o["iscustomized"])
    volume = client.createVolume(
        name=unique("vol"), zoneid=zone["id"], diskofferingid=fixed["id"])["volume"]
    client.attachVolume(id=volume["id"], virtualmachineid=vm["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteVolume(id=volume["id"])
    api_error(excinfo, 536, 4375)
    [still] = client.listVolumes(id=volume["id"])["volume"]
    assert still["virtualmachineid"] == vm["id"]
    # The ROOT volume of a VM is not deletable either (it goes with the VM).
    [root] = client.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteVolume(id=root["id"])
    assert excinfo.value.error["errorcode"] in (431, 536), excinfo.value.error
    client.detachVolume(id=volume["id"])
    assert_success(client.deleteVolume(id=volume["id"]))


def test_531_another_users_vm_is_invisible_and_untouchable(
    server, api, commands, zone, template, offerings, reap
):
    require(commands, "deployVirtualMachine", "stopVirtualMachine", "destroyVirtualMachine")
    _, _, owner = waiting_user(server, api)
    _, _, other = waiting_user(server, api)
    vm = deploy(owner, zone, template, offerings["Small Instance"])
    reap.append(vm["id"])

    assert other.listVirtualMachines(id=vm["id"]).get("virtualmachine", []) == []
    assert vm["id"] not in {v["id"] for v in other.listVirtualMachines().get("virtualmachine", [])}
    assert other.listVirtualMachines(listall=True).get("virtualmachine", []) == []
    attempts = [
        ("stopVirtualMachine", {}),
        ("destroyVirtualMachine", {"expunge": True}),
        ("rebootVirtualMachine", {}),
        ("startVirtualMachine", {}),
        ("scaleVirtualMachine", {"serviceofferingid": offerings["Medium Instance"]["id"]}),
        ("updateVirtualMachine", {"displayname": "hijacked"}),
    ]
    for command, params in attempts:
        if command not in commands:
            continue
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            getattr(other, command)(id=vm["id"], **params)
        api_error(excinfo, 531, 4365)
    if "listVolumes" in commands:
        assert other.listVolumes(virtualmachineid=vm["id"]).get("volume", []) == []
    after = vm_of(owner, vm["id"])
    assert after["state"] == "Running" and after["displayname"] == vm["displayname"]
    assert after["serviceofferingid"] == vm["serviceofferingid"]


def test_431_bad_deploys_append_nothing(server, api, commands, zone, template, offerings):
    require(commands, "deployVirtualMachine")
    _, _, client = waiting_user(server, api)
    small = offerings["Small Instance"]
    for bad in ("1starts-with-a-digit", "has_underscore", "-dash-first", "dash-last-", "x" * 64):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            deploy(client, zone, template, small, name=bad)
        assert "Invalid name" in api_error(excinfo, 431, 4350)
    unknown = str(uuid.uuid4())
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(zoneid=zone["id"], templateid=unknown,
                                    serviceofferingid=small["id"])
    assert unknown in api_error(excinfo, 431, 4350)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                    serviceofferingid=unknown)
    assert unknown in api_error(excinfo, 431, 4350)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(zoneid=unknown, templateid=template["id"],
                                    serviceofferingid=small["id"])
    assert unknown in api_error(excinfo, 431, 4350)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(zoneid=zone["id"], templateid="not-a-uuid",
                                    serviceofferingid=small["id"])
    api_error(excinfo, 431)
    assert client.listVirtualMachines().get("count", 0) == 0
    if "listEvents" in commands:
        assert all_events(client) == []


# --------------------------------------------------------------------------------------------
# 4. Driver failures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def simulator(api, commands):
    """configureSimulator, with the injections cleared at the end of the test."""
    require(commands, "configureSimulator")
    yield api
    api.configureSimulator(name="StartCommand", value="clear")


def test_driver_failure_at_deploy_puts_the_vm_in_error(
    server, api, commands, simulator, zone, template, offerings, reap
):
    require(commands, "deployVirtualMachine", "startVirtualMachine", "stopVirtualMachine")
    _, _, client = waiting_user(server, api)
    plain = server.client(key=client.key, secret=client.secret)
    before = allocated(api, zone)

    assert_success(simulator.configureSimulator(
        name="StartCommand", value="result:fail", count=1))
    reply = plain.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"],
        serviceofferingid=offerings["Small Instance"]["id"], name=unique("err"))
    assert set(reply) == {"id", "jobid"}, reply
    reap.append(reply["id"])
    job = job_result(plain, reply)
    assert job["jobstatus"] == 2, job
    assert job["jobresultcode"] >= 530 and job["jobresult"]["errorcode"] == job["jobresultcode"]
    assert INJECTED in job["jobresult"]["errortext"], job
    assert job["jobinstancetype"] == "VirtualMachine" and job["jobinstanceid"] == reply["id"]
    vm = vm_of(client, reply["id"])
    assert vm["state"] == "Error" and "hostid" not in vm, vm
    assert allocated(api, zone) == before, "a VM in Error holds no capacity"
    if "listEvents" in commands:
        errors = [e for e in all_events(client) if e["level"] == "ERROR"]
        assert any(INJECTED in e["description"] and e.get("resourceid") == reply["id"]
                   for e in errors), errors
    # An Error VM can only go.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.startVirtualMachine(id=reply["id"])
    api_error(excinfo, 431)
    gone = client.destroyVirtualMachine(id=reply["id"], expunge=True)["virtualmachine"]
    assert gone["state"] == "Expunging", gone
    assert vm_of(client, reply["id"]) is None


def test_driver_failure_at_start_leaves_a_stopped_vm_stopped(
    server, api, commands, simulator, zone, template, offerings, reap
):
    require(commands, "deployVirtualMachine", "startVirtualMachine", "stopVirtualMachine")
    _, _, client = waiting_user(server, api)
    vm = deploy(client, zone, template, offerings["Small Instance"])
    reap.append(vm["id"])
    client.stopVirtualMachine(id=vm["id"])
    before = allocated(api, zone)

    simulator.configureSimulator(name="StartCommand", value="result:fail", count=1)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.startVirtualMachine(id=vm["id"])
    error = excinfo.value.error  # the failed job's result (cs raises "Job failure")
    assert error["errorcode"] >= 530 and INJECTED in error["errortext"], error
    after = vm_of(client, vm["id"])
    assert after["state"] == "Stopped" and "hostid" not in after, after
    assert allocated(api, zone) == before

    # The injection was for one command: the next start works.
    assert client.startVirtualMachine(id=vm["id"])["virtualmachine"]["state"] == "Running"
    client.destroyVirtualMachine(id=vm["id"], expunge=True)
    assert vm_of(client, vm["id"]) is None


# --------------------------------------------------------------------------------------------
# 5. Concurrent deploys against the hosts' capacity
# --------------------------------------------------------------------------------------------


def test_concurrent_deploys_never_overcommit_a_host(
    server, api, commands, zone, template, reap
):
    require(commands, "deployVirtualMachine", "listHosts", "destroyVirtualMachine")
    attempts = 30
    account, _, client = waiting_user(server, api)
    raise_limits(api, commands, account, 0, 2, 8, 9, 10)
    hosts = {h["id"]: h for h in demo_hosts(api, zone)}
    assert hosts, "no enabled host in the demo zone"
    used = allocated(api, zone)

    def fits(offering) -> int:
        """How many VMs of this offering the hosts can still take (all VMs alike: first fit
        places exactly this many, whatever the order)."""
        cpu = offering["cpunumber"] * offering["cpuspeed"]
        total = 0
        for host_id, h in hosts.items():
            free_cpu = h["cpunumber"] * h["cpuspeed"] - used[host_id][0]
            free_mem = h["memorytotal"] // MIB - used[host_id][1]
            total += max(0, min(free_cpu // cpu, free_mem // offering["memory"]))
        return total

    candidates = sorted(
        (o for o in api.listServiceOfferings()["serviceoffering"]
         if not o["iscustomized"] and not o.get("issystem")),
        key=lambda o: -(o["cpunumber"] * o["cpuspeed"]),
    )
    offering = next((o for o in candidates if 1 <= fits(o) < attempts), None)
    assert offering is not None, [(o["name"], fits(o)) for o in candidates]
    expected = fits(offering)
    prefix = unique("conc")

    def one(n: int):
        own = server.client(key=client.key, secret=client.secret, fetch_result=True)
        try:
            return deploy(own, zone, template, offering, name=f"{prefix}-{n}")
        except cs.CloudStackException as e:
            return e

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        outcomes = list(pool.map(one, range(attempts)))
    deployed = [o for o in outcomes if isinstance(o, dict)]
    reap.extend(vm["id"] for vm in deployed)
    failures = [o for o in outcomes if not isinstance(o, dict)]
    for vm in deployed:
        assert vm["state"] == "Running" and vm["hostid"] in hosts, vm
    for e in failures:
        refused(e, 533)
    assert len(deployed) == expected, (expected, len(deployed), failures[:3])

    # No host holds more than it has.
    vms = all_vms(api, zoneid=zone["id"])
    for host_id, h in hosts.items():
        on_host = [v for v in vms if v.get("hostid") == host_id and v["state"] in HOLDING_HOST]
        cpu = sum(v["cpunumber"] * v["cpuspeed"] for v in on_host)
        mem = sum(v["memory"] for v in on_host)
        assert cpu <= h["cpunumber"] * h["cpuspeed"], (h["name"], cpu)
        assert mem <= h["memorytotal"] // MIB, (h["name"], mem)
        assert allocated(api, zone)[host_id] == (cpu, mem), h["name"]
    # Every NIC its own address; nothing left behind by the refused ones.
    mine = client.listVirtualMachines(page=1, pagesize=500).get("virtualmachine", [])
    assert {v["id"] for v in mine} == {v["id"] for v in deployed}
    addresses = [nic["ipaddress"] for v in mine for nic in v["nic"]]
    assert len(addresses) == len(set(addresses)) == len(deployed), addresses
    per_network: dict[str, list[str]] = {}
    for v in vms:
        for nic in v.get("nic", []):
            per_network.setdefault(nic["networkid"], []).append(nic["ipaddress"])
    for network, ips in per_network.items():
        assert len(ips) == len(set(ips)), (network, ips)
    if "listVolumes" in commands:
        assert client.listVolumes().get("count", 0) == len(deployed)

    for vm in deployed:
        client.destroyVirtualMachine(id=vm["id"], expunge=True)
    assert allocated(api, zone) == used


# --------------------------------------------------------------------------------------------
# 6. Jobs survive a SIGKILL
# --------------------------------------------------------------------------------------------


@contextmanager
def own_servers(*args: str):
    """Starts servers of the test's own on one data directory (`*args` after --data-dir and
    --listen): yields `start()`, which launches one more (after the previous one stopped);
    at the end every one still running is killed and the directory removed."""
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-restart-"))
    started: list = []

    def start():
        srv = launch_server(workdir / "data", workdir / "server.log", *args)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def demo_catalog(client):
    """(zone, template, Small Instance, Medium Instance) of a server's demo."""
    [zone] = [z for z in client.listZones()["zone"] if z["name"] == "Demo Zone"]
    [template] = [t for t in client.listTemplates(templatefilter="featured")["template"]
                  if t["name"] == TEMPLATE_NAME]
    offerings = {o["name"]: o for o in client.listServiceOfferings()["serviceoffering"]}
    return zone, template, offerings["Small Instance"], offerings["Medium Instance"]


def test_jobs_waiting_for_the_hypervisor_survive_a_sigkill(commands):
    require(commands, "deployVirtualMachine", "listEvents")
    with own_servers("--demo", "--simulator-latency-ms", "3000") as start:
        first = start()
        api = first.client()
        _, _, client = new_user(first, api)
        zone, template, small, _ = demo_catalog(client)
        began = time.monotonic()
        replies = [
            client.deployVirtualMachine(
                zoneid=zone["id"], templateid=template["id"], serviceofferingid=small["id"],
                name=f"survivor-{n}")
            for n in range(3)
        ]
        pending = [client.queryAsyncJobResult(jobid=r["jobid"])["jobstatus"] for r in replies]
        stop_server(first, signal.SIGKILL)
        killed_after = time.monotonic() - began
        assert pending == [0, 0, 0], pending
        assert killed_after < 3, f"killed {killed_after:.1f} s after the first deploy"

        second = start()
        assert any("3 job(s) were waiting for the hypervisor" in line
                   for line in second.output), second.output
        client = second.client(key=client.key, secret=client.secret)
        jobs = [job_result(client, r, timeout=60) for r in replies]
        for reply, job in zip(replies, jobs):
            assert job["jobstatus"] == 1 and job["jobresultcode"] == 0, job
            result = job["jobresult"]["virtualmachine"]
            assert result["id"] == reply["id"] and result["state"] == "Running", result
            vm = vm_of(client, reply["id"])
            assert vm["state"] == "Running" and vm["hostid"], vm

        # The log explains every VM: one start, completed, in the deploy's job.
        events = all_events(client)
        assert [e for e in events if e["level"] != "INFO"] == []
        vms = client.listVirtualMachines()["virtualmachine"]
        assert {v["id"] for v in vms} == {r["id"] for r in replies}
        for vm in vms:
            [scheduled] = [e for e in events if e["type"] == "VM.CREATE"
                           and e["state"] == "Scheduled" and e.get("resourceid") == vm["id"]]
            starts = [e for e in events if e["type"] == "VM.START"
                      and e["state"] == "Completed" and e.get("resourceid") == vm["id"]]
            assert len(starts) == 1, (vm["name"], starts)
            assert starts[0]["parentid"] == scheduled["id"], starts
            assert not [e for e in events if e.get("resourceid") == vm["id"]
                        and e["type"] in ("VM.STOP", "VM.DESTROY", "VM.EXPUNGE")]
        # Capacity is held once per VM.
        hosts = second.client().listHosts(zoneid=zone["id"])["host"]
        assert sum(h["cpuallocatedvalue"] for h in hosts) == (
            3 * small["cpunumber"] * small["cpuspeed"])
        assert sum(h["memoryallocated"] for h in hosts) == 3 * small["memory"] * MIB

        code = stop_server(second)
        assert code == 0, f"SIGTERM: exit {code}\n{second.log_tail()}"
        assert any(line.startswith("Stopped.") for line in second.output), second.output


def test_vms_running_before_a_restart_are_managed_after_it(commands):
    require(commands, "deployVirtualMachine", "rebootVirtualMachine", "scaleVirtualMachine",
            "stopVirtualMachine", "startVirtualMachine", "migrateVirtualMachine")
    with own_servers("--demo") as start:
        first = start()
        _, _, plain = new_user(first, first.client())
        client = waiting(first, plain)
        zone, template, small, medium = demo_catalog(client)
        vms = [deploy(client, zone, template, small) for _ in range(2)]
        assert stop_server(first) == 0

        second = start()
        client = waiting(second, plain)
        admin = second.client(fetch_result=True)
        for vm in vms:
            assert vm_of(client, vm["id"])["state"] == "Running"
        a, b = vms
        assert client.rebootVirtualMachine(id=a["id"])["virtualmachine"]["state"] == "Running"
        scaled = client.scaleVirtualMachine(id=a["id"], serviceofferingid=medium["id"])
        assert scaled["virtualmachine"]["serviceofferingid"] == medium["id"]
        hosts = [h["id"] for h in admin.listHosts(zoneid=zone["id"])["host"]]
        other = next(h for h in hosts if h != vm_of(client, b["id"])["hostid"])
        moved = admin.migrateVirtualMachine(virtualmachineid=b["id"], hostid=other)
        assert moved["virtualmachine"]["hostid"] == other
        assert client.stopVirtualMachine(id=b["id"])["virtualmachine"]["state"] == "Stopped"
        assert client.startVirtualMachine(id=b["id"])["virtualmachine"]["state"] == "Running"
        for vm in vms:
            admin.destroyVirtualMachine(id=vm["id"], expunge=True)
        assert client.listVirtualMachines().get("count", 0) == 0
        assert stop_server(second) == 0
