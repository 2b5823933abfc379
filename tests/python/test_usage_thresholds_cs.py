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


def test_a_quota_spend_threshold_fires_once_per_day_on_the_days_spend():
    """metric=quota: spend in the account's day, priced as it accrues (open day) and as the
    quota book charged it (closed day); a percentage of a budget; one alert per day."""
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-spend-"))
    try:
        with manual_clock_server(workdir) as srv:
            admin = srv.client(fetch_result=True)
            account, _, client = new_user(srv, admin)
            user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
            zone, template, small = demo(user)
            admin.updateConfiguration(name="quota.enable.service", value="true")
            # May has 31 days: 744 hours, so 744 a month is 1 an hour of running VM.
            admin.quotaTariffCreate(name="running", usagetype=RUNNING_VM, value="744",
                                    startdate="2026-05-01")

            # 50% of a budget of 10: fires at a spend of 5.
            created = user.createUsageThreshold(name="daily-spend", metric="quota", limit="50",
                                                budget="10")["usagethreshold"]
            assert created["metric"] == "quota"
            assert "usagetype" not in created
            assert created["unit"] == "$"
            assert Decimal(created["effectivelimit"]) == 5
            assert Decimal(created["periodquantity"]) == 0

            user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                      serviceofferingid=small["id"], name="spender")
            admin.advanceClock(to="2026-05-04T12:00:00Z")  # 4 hours: 4
            [standing] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
            assert Decimal(standing["periodquantity"]) == 4
            assert standing["exceeded"] is False

            admin.advanceClock(to="2026-05-04T13:30:00Z")  # 5.5 hours: 5.5, over
            raised = eventually(lambda: admin.listAlerts(type=THRESHOLD_ALERT,
                                                         fetch_list=True) or None,
                                "the spend alert")
            assert len(raised) == 1
            assert account["name"] in raised[0]["description"]
            assert "of quota spend" in raised[0]["description"]
            assert "threshold 'daily-spend' is 5" in raised[0]["description"]

            # The next day: the 4th is closed (16 hours charged: 16 in the book, still one
            # alert for it); the 5th so far is 2 hours, under the limit.
            admin.advanceClock(to="2026-05-05T02:00:00Z")
            [standing] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
            assert standing["periodstart"] == "2026-05-05T00:00:00+0000"
            assert Decimal(standing["periodquantity"]) == 2

            def charged_day():
                statement = admin.quotaStatement(account=account["name"],
                                                 domainid=account["domainid"],
                                                 startdate="2026-05-04", enddate="2026-05-04")
                return Decimal(statement["statement"]["totalquota"]) == 16

            eventually(charged_day, "the 4th's charges in the quota book")

            admin.advanceClock(to="2026-05-05T06:00:00Z")  # 6 hours on the 5th: over again
            raised = eventually(lambda: (lambda a: a if len(a) == 2 else None)(
                admin.listAlerts(type=THRESHOLD_ALERT, fetch_list=True)),
                "the second day's spend alert")
            [row] = user.listUsageThresholds(id=created["id"])["usagethreshold"]
            assert (row["alertsraised"], row["openalerts"]) == (2, 2)

            # Spend on one type only: volumes cost nothing here, so it never fires.
            volumes = user.createUsageThreshold(name="volume-spend", metric="quota", limit="0.01",
                                                usagetype=6)["usagethreshold"]
            assert volumes["usagetype"] == 6
            assert Decimal(volumes["periodquantity"]) == 0
            assert volumes["exceeded"] is False
            # -1 drops the type: the spend on every type (8 hours on the 5th so far).
            admin.advanceClock(to="2026-05-05T08:00:00Z")
            every = user.updateUsageThreshold(id=volumes["id"],
                                              usagetype=-1)["usagethreshold"]
            assert "usagetype" not in every
            assert Decimal(every["periodquantity"]) == 8
            # A usage threshold cannot drop its type.
            usage = user.createUsageThreshold(name="hours", usagetype=RUNNING_VM,
                                              limit="100")["usagethreshold"]
            with pytest.raises(CloudStackApiException) as excinfo:
                user.updateUsageThreshold(id=usage["id"], usagetype=-1)
            assert "usagetype is required" in api_error(excinfo, 431)
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
