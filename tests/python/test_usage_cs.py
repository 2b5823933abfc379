"""Usage records end to end through `cs` (issue 6): a server of its own on a manual clock, a VM
deployed, stopped, started and destroyed across a New York daylight-saving change, and
`listUsageRecords` compared with hours computed by hand."""
from __future__ import annotations

import shutil
import signal
import tempfile
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import _ledgerstack, launch_server, new_user, server_binary, stop_server

RUNNING_VM, ALLOCATED_VM, VOLUME = 1, 2, 6
START = "2026-03-07T12:00:00Z"


@contextmanager
def manual_clock_server():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-usage-"))
    srv = launch_server(workdir / "data", workdir / "server.log", "--demo", "--clock", "manual",
                        "--clock-start", START)
    try:
        yield srv, workdir / "data"
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def demo(client):
    [zone] = [z for z in client.listZones()["zone"] if z["name"] == "Demo Zone"]
    template = next(t for t in client.listTemplates(templatefilter="featured")["template"]
                    if t["zoneid"] == zone["id"])
    small = next(o for o in client.listServiceOfferings()["serviceoffering"]
                 if o["name"] == "Small Instance")
    return zone, template, small


def hours(records, usagetype, usageid, day):
    """The `rawusage` of the one record of a type and usage id whose period starts on `day`."""
    found = [r for r in records
             if r["usagetype"] == usagetype and r["usageid"] == usageid
             and r["startdate"].startswith(day)]
    assert len(found) <= 1, found
    return Decimal(found[0]["rawusage"]) if found else Decimal(0)


def test_a_vm_across_a_dst_change_bills_the_hours_computed_by_hand():
    with manual_clock_server() as (srv, data_dir):
        admin = srv.client(fetch_result=True)
        admin.updateConfiguration(name="usage.aggregation.timezone", value="America/New_York")
        account, _, client = new_user(srv, admin)
        user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
        zone, template, small = demo(user)

        # The zone change takes effect at the next GMT midnight; New York days follow.
        # 2026-03-08 is New York's spring-forward day: 23 hours, 05:00Z to 04:00Z next day.
        admin.advanceClock(to="2026-03-08T17:00:00Z")  # 13:00 EDT
        vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                       serviceofferingid=small["id"], name="billed")
        vm = vm["virtualmachine"]
        [root] = user.listVolumes(virtualmachineid=vm["id"])["volume"]
        admin.advanceClock(to="2026-03-08T23:00:00Z")  # 19:00 EDT
        user.stopVirtualMachine(id=vm["id"])
        admin.advanceClock(to="2026-03-09T03:00:00Z")  # 23:00 EDT, still March 8 in New York
        user.startVirtualMachine(id=vm["id"])
        admin.advanceClock(to="2026-03-10T14:00:00Z")  # 10:00 EDT on March 10
        admin.destroyVirtualMachine(id=vm["id"], expunge=True)
        # Past the 00:15 GMT run that follows the end of New York's March 10 (04:00Z on the
        # 11th): the scheduler closes the three days by itself.
        admin.advanceClock(to="2026-03-12T01:00:00Z")

        def listed():
            return admin.listUsageRecords(startdate="2026-03-08", enddate="2026-03-10",
                                          accountid=account["id"], fetch_list=True)

        records = wait_for(listed, lambda rs: any(r["startdate"].startswith("2026-03-10")
                                                  for r in rs))
        by_hand = {
            # March 8: running 17:00Z–23:00Z and 03:00Z–04:00Z; allocated from 17:00Z to 04:00Z.
            "2026-03-08": (Decimal(7), Decimal(11)),
            "2026-03-09": (Decimal(24), Decimal(24)),
            # March 10 (EDT): 04:00Z to the destroy at 14:00Z.
            "2026-03-10": (Decimal(10), Decimal(10)),
        }
        for day, (running, allocated) in by_hand.items():
            assert hours(records, RUNNING_VM, vm["id"], day) == running, (day, records)
            assert hours(records, ALLOCATED_VM, vm["id"], day) == allocated, (day, records)
            assert hours(records, VOLUME, root["id"], day) == allocated, (day, records)
        march_8 = next(r for r in records if r["usagetype"] == RUNNING_VM
                       and r["startdate"].startswith("2026-03-08"))
        # The period is shown in the aggregation zone, with its offsets on either side of the
        # change, the end being its last second.
        assert march_8["startdate"] == "2026-03-08T00:00:00-0500", march_8
        assert march_8["enddate"] == "2026-03-08T23:59:59-0400", march_8
        assert march_8["usage"] == "7 Hrs", march_8
        assert march_8["account"] == account["name"] and march_8["accountid"] == account["id"]
        assert march_8["virtualmachineid"] == vm["id"] and march_8["name"] == "billed"
        assert march_8["offeringid"] == small["id"] and march_8["templateid"] == template["id"]

        # Generating again publishes nothing new: the same records, revision 1 each.
        admin.generateUsageRecords(startdate="2026-03-08", enddate="2026-03-11")
        again = listed()
        assert sorted(again, key=key) == sorted(records, key=key)
        assert all(r.get("revision", 1) == 1 for r in again), again

        # Nothing is billed for the days after the destroy.
        later = admin.listUsageRecords(startdate="2026-03-11", enddate="2026-03-11",
                                       accountid=account["id"], type=RUNNING_VM, fetch_list=True)
        assert later == [], later

        code = stop_server(srv, signal.SIGTERM)
        assert code == 0, srv.log_tail()
        # The usage records are part of the read models: a rebuild from the log gives the same
        # digest as the live server's.
        binary = server_binary()
        live = _ledgerstack(binary, "digest", "--data-dir", str(data_dir)).split()[0]
        rebuilt = _ledgerstack(binary, "rebuild", "--data-dir", str(data_dir))
        assert f"digest {live}" in rebuilt, (live, rebuilt)


