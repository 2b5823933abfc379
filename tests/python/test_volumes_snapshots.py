"""Volumes, volume snapshots and VM snapshots through the real `cs` client (spec/commands.md
"Volumes, snapshots, limits"): createVolume, attachVolume, detachVolume, resizeVolume,
deleteVolume, listVolumes, uploadVolume, createSnapshot, deleteSnapshot, listSnapshots,
revertSnapshot, createVMSnapshot, deleteVMSnapshot, revertToVMSnapshot, listVMSnapshot.

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_volumes_snapshots.py
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

GIB = 1024 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offerings(api):
    """The demo disk offerings by name: `Small` (5 GiB) and `Custom`."""
    return {o["name"]: o for o in api.listDiskOfferings()["diskoffering"]}


def job_result(client: cs.CloudStack, reply: dict) -> dict:
    """Polls queryAsyncJobResult for an async reply's job; the finished job."""

    def finished():
        job = client.queryAsyncJobResult(jobid=reply["jobid"])
        return job if job["jobstatus"] != 0 else None

    return eventually(finished, f"job {reply['jobid']}", timeout=30)


def volumes(client: cs.CloudStack, **filters) -> list[dict]:
    return client.listVolumes(**filters).get("volume", [])


def user(server, api):
    """A new normal user: (account, user, client that waits for jobs)."""
    account, usr, client = new_user(server, api)
    return account, usr, waiting(server, client)


def deploy(server, api, client: cs.CloudStack, zone) -> dict:
    """A running VM of `client`'s account, from the demo's featured template."""
    [template] = [
        t for t in api.listTemplates(templatefilter="featured")["template"]
        if t["zoneid"] == zone["id"]
    ][:1]
    offering = next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )
    vm = client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
        name=unique("vm"),
    )["virtualmachine"]
    assert vm["state"] == "Running", vm
    return vm


def create(client, zone, offering, **params) -> dict:
    return client.createVolume(
        name=unique("vol"), zoneid=zone["id"], diskofferingid=offering["id"], **params
    )["volume"]


def failed_job(excinfo, status: int) -> str:
    """A job that failed: cs raises with the job's result as `error`."""
    error = excinfo.value.error
    assert error["errorcode"] == status, error
    return error["errortext"]


# --------------------------------------------------------------------------------------------
# Volumes without VMs
# --------------------------------------------------------------------------------------------


def test_create_list_delete_a_volume(server, api, zone, offerings):
    account, _, client = user(server, api)
    plain = server.client(key=client.key, secret=client.secret)
    first = plain.createVolume(
        name="data1", zoneid=zone["id"], diskofferingid=offerings["Small"]["id"]
    )
    # async-create: the id comes with the job id.
    assert set(first) == {"id", "jobid"}, first
    job = job_result(plain, first)
    assert job["jobstatus"] == 1 and job["jobresultcode"] == 0, job
    assert job["jobinstancetype"] == "Volume" and job["jobinstanceid"] == first["id"], job
    volume = job["jobresult"]["volume"]
    assert volume["id"] == first["id"]
    assert volume["name"] == "data1"
    assert volume["type"] == "DATADISK"
    assert volume["size"] == 5 * GIB
    assert volume["state"] == "Allocated"
    assert volume["diskofferingid"] == offerings["Small"]["id"]
    assert volume["diskofferingname"] == "Small"
    assert volume["zoneid"] == zone["id"] and volume["zonename"] == "Demo Zone"
    assert volume["account"] == account["name"] and volume["domainid"] == account["domainid"]
    assert volume["storagetype"] == "shared" and volume["provisioningtype"] == "thin"
    assert volume["destroyed"] is False
    assert "virtualmachineid" not in volume and "deviceid" not in volume
    assert volume["created"]

    listed = client.listVolumes(id=volume["id"])
    assert listed["count"] == 1
    assert listed["volume"][0]["id"] == volume["id"]
    assert [v["id"] for v in volumes(client, type="DATADISK", keyword="data")] == [volume["id"]]
    assert volumes(client, type="ROOT") == []

    assert_success(client.deleteVolume(id=volume["id"]))
    assert volumes(client, id=volume["id"]) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteVolume(id=volume["id"])
    api_error(excinfo, 431, 4350)


