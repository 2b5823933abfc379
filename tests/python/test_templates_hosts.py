"""Templates, ISOs, OS types and infrastructure through the real `cs` client (spec/commands.md
"Infrastructure" and "Templates and ISOs"): addHost, listHosts, listClusters, listPods,
updateHost, prepareHostForMaintenance, cancelHostMaintenance, listCapacity, listOsTypes,
registerTemplate, listTemplates, updateTemplate, deleteTemplate, copyTemplate, createTemplate,
registerIso, listIsos, deleteIso, attachIso, detachIso; and the demo seed they start from.

Hosts added here are added Disabled and left Disabled, so that no other suite's VM is placed
on them (placement uses Enabled hosts only).

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_templates_hosts.py
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
MIB = 1024 * 1024
DEMO_TEMPLATE = "CentOS 5.6 (64-bit) no GUI (Simulator)"
URL = "http://images.example.org/template.qcow2"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(api, zone):
    [pod] = [p for p in api.listPods(zoneid=zone["id"])["pod"] if p["name"] == "demo-pod"]
    return pod


@pytest.fixture(scope="module")
def os_types(api):
    """OS types by description."""
    return {o["description"]: o for o in api.listOsTypes()["ostype"]}


@pytest.fixture(scope="module")
def second_zone(api):
    return api.createZone(
        name=unique("zone"), networktype="Advanced", dns1="8.8.8.8", internaldns1="10.0.0.1",
    )["zone"]


def user(server, api):
    """A new normal user: (account, client, client that waits for jobs)."""
    account, _, client = new_user(server, api)
    return account, client, waiting(server, client)


def templates(client, **params) -> list[dict]:
    return client.listTemplates(**params).get("template", [])


def register(client, zone, os_types, **params) -> dict:
    params.setdefault("name", unique("tmpl"))
    reply = client.registerTemplate(
        displaytext=params["name"], url=URL, format="QCOW2", hypervisor="Simulator",
        ostypeid=os_types["Ubuntu 22.04 LTS"]["id"], zoneid=zone["id"], **params,
    )["template"]
    assert len(reply) == 1, reply
    return reply[0]


def add_host(api, zone, pod, **params) -> dict:
    """A Disabled simulator host in the demo pod (kept out of other suites' placements)."""
    name = unique("h")
    reply = api.addHost(
        zoneid=zone["id"], podid=pod["id"], clustername="ledgerstack-tests",
        hypervisor="Simulator", url=f"http://sim/c9/{name}", username="root",
        password="password", allocationstate="Disabled", **params,
    )
    assert reply["count"] == 1, reply
    [host] = reply["host"]
    return host


def deploy(server, api, client: cs.CloudStack, zone) -> dict:
    """A running VM of `client`'s account, from the demo template."""
    [template] = [t for t in templates(api, templatefilter="featured", zoneid=zone["id"])
                  if t["name"] == DEMO_TEMPLATE]
    offering = next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )
    vm = client.deployVirtualMachine(
        zoneid=zone["id"], templateid=template["id"], serviceofferingid=offering["id"],
        name=unique("vm"),
    )["virtualmachine"]
    assert vm["state"] == "Running", vm
    return vm


def job_result(client: cs.CloudStack, reply: dict) -> dict:
    """Polls queryAsyncJobResult for an async reply's job; the finished job."""

    def finished():
        job = client.queryAsyncJobResult(jobid=reply["jobid"])
        return job if job["jobstatus"] != 0 else None

    return eventually(finished, f"job {reply['jobid']}", timeout=30)


def failed_job(excinfo, status: int) -> str:
    """A job that failed (or a request refused before its job): the error's text."""
    error = excinfo.value.error
    assert error["errorcode"] == status, error
    return error["errortext"]


# --------------------------------------------------------------------------------------------
# The demo seed
# --------------------------------------------------------------------------------------------