def key(record):
    return (record["startdate"], record["usagetype"], record["usageid"], record.get("offeringid"))


def wait_for(probe, done, timeout=30.0):
    """Polls `probe()` until `done(result)`: the scheduler sees the clock's jump within ~250 ms."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.parametrize("bad", [{"usageid": "6a5f0c7e-0000-4000-8000-000000000000"}])
def test_usageid_without_type_is_refused(api, bad):
    import cs

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.listUsageRecords(startdate="2026-03-08", enddate="2026-03-08", **bad)
    assert excinfo.value.error["errorcode"] == 431, excinfo.value.error


def test_deleting_an_account_closes_its_usage_at_the_deletion():
    with manual_clock_server() as (srv, _):
        admin = srv.client(fetch_result=True)
        account, _, client = new_user(srv, admin)
        user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
        zone, template, small = demo(user)
        admin.advanceClock(to="2026-03-08T06:00:00Z")
        vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                       serviceofferingid=small["id"])["virtualmachine"]
        admin.advanceClock(to="2026-03-08T12:30:00Z")
        admin.deleteAccount(id=account["id"])
        admin.advanceClock(to="2026-03-11T01:00:00Z")

        def listed():
            return admin.listUsageRecords(startdate="2026-03-08", enddate="2026-03-10",
                                          accountid=account["id"], fetch_list=True)

        records = wait_for(listed, lambda rs: len(rs) > 0)
        running = [r for r in records if r["usagetype"] == RUNNING_VM]
        # 06:00Z to the deletion at 12:30Z (GMT days), and nothing on the days after.
        assert [(r["startdate"][:10], Decimal(r["rawusage"])) for r in running] == [
            ("2026-03-08", Decimal("6.5"))
        ], running
        assert all(r["startdate"].startswith("2026-03-08") for r in records), records
        assert hours(records, ALLOCATED_VM, vm["id"], "2026-03-08") == Decimal("6.5")
        assert stop_server(srv, signal.SIGTERM) == 0, srv.log_tail()