def test_create_volume_checks_its_offering_and_size(server, api, zone, offerings):
    _, _, client = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createVolume(name=unique("v"), zoneid=zone["id"])
    assert "disk Offering Id or snapshot Id" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create(client, zone, offerings["Custom"])
    assert "requires a custom size" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create(client, zone, offerings["Small"], size=7)
    assert "does not allow custom size" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create(client, zone, offerings["Custom"], size=5000)
    api_error(excinfo, 431)
    # Nothing was created by the refused calls.
    assert volumes(client) == []


def test_resize_a_custom_volume(server, api, zone, offerings):
    _, _, client = user(server, api)
    volume = create(client, zone, offerings["Custom"], size=2)
    assert volume["size"] == 2 * GIB and volume["diskofferingname"] == "Custom"

    grown = client.resizeVolume(id=volume["id"], size=4)["volume"]
    assert grown["size"] == 4 * GIB
    assert grown["state"] != "Resizing"
    [listed] = volumes(client, id=volume["id"])
    assert listed["size"] == 4 * GIB

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.resizeVolume(id=volume["id"], size=3)
    assert "shrinkok" in api_error(excinfo, 431, 4350)
    shrunk = client.resizeVolume(id=volume["id"], size=3, shrinkok=True)["volume"]
    assert shrunk["size"] == 3 * GIB

    # A fixed-size offering changes the size to its own.
    fixed = client.resizeVolume(id=volume["id"], diskofferingid=offerings["Small"]["id"])["volume"]
    assert fixed["size"] == 5 * GIB and fixed["diskofferingid"] == offerings["Small"]["id"]
    # ... and its size can then only change with another offering.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.resizeVolume(id=volume["id"], size=8)
    api_error(excinfo, 431)
    assert_success(client.deleteVolume(id=volume["id"]))


def test_upload_volume(server, api, zone):
    _, _, client = user(server, api)
    plain = server.client(key=client.key, secret=client.secret)
    first = plain.uploadVolume(
        name="uploaded", url="http://images.example.org/disk.qcow2", format="qcow2",
        zoneid=zone["id"],
    )
    # async but not async-create: only the job id.
    assert set(first) == {"jobid"}, first
    volume = job_result(plain, first)["jobresult"]["volume"]
    assert volume["state"] == "Uploaded"
    assert volume["type"] == "DATADISK"
    assert volume["size"] == GIB  # Ledgerstack downloads nothing: every upload counts 1 GiB
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.uploadVolume(name="x", url="http://a/b", format="EXE", zoneid=zone["id"])
    api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.uploadVolume(name="x", url="gopher://a/b", format="RAW", zoneid=zone["id"])
    api_error(excinfo, 431)
    assert_success(client.deleteVolume(id=volume["id"]))


