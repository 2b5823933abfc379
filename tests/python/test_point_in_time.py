"""Point-in-time state for auditors (issue 8), end to end through `cs` on a manual clock: what
the API answered at three moments is kept, then `ledgerstack state --at` must print exactly
that JSON for each moment, by time and by log position, beside the running server. A backfill
imported afterwards changes what `--at` answers about the past, and `--as-known-at` still
answers what the log knew before it. An export of the same log verifies, and a tampered copy
is caught at the line that was changed."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import requests

from conftest import launch_server, new_user, server_binary, stop_server
from test_usage_backfill import history, vm_facts
from test_usage_cs import demo

START = "2026-03-03T08:00:00Z"
T1, T2, T3 = "2026-03-03T09:00:00Z", "2026-03-03T10:30:00Z", "2026-03-03T12:00:00Z"

# What an auditor compares, as `state` kinds and the API calls the root admin makes for them.
LISTS = {
    "vms": ("listVirtualMachines", {"listall": "true"}),
    "volumes": ("listVolumes", {"listall": "true"}),
    "ips": ("listPublicIpAddresses", {"listall": "true"}),
    "accounts": ("listAccounts", {"listall": "true"}),
}


def ledgerstack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(server_binary()), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def state(data_dir: Path, kind: str, *options: str, params: tuple[str, ...] = ()) -> dict:
    """`ledgerstack state` for `kind`: the body under its `<command>response` key."""
    done = ledgerstack("state", "--data-dir", data_dir, *options, kind, *params)
    assert done.returncode == 0, done.stderr
    [body] = json.loads(done.stdout).values()
    return body


def answers(admin) -> dict:
    """What the API answers the root admin now, for each of LISTS."""
    return {kind: getattr(admin, command)(**params) for kind, (command, params) in LISTS.items()}


def head(srv) -> int:
    """The log's head position, from /readyz."""
    base = srv.endpoint.rsplit("/client/api", 1)[0]
    return requests.get(f"{base}/readyz", timeout=10).json()["head"]


def names(body: dict) -> set[str]:
    return {vm["name"] for vm in body.get("virtualmachine", [])}


def backfill(account, offering, template, zone) -> list[dict]:
    """A VM of `account` that ran from 10:00 to 11:00 on March 3, told to the log later."""
    vm_id = str(uuid.uuid4())
    vm = vm_facts(account, offering, template, zone, vm_id, name="backfilled")
    return history(vm_id, [
        ("VM.CREATE", "2026-03-03T10:00:00.000Z",
         {"vm": vm, "affinity_group_ids": [], "ssh_keypairs": []}),
        ("VM.START", "2026-03-03T10:00:00.000Z", {"vm": vm}),
        ("VM.DESTROY", "2026-03-03T11:00:00.000Z", {"vm": vm, "expunge": True}),
    ])