def test_demo_seed_has_a_pod_a_cluster_and_two_up_hosts(api, zone, pod):
    assert pod["gateway"] == "192.168.0.1"
    assert pod["netmask"] == "255.255.255.0"
    assert pod["startip"] == "192.168.0.10"
    assert pod["zoneid"] == zone["id"] and pod["zonename"] == "Demo Zone"
    assert pod["allocationstate"] == "Enabled"

    [cluster] = api.listClusters(name="demo-cluster")["cluster"]
    assert cluster["hypervisortype"] == "Simulator"
    assert cluster["podid"] == pod["id"] and cluster["zoneid"] == zone["id"]
    assert cluster["managedstate"] == "Managed"
    assert cluster["allocationstate"] == "Enabled"

    hosts = {h["name"]: h for h in api.listHosts(clusterid=cluster["id"])["host"]}
    assert set(hosts) == {"demo-host-1", "demo-host-2"}
    for host in hosts.values():
        assert host["state"] == "Up" and host["type"] == "Routing"
        assert host["resourcestate"] == "Enabled"
        assert host["hypervisor"] == "Simulator"
        assert host["cpunumber"] == 8 and host["cpuspeed"] == 2000
        assert host["memorytotal"] == 16384 * MIB
        assert host["podname"] == "demo-pod" and host["clustername"] == "demo-cluster"
        assert host["zonename"] == "Demo Zone"
        assert host["cpuallocated"].endswith("%") and host["cpuused"] == "0%"
        assert host["version"] == "4.22.0.0"
        assert host["islocalstorageactive"] is False
    # Filters narrow, and the only host type is Routing.
    assert api.listHosts(type="Storage").get("count", 0) == 0
    assert api.listHosts(name="demo-host-2")["host"][0]["name"] == "demo-host-2"


def test_demo_seed_has_a_featured_simulator_template(server, api, zone, os_types):
    [template] = [t for t in templates(api, templatefilter="featured")
                  if t["name"] == DEMO_TEMPLATE]
    assert template["hypervisor"] == "Simulator"
    assert template["format"] == "VHD"
    assert template["ostypename"] == "CentOS 5.6 (64-bit)"
    assert template["ostypeid"] == os_types["CentOS 5.6 (64-bit)"]["id"]
    assert template["displaytext"] == DEMO_TEMPLATE
    assert template["size"] == 2 * GIB
    assert template["ispublic"] is True and template["isfeatured"] is True
    assert template["isready"] is True and template["status"] == "Download Complete"
    assert template["zoneid"] == zone["id"] and template["zonename"] == "Demo Zone"
    assert template["account"] == "admin"
    assert template["templatetype"] == "BUILTIN"
    # A user sees it as featured and as executable.
    _, client, _ = user(server, api)
    for filter_ in ("featured", "executable"):
        assert template["id"] in {t["id"] for t in templates(client, templatefilter=filter_)}
    assert template["id"] not in {t["id"] for t in templates(client, templatefilter="self")}


def test_list_os_types(api):
    listed = api.listOsTypes()
    assert listed["count"] >= 20
    by_name = {o["description"]: o for o in listed["ostype"]}
    for name in ("CentOS 5.6 (64-bit)", "Ubuntu 22.04 LTS", "Windows Server 2022 (64-bit)",
                 "Debian GNU/Linux 12 (64-bit)", "Other Linux (64-bit)", "Other (64-bit)"):
        assert name in by_name
    centos = by_name["CentOS 5.6 (64-bit)"]
    assert centos["oscategoryname"] == "CentOS" and centos["isuserdefined"] is False
    assert api.listOsTypes(id=centos["id"])["ostype"] == [centos]
    same_category = api.listOsTypes(oscategoryid=centos["oscategoryid"])["ostype"]
    assert {o["oscategoryname"] for o in same_category} == {"CentOS"}
    assert api.listOsTypes(description="Ubuntu 22.04 LTS")["count"] == 1
    assert {o["description"] for o in api.listOsTypes(keyword="windows")["ostype"]} >= {
        "Windows Server 2019 (64-bit)", "Windows Server 2022 (64-bit)"}


# --------------------------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------------------------


