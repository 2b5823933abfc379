"""Backfill, as docs/usage.md tells a billing team to replay a scenario: a JSON Lines file of
historical events (docs/events.md) imported into a stopped server's data directory with
`ledgerstack import`, then usage records for that history through `cs`. The history falls in
periods the server had already closed, so its records are published late: `changedsince`
finds them, and a second import appends nothing."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

from conftest import launch_server, server_binary, stop_server

RUNNING_VM, ALLOCATED_VM = 1, 2


def vm_facts(account, offering, template, zone, vm_id, name="replayed"):
    """The `vm` member of a VM event's data (docs/events.md) for a VM of `account`."""
    return {
        "vm_id": vm_id, "name": name, "instance_name": f"i-2-{name}-VM",
        "account_id": account["id"], "domain_id": account["domainid"], "zone_id": zone["id"],
        "service_offering_id": offering["id"], "template_id": template["id"],
        "hypervisor": "Simulator", "cpu_number": offering["cpunumber"],
        "cpu_speed": offering["cpuspeed"], "memory": offering["memory"],
    }


def history(vm_id, steps):
    """Import lines for one VM's stream: `steps` are (type, occurred_at, data); the event ids
    are derived from the VM id, so importing the same history twice appends nothing."""
    return [
        {"id": str(uuid.uuid5(uuid.UUID(vm_id), f"{n}")), "stream": f"vm-{vm_id}",
         "type": kind, "occurred_at": at, "actor": {}, "level": "INFO", "state": "Completed",
         "data": data}
        for n, (kind, at, data) in enumerate(steps)
    ]


def vm_history(account, offering, template, zone, vm_id):
    """A VM created and started on March 10 at 09:00Z, stopped at 17:00Z, started again on the
    11th at 08:00Z and destroyed on the 12th at 08:00Z."""
    vm = vm_facts(account, offering, template, zone, vm_id)
    return history(vm_id, [
        ("VM.CREATE", "2026-03-10T09:00:00.000Z",
         {"vm": vm, "affinity_group_ids": [], "ssh_keypairs": []}),
        ("VM.START", "2026-03-10T09:00:00.000Z", {"vm": vm}),
        ("VM.STOP", "2026-03-10T17:00:00.000Z", {"vm": vm, "forced": False}),
        ("VM.START", "2026-03-11T08:00:00.000Z", {"vm": vm}),
        ("VM.DESTROY", "2026-03-12T08:00:00.000Z", {"vm": vm, "expunge": True}),
    ])


def ledgerstack(*args):
    return subprocess.run([str(server_binary()), *args], capture_output=True, text=True,
                          timeout=300)


def test_imported_history_is_billed_and_found_by_changedsince():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-backfill-"))
    data_dir = workdir / "data"
    try:
        srv = launch_server(data_dir, workdir / "server.log", "--demo", "--clock", "manual",
                            "--clock-start", "2026-03-20T00:00:00Z")
        admin = srv.client(fetch_result=True)
        [account] = admin.listAccounts(name="admin")["account"]
        [zone] = [z for z in admin.listZones()["zone"] if z["name"] == "Demo Zone"]
        template = admin.listTemplates(templatefilter="featured")["template"][0]
        offering = admin.listServiceOfferings(name="Small Instance")["serviceoffering"][0]
        # The usage run of March 21 closes everything up to then.
        admin.advanceClock(to="2026-03-21T06:00:00Z")
        admin.generateUsageRecords()
        before_import = admin.listUsageServerMetrics()["usageMetrics"]
        assert before_import["lastclosedperiodend"].startswith("2026-03-21"), before_import
        assert stop_server(srv, signal.SIGTERM) == 0, srv.log_tail()

        vm_id = str(uuid.uuid4())
        history = workdir / "history.jsonl"
        history.write_text("".join(
            json.dumps(e) + "\n" for e in vm_history(account, offering, template, zone, vm_id)))
        first = ledgerstack("import", str(history), "--data-dir", str(data_dir))
        assert first.returncode == 0, first.stderr
        again = ledgerstack("import", str(history), "--data-dir", str(data_dir))
        assert again.returncode == 0, again.stderr
        assert "0 appended" in again.stdout + again.stderr, (again.stdout, again.stderr)

        srv = launch_server(data_dir, workdir / "server.log", "--clock", "manual")
        admin = srv.client(fetch_result=True)
        records = admin.listUsageRecords(startdate="2026-03-10", enddate="2026-03-12",
                                         accountid=account["id"], fetch_list=True)
        mine = {(r["usagetype"], r["startdate"][:10]): Decimal(r["rawusage"])
                for r in records if r.get("virtualmachineid") == vm_id}
        assert mine == {
            (RUNNING_VM, "2026-03-10"): Decimal(8), (RUNNING_VM, "2026-03-11"): Decimal(16),
            (RUNNING_VM, "2026-03-12"): Decimal(8),
            (ALLOCATED_VM, "2026-03-10"): Decimal(15), (ALLOCATED_VM, "2026-03-11"): Decimal(24),
            (ALLOCATED_VM, "2026-03-12"): Decimal(8),
        }, records
        # Published when the import reached the usage projection, after the periods had
        # closed: a billing system pulling changes since its last pull gets exactly these.
        changed = admin.listUsageRecords(startdate="2026-03-01", enddate="2026-03-31",
                                         changedsince=before_import["lastsuccessfuljob"],
                                         fetch_list=True)
        assert {r["usageid"] for r in changed} >= {vm_id}, changed
        assert all(r["usageid"] == vm_id or r["usagetype"] not in (RUNNING_VM, ALLOCATED_VM)
                   for r in changed), changed
        assert stop_server(srv, signal.SIGTERM) == 0, srv.log_tail()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