def test_state_at_a_moment_is_what_the_api_answered_then():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-pit-"))
    data_dir = workdir / "data"
    try:
        srv = launch_server(data_dir, workdir / "server.log", "--demo", "--clock", "manual",
                            "--clock-start", START)
        admin = srv.client(fetch_result=True)
        alice_account, _, alice_keys = new_user(srv, admin)
        alice = srv.client(key=alice_keys.key, secret=alice_keys.secret, fetch_result=True)
        bob_account, _, bob_keys = new_user(srv, admin)
        bob = srv.client(key=bob_keys.key, secret=bob_keys.secret, fetch_result=True)
        zone, template, small = demo(alice)

        # Until 09:00: alice runs a VM with a data disk and a public IP.
        vm_a = alice.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                          serviceofferingid=small["id"],
                                          name="alice-web")["virtualmachine"]
        disk = alice.createVolume(name="alice-data", zoneid=zone["id"], size=10,
                                  diskofferingid=_disk_offering(alice))["volume"]
        alice.attachVolume(id=disk["id"], virtualmachineid=vm_a["id"])
        ip = alice.associateIpAddress(networkid=vm_a["nic"][0]["networkid"])["ipaddress"]
        admin.advanceClock(to=T1)
        seen = {T1: answers(admin)}
        positions = {T1: head(srv)}
        # What happens next happens after the moment: `--at` includes events at it.
        admin.advanceClock(to="2026-03-03T09:01:00Z")

        # Until 10:30: alice stops hers and lets the IP go; bob starts one.
        alice.stopVirtualMachine(id=vm_a["id"])
        alice.detachVolume(id=disk["id"])
        alice.disassociateIpAddress(id=ip["id"])
        bob.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                 serviceofferingid=small["id"], name="bob-batch")
        admin.advanceClock(to=T2)
        seen[T2] = answers(admin)
        positions[T2] = head(srv)
        admin.advanceClock(to="2026-03-03T10:31:00Z")

        # Until 12:00: an admin destroys alice's VM for good; she deletes her disk.
        admin.destroyVirtualMachine(id=vm_a["id"], expunge=True)
        alice.deleteVolume(id=disk["id"])
        admin.advanceClock(to=T3)
        seen[T3] = answers(admin)

        assert names(seen[T1]["vms"]) == {"alice-web"}
        assert names(seen[T2]["vms"]) == {"alice-web", "bob-batch"}
        assert names(seen[T3]["vms"]) == {"bob-batch"}

        # Beside the running server, each moment's state is exactly what the API answered.
        for moment, lists in seen.items():
            for kind, answered in lists.items():
                past = state(data_dir, kind, "--at", moment)
                assert past == answered, (moment, kind, _differences(past, answered))
        for moment, position in positions.items():
            assert state(data_dir, "vms", "--at", str(position)) == seen[moment]["vms"]

        # Who started alice's VM: the VM.START events as of 09:00 name the user.
        started = state(data_dir, "events", "--at", T1, params=("type=VM.START",))["event"]
        assert {e["username"] for e in started} == {alice_account["user"][0]["username"]}

        # Commands that change state are refused, unknown kinds named.
        refused = ledgerstack("state", "--data-dir", data_dir, "deployVirtualMachine")
        assert refused.returncode != 0 and "only list commands" in refused.stderr
        unknown = ledgerstack("state", "--data-dir", data_dir, "gizmos")
        assert unknown.returncode != 0 and "vms" in unknown.stderr

        # A backfill tells the log later that another VM of bob's ran at 10:00-11:00.
        assert stop_server(srv) == 0
        history = workdir / "history.jsonl"
        history.write_text("".join(json.dumps(e) + "\n"
                                   for e in backfill(bob_account, small, template, zone)))
        imported = ledgerstack("import", history, "--data-dir", data_dir)
        assert imported.returncode == 0, imported.stderr

        now_known = state(data_dir, "vms", "--at", T2)
        assert names(now_known) == {"alice-web", "bob-batch", "backfilled"}
        assert state(data_dir, "vms", "--at", T2, "--as-known-at", T3) == seen[T2]["vms"]
        states = {vm["name"]: vm["state"] for vm in now_known["virtualmachine"]}
        assert states["backfilled"] == "Running"
        later = state(data_dir, "vms", "--at", T3)["virtualmachine"]
        assert {vm["name"]: vm["state"] for vm in later} == {"bob-batch": "Running",
                                                           "backfilled": "Destroyed"}

        # `replay` at a moment prints the same digest whichever way the moment is named.
        by_time = ledgerstack("replay", "--data-dir", data_dir, "--at", T1, "--json")
        by_position = ledgerstack("replay", "--data-dir", data_dir, "--at", positions[T1],
                                  "--json")
        assert by_time.returncode == 0 and by_position.returncode == 0
        assert json.loads(by_time.stdout)["counts"]["vms"] == 1
        assert json.loads(by_time.stdout)["digest"] == json.loads(by_position.stdout)["digest"]

        # The log exports and verifies; a changed line is caught where it was changed.
        export = workdir / "export.jsonl"
        done = ledgerstack("export", "--data-dir", data_dir, "-o", export)
        assert done.returncode == 0, done.stderr
        assert ledgerstack("verify", export).returncode == 0
        # An auditor's copy (the export imported into a new directory, no master key) answers
        # the same past.
        copy = workdir / "auditor-copy"
        assert ledgerstack("import", export, "--data-dir", copy).returncode == 0
        assert not (copy / "master.key").exists()
        for kind, answered in seen[T1].items():
            assert state(copy, kind, "--at", T1) == answered, kind
        lines = export.read_text().splitlines(keepends=True)
        victim = next(n for n, line in enumerate(lines) if '"alice-web"' in line)
        lines[victim] = lines[victim].replace('"alice-web"', '"alice-wed"', 1)
        tampered = workdir / "tampered.jsonl"
        tampered.write_text("".join(lines))
        caught = ledgerstack("verify", tampered)
        assert caught.returncode == 1, caught
        # The next line's prev_hash no longer matches: verify names the altered line.
        assert f"line {victim + 1} was altered" in caught.stderr, caught.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _disk_offering(client) -> str:
    offerings = client.listDiskOfferings()["diskoffering"]
    return next(o["id"] for o in offerings if o.get("iscustomized"))


def _differences(past: dict, answered: dict) -> list:
    """The fields that differ between two list bodies, row by row (for the failure message)."""
    [key] = [k for k in answered if k != "count"] or ["count"]
    rows = zip(past.get(key, []), answered.get(key, []))
    return [(row.get("name"), field, row.get(field), then.get(field))
            for row, then in rows for field in set(row) | set(then)
            if row.get(field) != then.get(field)]