def test_add_host_then_list_it(api, zone, pod):
    host = add_host(api, zone, pod, cpunumber=4, cpuspeed=1500, memory=4096, hosttags="ssd,gpu")
    assert host["state"] == "Up" and host["resourcestate"] == "Disabled"
    assert host["cpunumber"] == 4 and host["cpuspeed"] == 1500
    assert host["memorytotal"] == 4096 * MIB and host["memoryallocated"] == 0
    assert host["hosttags"] == "ssd,gpu"
    assert host["clustername"] == "ledgerstack-tests" and host["podid"] == pod["id"]
    [listed] = api.listHosts(id=host["id"])["host"]
    assert listed["name"] == host["name"]
    # The cluster was created by name, once: the next host joins it.
    [cluster] = api.listClusters(name="ledgerstack-tests")["cluster"]
    assert cluster["hypervisortype"] == "Simulator" and cluster["clustertype"] == "CloudManaged"
    second = add_host(api, zone, pod)
    assert second["clusterid"] == cluster["id"]
    assert second["cpunumber"] == 8 and second["cpuspeed"] == 2000
    assert second["memorytotal"] == 16384 * MIB
    assert api.listClusters(name="ledgerstack-tests")["count"] == 1
    assert {h["id"] for h in api.listHosts(clusterid=cluster["id"])["host"]} == {
        host["id"], second["id"]}

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.addHost(zoneid=zone["id"], podid=pod["id"], clusterid=cluster["id"],
                    hypervisor="Simulator", url=f"http://sim/c9/{host['name']}")
    assert "already exists" in api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.addHost(zoneid=zone["id"], podid=pod["id"], clusterid=cluster["id"],
                    hypervisor="KVM", url="http://10.1.1.1")
    assert api_error(excinfo, 431) == (
        "Hypervisor type KVM is not supported by Ledgerstack: use Simulator")
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.addHost(zoneid=zone["id"], podid=zone["id"], clustername="x",
                    hypervisor="Simulator", url="http://sim/x")
    assert "pod" in api_error(excinfo, 431)


def test_update_host_disables_and_enables(server, api, zone, pod):
    host = add_host(api, zone, pod)
    enabled = api.updateHost(id=host["id"], allocationstate="Enable")["host"]
    assert enabled["resourcestate"] == "Enabled"
    assert [h["id"] for h in api.listHosts(id=host["id"], resourcestate="Enabled")["host"]] == [
        host["id"]]
    disabled = api.updateHost(id=host["id"], allocationstate="Disable", hosttags="fast")["host"]
    assert disabled["resourcestate"] == "Disabled" and disabled["hosttags"] == "fast"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateHost(id=host["id"], allocationstate="Maintenance")
    api_error(excinfo, 431)