def test_another_users_volume_is_invisible_and_untouchable(server, api, zone, offerings):
    _, _, owner = user(server, api)
    _, _, other = user(server, api)
    volume = create(owner, zone, offerings["Custom"], size=1)

    assert volumes(other) == []
    assert volumes(other, id=volume["id"]) == []
    assert volumes(other, listall=True) == []
    for call in (
        lambda: other.deleteVolume(id=volume["id"]),
        lambda: other.resizeVolume(id=volume["id"], size=2),
        lambda: other.createSnapshot(volumeid=volume["id"]),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        api_error(excinfo, 531, 4365)

    # The root admin finds it with listall, or by id.
    assert [v["id"] for v in volumes(api, listall=True, id=volume["id"])] == [volume["id"]]
    assert [v["id"] for v in volumes(api, id=volume["id"])] == [volume["id"]]
    assert volumes(owner, id=volume["id"])[0]["size"] == GIB
    assert_success(owner.deleteVolume(id=volume["id"]))


def test_snapshot_of_an_unattached_volume_is_refused(server, api, zone, offerings):
    _, _, client = user(server, api)
    volume = create(client, zone, offerings["Small"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createSnapshot(volumeid=volume["id"])
    assert "attach this volume" in api_error(excinfo, 431)
    assert client.listSnapshots().get("snapshot", []) == []
    assert_success(client.deleteVolume(id=volume["id"]))


# --------------------------------------------------------------------------------------------
# Resource limits
# --------------------------------------------------------------------------------------------


def test_volume_and_primary_storage_limits(server, api, commands, zone, offerings):
    require(commands, "updateResourceLimit")
    account, _, client = user(server, api)
    scope = dict(account=account["name"], domainid=account["domainid"])
    api.updateResourceLimit(resourcetype=2, max=1, **scope)
    first = create(client, zone, offerings["Custom"], size=1)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create(client, zone, offerings["Custom"], size=1)
    assert "volume" in api_error(excinfo, 532, 4280)
    assert len(volumes(client)) == 1

    api.updateResourceLimit(resourcetype=2, max=10, **scope)
    api.updateResourceLimit(resourcetype=10, max=6, **scope)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create(client, zone, offerings["Custom"], size=6)
    assert "primary_storage" in api_error(excinfo, 532, 4280)
    second = create(client, zone, offerings["Small"])  # 1 + 5 = 6 GiB: exactly the limit
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.resizeVolume(id=first["id"], size=2)
    api_error(excinfo, 532, 4280)
    assert volumes(client, id=first["id"])[0]["size"] == GIB
    for v in (first, second):
        assert_success(client.deleteVolume(id=v["id"]))


# --------------------------------------------------------------------------------------------
# Attach and detach
# --------------------------------------------------------------------------------------------


def test_attach_and_detach(server, api, commands, zone, offerings):
    require(commands, "deployVirtualMachine")
    _, _, client = user(server, api)
    vm = deploy(server, api, client, zone)
    [root] = volumes(client, virtualmachineid=vm["id"])
    assert root["type"] == "ROOT" and root["deviceid"] == 0 and root["state"] == "Ready"
    assert root["vmname"] == vm["name"] and root["vmstate"] == "Running"

    data = create(client, zone, offerings["Small"])
    attached = client.attachVolume(id=data["id"], virtualmachineid=vm["id"])["volume"]
    assert attached["virtualmachineid"] == vm["id"]
    assert attached["deviceid"] == 1
    assert attached["state"] == "Ready"
    assert attached["vmname"] == vm["name"]
    assert attached["attached"]
    assert {v["id"] for v in volumes(client, virtualmachineid=vm["id"])} == {root["id"], data["id"]}

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.attachVolume(id=data["id"], virtualmachineid=vm["id"])
    api_error(excinfo, 536, 4375)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteVolume(id=data["id"])
    assert "not attached to any VM" in api_error(excinfo, 536, 4375)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.detachVolume(id=root["id"])
    assert "Root volume detach" in api_error(excinfo, 431)

    # Device ids: the next free one, skipping 3 (the CD-ROM).
    second = create(client, zone, offerings["Small"])
    third = create(client, zone, offerings["Small"])
    assert client.attachVolume(id=second["id"], virtualmachineid=vm["id"])["volume"]["deviceid"] == 2
    assert client.attachVolume(id=third["id"], virtualmachineid=vm["id"])["volume"]["deviceid"] == 4
    fourth = create(client, zone, offerings["Small"])
    for bad in (0, 3, 2):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            client.attachVolume(id=fourth["id"], virtualmachineid=vm["id"], deviceid=bad)
        api_error(excinfo, 431)

    detached = client.detachVolume(id=data["id"])["volume"]
    assert "virtualmachineid" not in detached and "deviceid" not in detached
    # By VM and device id.
    detached = client.detachVolume(virtualmachineid=vm["id"], deviceid=4)["volume"]
    assert detached["id"] == third["id"] and "virtualmachineid" not in detached
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.detachVolume(id=data["id"])
    api_error(excinfo, 431)
    assert {v["id"] for v in volumes(client, virtualmachineid=vm["id"])} == {root["id"], second["id"]}
    assert_success(client.deleteVolume(id=data["id"]))


def test_create_volume_attached_to_a_vm(server, api, commands, zone, offerings):
    require(commands, "deployVirtualMachine")
    _, _, client = user(server, api)
    vm = deploy(server, api, client, zone)
    volume = create(client, zone, offerings["Small"], virtualmachineid=vm["id"])
    assert volume["virtualmachineid"] == vm["id"] and volume["deviceid"] == 1


def test_an_uploaded_volume_attaches(server, api, commands, zone):
    require(commands, "deployVirtualMachine")
    _, _, client = user(server, api)
    vm = deploy(server, api, client, zone)
    uploaded = client.uploadVolume(
        name=unique("up"), url="https://images.example.org/d.vhd", format="VHD",
        zoneid=zone["id"],
    )["volume"]
    assert uploaded["state"] == "Uploaded"
    attached = client.attachVolume(id=uploaded["id"], virtualmachineid=vm["id"])["volume"]
    assert attached["state"] == "Ready" and attached["virtualmachineid"] == vm["id"]
    # Moving it to primary storage is recorded as its VOLUME.CREATE.
    events = api.listEvents(listall=True, type="VOLUME.CREATE", resourceid=uploaded["id"],
                           resourcetype="Volume")
    assert events.get("count", 0) >= 1, events


def test_attach_to_another_users_vm_is_refused(server, api, commands, zone, offerings):
    require(commands, "deployVirtualMachine")
    _, _, owner = user(server, api)
    _, _, other = user(server, api)
    vm = deploy(server, api, owner, zone)
    volume = create(other, zone, offerings["Small"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.attachVolume(id=volume["id"], virtualmachineid=vm["id"])
    api_error(excinfo, 531, 4365)
    [root] = volumes(owner, virtualmachineid=vm["id"])
    assert volumes(other, virtualmachineid=vm["id"]) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.detachVolume(id=root["id"])
    api_error(excinfo, 531, 4365)


# --------------------------------------------------------------------------------------------
# Volume snapshots
# --------------------------------------------------------------------------------------------


def test_volume_snapshots(server, api, commands, zone):
    require(commands, "deployVirtualMachine", "stopVirtualMachine")
    _, _, client = user(server, api)
    _, _, other = user(server, api)
    vm = deploy(server, api, client, zone)
    [root] = volumes(client, virtualmachineid=vm["id"])

    plain = server.client(key=client.key, secret=client.secret)
    first = plain.createSnapshot(volumeid=root["id"], name="before-upgrade")
    assert set(first) == {"id", "jobid"}, first
    snapshot = job_result(plain, first)["jobresult"]["snapshot"]
    assert snapshot["id"] == first["id"]
    assert snapshot["name"] == "before-upgrade"
    assert snapshot["state"] == "BackedUp"
    assert snapshot["volumeid"] == root["id"] and snapshot["volumetype"] == "ROOT"
    assert snapshot["volumename"] == root["name"]
    assert snapshot["snapshottype"] == "MANUAL" and snapshot["intervaltype"] == "MANUAL"
    assert snapshot["physicalsize"] == root["size"] and snapshot["virtualsize"] == root["size"]
    assert snapshot["zoneid"] == zone["id"] and snapshot["revertable"] is True

    unnamed = client.createSnapshot(volumeid=root["id"])["snapshot"]
    assert unnamed["name"].startswith(f"{vm['name']}_{root['name']}_")
    listed = client.listSnapshots(volumeid=root["id"])
    assert listed["count"] == 2
    assert {s["id"] for s in listed["snapshot"]} == {snapshot["id"], unnamed["id"]}

    # Invisible and untouchable for another user.
    assert other.listSnapshots().get("snapshot", []) == []
    assert other.listSnapshots(id=snapshot["id"]).get("snapshot", []) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.deleteSnapshot(id=snapshot["id"])
    api_error(excinfo, 531, 4365)

    # Reverting needs the VM stopped.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.revertSnapshot(id=snapshot["id"])
    assert "shutdown" in api_error(excinfo, 431)
    client.stopVirtualMachine(id=vm["id"])
    reverted = client.revertSnapshot(id=snapshot["id"])["snapshot"]
    assert reverted["id"] == snapshot["id"]

    # A volume from a snapshot has the snapshotted volume's size.
    restored = client.createVolume(name=unique("restored"), snapshotid=snapshot["id"])["volume"]
    assert restored["size"] == root["size"] and restored["type"] == "DATADISK"
    assert restored["zoneid"] == zone["id"]

    assert_success(client.deleteSnapshot(id=unnamed["id"]))
    assert client.listSnapshots(id=unnamed["id"]).get("snapshot", []) == []
    assert [s["id"] for s in client.listSnapshots()["snapshot"]] == [snapshot["id"]]
    assert_success(client.deleteVolume(id=restored["id"]))


def test_snapshot_limit(server, api, commands, zone):
    require(commands, "deployVirtualMachine", "updateResourceLimit")
    account, _, client = user(server, api)
    vm = deploy(server, api, client, zone)
    [root] = volumes(client, virtualmachineid=vm["id"])
    api.updateResourceLimit(
        resourcetype=3, max=1, account=account["name"], domainid=account["domainid"]
    )
    client.createSnapshot(volumeid=root["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createSnapshot(volumeid=root["id"])
    assert "snapshot" in api_error(excinfo, 532, 4280)
    assert client.listSnapshots()["count"] == 1


# --------------------------------------------------------------------------------------------
# VM snapshots
# --------------------------------------------------------------------------------------------


def test_vm_snapshots(server, api, commands, zone, offerings):
    require(commands, "deployVirtualMachine", "stopVirtualMachine")
    _, _, client = user(server, api)
    _, _, other = user(server, api)
    vm = deploy(server, api, client, zone)

    plain = server.client(key=client.key, secret=client.secret)
    first = plain.createVMSnapshot(virtualmachineid=vm["id"], name="v1", snapshotmemory=True)
    assert set(first) == {"id", "jobid"}, first
    snapshot = job_result(plain, first)["jobresult"]["vmsnapshot"]
    assert snapshot["id"] == first["id"]
    assert snapshot["displayname"] == "v1"
    assert snapshot["state"] == "Ready"
    assert snapshot["type"] == "DiskAndMemory"
    assert snapshot["current"] is True
    assert snapshot["virtualmachineid"] == vm["id"]
    assert snapshot["zoneid"] == zone["id"]

    # Items of listVMSnapshot are `vmSnapshot` (camelCase).
    listed = client.listVMSnapshot(virtualmachineid=vm["id"])
    assert listed["count"] == 1 and listed["vmSnapshot"][0]["id"] == snapshot["id"]
    assert client.listVMSnapshot(name="v1")["vmSnapshot"][0]["id"] == snapshot["id"]

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createVMSnapshot(virtualmachineid=vm["id"], name="v1")
    assert "already exists" in api_error(excinfo, 431)

    # A VM with VM snapshots takes no new volumes.
    data = create(client, zone, offerings["Small"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.attachVolume(id=data["id"], virtualmachineid=vm["id"])
    assert "VM snapshots" in api_error(excinfo, 431)

    disk_only = client.createVMSnapshot(virtualmachineid=vm["id"], name="v2")["vmsnapshot"]
    assert disk_only["type"] == "Disk" and disk_only["current"] is True
    [older] = [s for s in client.listVMSnapshot(virtualmachineid=vm["id"])["vmSnapshot"]
               if s["id"] == snapshot["id"]]
    assert older["current"] is False
    # A running VM reverts to a memory snapshot only.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.revertToVMSnapshot(vmsnapshotid=disk_only["id"])
    api_error(excinfo, 431)

    # Another user sees none of it and may not touch it.
    assert other.listVMSnapshot().get("vmSnapshot", []) == []
    assert other.listVMSnapshot(vmsnapshotid=snapshot["id"]).get("vmSnapshot", []) == []
    for call in (
        lambda: other.revertToVMSnapshot(vmsnapshotid=snapshot["id"]),
        lambda: other.deleteVMSnapshot(vmsnapshotid=snapshot["id"]),
        lambda: other.createVMSnapshot(virtualmachineid=vm["id"]),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        api_error(excinfo, 531, 4365)

    reverted = client.revertToVMSnapshot(vmsnapshotid=snapshot["id"])["virtualmachine"]
    assert reverted["id"] == vm["id"]
    [current] = [s for s in client.listVMSnapshot(virtualmachineid=vm["id"])["vmSnapshot"]
                 if s["current"]]
    assert current["id"] == snapshot["id"]

    for s in (snapshot, disk_only):
        assert_success(client.deleteVMSnapshot(vmsnapshotid=s["id"]))
    assert client.listVMSnapshot(virtualmachineid=vm["id"]).get("vmSnapshot", []) == []
    # Without VM snapshots the volume attaches.
    assert client.attachVolume(id=data["id"], virtualmachineid=vm["id"])["volume"]["deviceid"] == 1

    # A stopped VM takes disk snapshots only, and reverts to them.
    client.stopVirtualMachine(id=vm["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createVMSnapshot(virtualmachineid=vm["id"], snapshotmemory=True)
    api_error(excinfo, 431)
    stopped = client.createVMSnapshot(virtualmachineid=vm["id"])["vmsnapshot"]
    assert stopped["type"] == "Disk"
    assert "_VS_" in stopped["name"] and stopped["displayname"] == stopped["name"]
    assert client.revertToVMSnapshot(vmsnapshotid=stopped["id"])["virtualmachine"]["state"] == "Stopped"
