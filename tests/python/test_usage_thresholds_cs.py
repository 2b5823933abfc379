"""Usage thresholds end to end through `cs` (issue 7): a user watches their own running-VM
hours per day on a manual clock; the alert is raised once in the day the limit is reached,
resolved when the next day starts under it, and a restart raises nothing again."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from cs import CloudStackApiException

from conftest import api_error, eventually, launch_server, new_user, stop_server
from test_usage_cs import demo

RUNNING_VM = 1
THRESHOLD_ALERT = 1003
START = "2026-05-04T08:00:00Z"


@contextmanager
def manual_clock_server(workdir: Path):
    srv = launch_server(workdir / "data", workdir / "server.log", "--demo", "--clock", "manual",
                        "--clock-start", START)
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


def test_a_threshold_fires_once_per_day_and_resolves_the_next_day():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-thresholds-"))
    try:
        with manual_clock_server(workdir) as srv:
            admin = srv.client(fetch_result=True)
            account, _, client = new_user(srv, admin)
            user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
            zone, template, small = demo(user)

            created = user.createUsageThreshold(name="vm-hours", usagetype=RUNNING_VM, limit="5",
                                                notifyresolve=True)["usagethreshold"]
            assert created["accountid"] == account["id"]
            assert created["unit"] == "hours"
            assert Decimal(created["effectivelimit"]) == 5
            assert created["exceeded"] is False

            vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                           serviceofferingid=small["id"],
                                           name="watched")["virtualmachine"]
            admin.advanceClock(to="2026-05-04T12:00:00Z")  # 4 hours running
            [standing] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
            assert Decimal(standing["periodquantity"]) == 4
            assert standing["exceeded"] is False
            assert standing["periodstart"] == "2026-05-04T00:00:00+0000"

            admin.advanceClock(to="2026-05-04T13:30:00Z")  # 5.5 hours: over the limit
            raised = eventually(lambda: admin.listAlerts(type=THRESHOLD_ALERT,
                                                         fetch_list=True) or None,
                                "the threshold alert")
            assert len(raised) == 1
            assert account["name"] in raised[0]["description"]
            assert "threshold 'vm-hours' is 5" in raised[0]["description"]
            [standing] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
            assert Decimal(standing["periodquantity"]) == Decimal("5.5")
            assert standing["exceeded"] is True

            # Later the same day: still one alert for the day.
            admin.advanceClock(to="2026-05-04T20:00:00Z")
            user.stopVirtualMachine(id=vm["id"])
            admin.advanceClock(to="2026-05-05T02:00:00Z")  # the next day, nothing running
            admin.listZones()  # a round trip for the watcher to look at the new day

            def resolved():
                [row] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
                return row if row["openalerts"] == 0 else None

            row = eventually(resolved, "the resolution of the day's alert")
            assert row["alertsraised"] == 1
            assert Decimal(row["periodquantity"]) == 0
            assert len(admin.listAlerts(type=THRESHOLD_ALERT, fetch_list=True)) == 1

        # A restart measures again and raises nothing twice.
        with manual_clock_server(workdir) as srv:
            admin = srv.client(fetch_result=True)
            admin.listZones()
            assert len(admin.listAlerts(type=THRESHOLD_ALERT, fetch_list=True)) == 1
            [row] = admin.listUsageThresholds(listall=True)["usagethreshold"]
            assert (row["alertsraised"], row["openalerts"]) == (1, 0)
            stop_server(srv)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_bad_thresholds_are_refused_and_append_nothing(server, api):
    account, _, user = new_user(server, api)
    user.createUsageThreshold(name="taken", usagetype=RUNNING_VM, limit="10")
    bad = [
        dict(name="x", usagetype=RUNNING_VM, limit="ten"),
        dict(name="x", usagetype=99, limit="10"),
        dict(name="x", limit="10"),
        dict(name="x", usagetype=RUNNING_VM, limit="0"),
        dict(name="x", usagetype=RUNNING_VM, limit="120", budget="500"),
        dict(name="x", usagetype=RUNNING_VM, limit="10", metric="dollars"),
        dict(name="taken", usagetype=RUNNING_VM, limit="10"),
    ]
    for params in bad:
        with pytest.raises(CloudStackApiException) as excinfo:
            user.createUsageThreshold(**params)
        api_error(excinfo, 431)
    assert [t["name"] for t in user.listUsageThresholds()["usagethreshold"]] == ["taken"]

    # Another user can neither see nor change it.
    [mine] = user.listUsageThresholds()["usagethreshold"]
    _, _, stranger = new_user(server, api)
    assert stranger.listUsageThresholds().get("usagethreshold", []) == []
    with pytest.raises(CloudStackApiException) as excinfo:
        stranger.deleteUsageThreshold(id=mine["id"])
    api_error(excinfo, 431)

    budgeted = user.updateUsageThreshold(id=mine["id"], limit="80",
                                         budget="250.00")["usagethreshold"]
    assert Decimal(budgeted["effectivelimit"]) == 200
    user.deleteUsageThreshold(id=mine["id"])
    assert user.listUsageThresholds().get("usagethreshold", []) == []