def test_host_maintenance_prepare_and_cancel(server, api, zone, pod):
    host = add_host(api, zone, pod)
    admin = waiting(server, api)
    plain = api.prepareHostForMaintenance(id=host["id"])
    assert set(plain) == {"jobid"}, plain
    result = job_result(api, plain)
    assert result["jobstatus"] == 1, result
    assert result["jobinstancetype"] == "Host" and result["jobinstanceid"] == host["id"]
    assert result["jobresult"]["host"]["resourcestate"] == "Maintenance"
    assert api.listHosts(id=host["id"])["host"][0]["resourcestate"] == "Maintenance"

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.prepareHostForMaintenance(id=host["id"])
    failed_job(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateHost(id=host["id"], allocationstate="Enable")
    assert "maintenance" in api_error(excinfo, 431)

    cancelled = admin.cancelHostMaintenance(id=host["id"])["host"]
    assert cancelled["resourcestate"] == "Enabled"
    api.updateHost(id=host["id"], allocationstate="Disable")
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.cancelHostMaintenance(id=host["id"])
    failed_job(excinfo, 431)


def test_maintenance_is_refused_while_vms_run_on_the_host(server, api, commands, zone):
    require(commands, "deployVirtualMachine", "stopVirtualMachine")
    _, client, waiting_client = user(server, api)
    vm = deploy(server, api, waiting_client, zone)
    [placed] = api.listVirtualMachines(id=vm["id"], listall=True)["virtualmachine"]
    admin = waiting(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        admin.prepareHostForMaintenance(id=placed["hostid"])
    assert "has running VMs" in failed_job(excinfo, 536)
    waiting_client.stopVirtualMachine(id=vm["id"])


def test_list_capacity_totals_are_the_sum_of_the_hosts(api, zone, pod):
    hosts = api.listHosts(zoneid=zone["id"], resourcestate="Enabled")["host"]
    capacity = {c["type"]: c for c in api.listCapacity(zoneid=zone["id"])["capacity"]}
    assert set(capacity) == {0, 1}
    memory, cpu = capacity[0], capacity[1]
    assert memory["name"] == "MEMORY" and cpu["name"] == "CPU"
    assert memory["capacitytotal"] == sum(h["memorytotal"] for h in hosts)
    assert memory["capacityused"] == sum(h["memoryallocated"] for h in hosts)
    assert cpu["capacitytotal"] == sum(h["cpunumber"] * h["cpuspeed"] for h in hosts)
    assert cpu["capacityused"] == sum(h["cpuallocatedvalue"] for h in hosts)
    for c in (memory, cpu):
        assert c["zoneid"] == zone["id"] and c["zonename"] == "Demo Zone"
        assert c["capacityallocated"] == c["capacityused"]
        # CloudStack's DecimalFormat("##.##"): at most two decimals, no trailing zeros.
        expected = f"{100.0 * c['capacityused'] / c['capacitytotal']:.2f}".rstrip("0").rstrip(".")
        assert c["percentused"] == expected
    # Only type 1, and per pod when asked by pod.
    only_cpu = api.listCapacity(zoneid=zone["id"], type=1)["capacity"]
    assert [c["type"] for c in only_cpu] == [1]
    by_pod = api.listCapacity(podid=pod["id"])["capacity"]
    assert {c["podid"] for c in by_pod} == {pod["id"]}
    assert {c["podname"] for c in by_pod} == {"demo-pod"}


def test_users_cannot_call_the_infrastructure_commands(server, api, zone, pod):
    _, client, _ = user(server, api)
    for call in (
        lambda: client.addHost(zoneid=zone["id"], podid=pod["id"], clustername="c",
                               hypervisor="Simulator", url="http://sim/u"),
        lambda: client.listHosts(),
        lambda: client.listCapacity(),
        lambda: client.listPods(),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            call()
        assert "is not available for user" in api_error(excinfo, 432, 4555)


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


def test_register_template_and_the_filters_for_a_user_and_an_admin(server, api, zone, os_types):
    _, client, _ = user(server, api)
    _, other, _ = user(server, api)
    raw = client.registerTemplate(
        name=unique("tmpl"), displaytext="mine", url=URL, format="qcow2",
        hypervisor="Simulator", ostypeid=os_types["Ubuntu 22.04 LTS"]["id"],
        zoneid=zone["id"], isfeatured=True,
    )
    assert raw["count"] == 1
    [private] = raw["template"]
    # A user's template is never featured; it is ready at once.
    assert private["isfeatured"] is False and private["ispublic"] is False
    assert private["format"] == "QCOW2" and private["ostypename"] == "Ubuntu 22.04 LTS"
    assert private["isready"] is True and private["size"] == 2 * GIB
    assert private["templatetype"] == "USER" and private["crossZones"] is False
    public = register(client, zone, os_types, ispublic=True)
    demo = next(t for t in templates(api, templatefilter="featured") if t["name"] == DEMO_TEMPLATE)

    def ids(c, f):
        return {t["id"] for t in templates(c, templatefilter=f)}

    assert ids(client, "self") == {private["id"], public["id"]}
    assert ids(client, "selfexecutable") == {private["id"], public["id"]}
    assert {private["id"], public["id"], demo["id"]} <= ids(client, "executable")
    assert demo["id"] in ids(client, "featured")
    assert not {private["id"], public["id"]} & ids(client, "featured")
    assert public["id"] in ids(client, "community") and private["id"] not in ids(client, "community")
    assert ids(client, "sharedexecutable") == set()
    # Another user sees the public one, not the private one.
    assert public["id"] in ids(other, "executable") and private["id"] not in ids(other, "executable")
    assert ids(other, "self") == set()
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.listTemplates(templatefilter="all", id=private["id"])
    assert api_error(excinfo, 431) == "Filter all can be specified by admin only"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.listTemplates(templatefilter="executable", id=private["id"])
    api_error(excinfo, 531, 4365)
    # The root admin: self is their own; all is everything.
    assert not {private["id"], public["id"]} & ids(api, "self")
    assert {private["id"], public["id"], demo["id"]} <= ids(api, "all")
    assert [t["id"] for t in templates(api, templatefilter="self", id=private["id"])] == [
        private["id"]]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.listTemplates(templatefilter="mine")
    api_error(excinfo, 431)


def test_register_template_checks_its_parameters(server, api, zone, os_types):
    _, client, _ = user(server, api)
    base = dict(name=unique("bad"), displaytext="bad", url=URL, format="QCOW2",
                hypervisor="Simulator", zoneid=zone["id"])
    for change, status in (
        (dict(format="EXE"), 431),
        (dict(hypervisor="KVM"), 431),
        (dict(url="ftp://example.org/x.qcow2"), 431),
        (dict(ostypeid=zone["id"]), 431),
        (dict(zoneid="-1"), 431),  # all zones: admins only
        (dict(passwordenabled=True), 431),
    ):
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            client.registerTemplate(**{**base, **change})
        api_error(excinfo, status)
    assert templates(client, templatefilter="self") == []


def test_cross_zone_template_is_listed_in_every_zone(server, api, zone, second_zone, os_types):
    admin = waiting(server, api)
    reply = api.registerTemplate(
        name=unique("xz"), displaytext="every zone", url=URL, format="RAW",
        hypervisor="Simulator", zoneid="-1", ispublic=True,
    )
    zones = {z["id"] for z in api.listZones()["zone"]}
    assert reply["count"] == len(zones) >= 2
    assert {t["zoneid"] for t in reply["template"]} == zones
    assert all(t["crossZones"] is True for t in reply["template"])
    assert all(t["ostypename"] == "Other (64-bit)" for t in reply["template"])
    template_id = reply["template"][0]["id"]
    assert len(templates(api, templatefilter="all", id=template_id, showunique=True)) == 1
    assert_success(admin.deleteTemplate(id=template_id, zoneid=zone["id"]))
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.listTemplates(templatefilter="all", id=template_id)
    api_error(excinfo, 431)


def test_update_template(server, api, zone, os_types):
    _, client, _ = user(server, api)
    _, other, _ = user(server, api)
    template = register(client, zone, os_types)
    updated = client.updateTemplate(
        id=template["id"], name="renamed", displaytext="new text",
        ostypeid=os_types["Debian GNU/Linux 12 (64-bit)"]["id"], format="RAW",
    )["template"]
    assert updated["id"] == template["id"]
    assert updated["name"] == "renamed" and updated["displaytext"] == "new text"
    assert updated["ostypename"] == "Debian GNU/Linux 12 (64-bit)" and updated["format"] == "RAW"
    [listed] = templates(client, templatefilter="self", id=template["id"])
    assert listed["name"] == "renamed" and listed["zoneid"] == zone["id"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.updateTemplate(id=template["id"], ostypeid=zone["id"])
    api_error(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.updateTemplate(id=template["id"], name="stolen")
    api_error(excinfo, 531, 4365)


def test_copy_template_to_a_second_zone_and_delete_per_zone(server, api, zone, second_zone,
                                                            os_types):
    _, client, waiting_client = user(server, api)
    template = register(client, zone, os_types)
    plain = client.copyTemplate(id=template["id"], destzoneid=second_zone["id"])
    assert set(plain) == {"jobid"}, plain  # async, not async-create
    copied = job_result(client, plain)
    assert copied["jobstatus"] == 1, copied
    assert copied["jobresult"]["template"]["zoneid"] == second_zone["id"]
    listed = templates(client, templatefilter="self", id=template["id"])
    assert {t["zoneid"] for t in listed} == {zone["id"], second_zone["id"]}
    assert [t["zoneid"] for t in templates(client, templatefilter="self",
                                           zoneid=second_zone["id"])] == [second_zone["id"]]

    assert_success(waiting_client.deleteTemplate(id=template["id"], zoneid=second_zone["id"]))
    assert [t["zoneid"] for t in templates(client, templatefilter="self", id=template["id"])] == [
        zone["id"]]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.copyTemplate(id=template["id"], destzoneid=zone["id"])
    failed_job(excinfo, 431)  # same source and destination
    assert_success(waiting_client.deleteTemplate(id=template["id"]))
    assert templates(client, templatefilter="self") == []


def test_delete_template(server, api, zone, os_types):
    _, client, waiting_client = user(server, api)
    demo = next(t for t in templates(api, templatefilter="featured") if t["name"] == DEMO_TEMPLATE)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.deleteTemplate(id=demo["id"])
    assert failed_job(excinfo, 531)
    assert templates(api, templatefilter="featured", id=demo["id"])
    template = register(client, zone, os_types)
    plain = client.deleteTemplate(id=template["id"])
    assert set(plain) == {"jobid"}
    job = job_result(client, plain)
    assert job["jobstatus"] == 1 and job["jobresult"] == {"success": True}, job
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.listTemplates(templatefilter="self", id=template["id"])
    assert api_error(excinfo, 431) == "Please specify a valid template ID."


def test_template_limit(server, api, commands, zone, os_types):
    require(commands, "updateResourceLimit")
    account, client, _ = user(server, api)
    api.updateResourceLimit(resourcetype=4, max=1, account=account["name"],
                            domainid=account["domainid"])
    register(client, zone, os_types)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        register(client, zone, os_types)
    assert "template" in api_error(excinfo, 532, 4280)
    assert len(templates(client, templatefilter="self")) == 1


def test_delete_template_in_use_needs_forced_and_create_template_from_a_volume(
        server, api, commands, zone, os_types):
    require(commands, "deployVirtualMachine", "stopVirtualMachine", "listVolumes")
    _, client, waiting_client = user(server, api)
    base = register(client, zone, os_types, ispublic=False)
    offering = next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )
    vm = waiting_client.deployVirtualMachine(
        zoneid=zone["id"], templateid=base["id"], serviceofferingid=offering["id"],
        name=unique("vm"),
    )["virtualmachine"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.deleteTemplate(id=base["id"])
    assert vm["name"] in failed_job(excinfo, 536)

    [root] = client.listVolumes(virtualmachineid=vm["id"], type="ROOT")["volume"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.createTemplate(name=unique("img"), ostypeid=base["ostypeid"],
                                      volumeid=root["id"])
    assert "Stopped" in failed_job(excinfo, 431)
    waiting_client.stopVirtualMachine(id=vm["id"])
    plain = client.createTemplate(name=unique("img"), displaytext="from root",
                                  ostypeid=os_types["CentOS 8"]["id"], volumeid=root["id"])
    assert set(plain) == {"id", "jobid"}, plain  # async-create
    [created] = templates(client, templatefilter="self", id=plain["id"])
    assert created["size"] == root["size"] and created["zoneid"] == zone["id"]
    assert created["ostypename"] == "CentOS 8" and created["format"] == "QCOW2"
    assert created["sourcetemplateid"] == base["id"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTemplate(name=unique("img"), ostypeid=base["ostypeid"])
    api_error(excinfo, 431)

    assert_success(waiting_client.deleteTemplate(id=base["id"], forced=True))
    assert_success(waiting_client.deleteTemplate(id=plain["id"]))


# --------------------------------------------------------------------------------------------
# ISOs
# --------------------------------------------------------------------------------------------


def register_iso(client, zone, os_types, **params) -> dict:
    reply = client.registerIso(
        name=params.pop("name", unique("iso")), displaytext="an iso",
        url="http://images.example.org/boot.iso", zoneid=zone["id"],
        ostypeid=os_types["Other Linux (64-bit)"]["id"], **params,
    )
    assert reply["count"] == 1, reply
    return reply["iso"][0]


def test_register_list_and_delete_an_iso(server, api, zone, os_types):
    _, client, waiting_client = user(server, api)
    _, other, waiting_other = user(server, api)
    iso = register_iso(client, zone, os_types)
    assert iso["bootable"] is True and iso["isready"] is True
    assert iso["format"] == "ISO" and iso["ostypename"] == "Other Linux (64-bit)"
    assert iso["size"] == 2 * GIB and iso["zoneid"] == zone["id"]
    assert [i["id"] for i in client.listIsos()["iso"]] == [iso["id"]]  # selfexecutable
    assert [i["id"] for i in client.listIsos(isofilter="self", bootable=True)["iso"]] == [
        iso["id"]]
    assert client.listIsos(isofilter="self", bootable=False).get("iso", []) == []
    assert other.listIsos(isofilter="executable").get("iso", []) == [] or iso["id"] not in {
        i["id"] for i in other.listIsos(isofilter="executable")["iso"]}
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_other.deleteIso(id=iso["id"])
    failed_job(excinfo, 531)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.registerIso(name=unique("iso"), displaytext="x",
                           url="http://images.example.org/x.iso", zoneid=zone["id"])
    assert "ostypeid" in api_error(excinfo, 431)  # bootable needs an OS type
    plain = register_iso(client, zone, os_types, bootable=False)
    assert plain["bootable"] is False
    assert_success(waiting_client.deleteIso(id=iso["id"]))
    assert_success(waiting_client.deleteIso(id=plain["id"]))
    assert client.listIsos(isofilter="self").get("iso", []) == []


def test_attach_and_detach_an_iso(server, api, commands, zone, os_types):
    require(commands, "deployVirtualMachine")
    _, client, waiting_client = user(server, api)
    iso = register_iso(client, zone, os_types)
    vm = deploy(server, api, waiting_client, zone)
    attached = waiting_client.attachIso(id=iso["id"], virtualmachineid=vm["id"])["virtualmachine"]
    assert attached["id"] == vm["id"] and attached["isoid"] == iso["id"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.attachIso(id=iso["id"], virtualmachineid=vm["id"])
    assert "already attached" in failed_job(excinfo, 431)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.deleteIso(id=iso["id"])
    failed_job(excinfo, 536)
    detached = waiting_client.detachIso(virtualmachineid=vm["id"])["virtualmachine"]
    assert detached["id"] == vm["id"] and not detached.get("isoid")
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting_client.detachIso(virtualmachineid=vm["id"])
    failed_job(excinfo, 431)
    assert_success(waiting_client.deleteIso(id=iso["id"]))
