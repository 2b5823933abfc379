"""Quota end to end through `cs` (issue 7): tariffs, credits, VMs and their volumes billed over
New York days across the spring-forward and the fall-back changes, quotaStatement / quotaBalance
equal to decimals computed by hand, the QUOTA_LOW / QUOTA_EMPTY alerts raised once each, and an
account locked below zero under enforcement and unlocked by credits."""
from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from cs import CloudStackApiException

from conftest import (_ledgerstack, api_error, eventually, launch_server, new_user,
                      server_binary, stop_server)
from test_usage_cs import demo, manual_clock_server, wait_for

RUNNING_VM, ALLOCATED_VM, VOLUME = 1, 2, 6
QUOTA_LOW, QUOTA_EMPTY = 1001, 1002
EIGHT = Decimal("0.00000001")


def test_charges_credits_and_statement_match_hand_computed_decimals():
    with manual_clock_server() as (srv, _data_dir):
        admin = srv.client(fetch_result=True)
        account, _, client = new_user(srv, admin)
        user = srv.client(key=client.key, secret=client.secret, fetch_result=True)

        # Disabled by default: only quotaIsEnabled answers.
        assert admin.quotaIsEnabled()["isenabled"] == {"isenabled": False}
        with pytest.raises(Exception) as e:
            admin.quotaTariffList()
        assert "quota.enable.service" in api_error(e, 534)

        admin.updateConfiguration(name="quota.enable.service", value="true")
        admin.updateConfiguration(name="usage.aggregation.timezone", value="America/New_York")
        assert admin.quotaIsEnabled()["isenabled"] == {"isenabled": True}

        # March has 31 days: 744 hours, so 744/month is 1 an hour, 372 is 0.5, 7.44 is 0.01.
        for name, usagetype, value in [("running", RUNNING_VM, "744"),
                                       ("allocated", ALLOCATED_VM, "372"),
                                       ("volume", VOLUME, "7.44")]:
            t = admin.quotaTariffCreate(name=name, usagetype=usagetype, value=value,
                                        startdate="2026-03-01")["quotatariff"]
            assert t["tariffValue"] == value and t["usageType"] == usagetype, t
        # Bad input appends nothing.
        with pytest.raises(Exception) as e:
            admin.quotaTariffCreate(name="rule", usagetype=1, value="1", activationrule="true")
        assert "activation" in api_error(e, 431)
        with pytest.raises(Exception) as e:
            admin.quotaTariffCreate(name="bad", usagetype=17, value="1")
        api_error(e, 431)
        with pytest.raises(Exception) as e:
            admin.quotaTariffCreate(name="nan", usagetype=1, value="1.2.3")
        api_error(e, 431)
        with pytest.raises(Exception) as e:
            admin.quotaTariffCreate(name="running", usagetype=1, value="2")
        assert "already exists" in api_error(e, 431)
        assert len(admin.quotaTariffList(fetch_list=True)) == 3

        credit = admin.quotaCredits(account=account["name"], domainid=account["domainid"],
                                    value="100", min_balance="10")["quotacredits"]
        assert credit["credit"] == "100", credit
        with pytest.raises(Exception) as e:
            user.quotaCredits(account=account["name"], domainid=account["domainid"], value="5")
        api_error(e, 432)

        zone, template, small = demo(user)
        admin.advanceClock(to="2026-03-08T17:00:00Z")
        vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                       serviceofferingid=small["id"], name="billed")
        vm = vm["virtualmachine"]
        [root] = user.listVolumes(virtualmachineid=vm["id"])["volume"]
        admin.advanceClock(to="2026-03-08T23:00:00Z")
        user.stopVirtualMachine(id=vm["id"])
        admin.advanceClock(to="2026-03-09T03:00:00Z")
        user.startVirtualMachine(id=vm["id"])
        admin.advanceClock(to="2026-03-10T14:00:00Z")
        admin.destroyVirtualMachine(id=vm["id"], expunge=True)
        admin.advanceClock(to="2026-03-12T01:00:00Z")

        # Running 7 + 24 + 10 = 41 h at 1; allocated 11 + 24 + 10 = 45 h at 0.5; the volume
        # 45 h at 0.01 per GiB-hour.
        gib = (Decimal(root["size"]) / Decimal(2**30)).quantize(EIGHT, ROUND_HALF_EVEN)
        running = Decimal(41)
        allocated = Decimal("22.5")
        volume = sum(((Decimal(h) * Decimal("0.01") * gib).quantize(EIGHT, ROUND_HALF_EVEN)
                      for h in (11, 24, 10)), Decimal(0))

        def statement():
            return user.quotaStatement(account=account["name"], domainid=account["domainid"],
                                       startdate="2026-03-08", enddate="2026-03-10")["statement"]

        s = wait_for(statement, lambda s: Decimal(s["totalquota"]) == running + allocated + volume)
        by_type = {u["type"]: Decimal(u["quota"]) for u in s["quotausage"]}
        assert by_type == {RUNNING_VM: running, ALLOCATED_VM: allocated, VOLUME: volume}, s
        assert s["currency"] == "$"

        balance = user.quotaBalance(account=account["name"], domainid=account["domainid"],
                                    startdate="2026-03-01", enddate="2026-03-11")["balance"]
        assert Decimal(balance["endquota"]) == 100 - running - allocated - volume, balance
        [summary] = admin.quotaSummary(account=account["name"],
                                       domainid=account["domainid"], fetch_list=True)
        assert Decimal(summary["balance"]) == 100 - running - allocated - volume, summary

        with pytest.raises(Exception) as e:
            admin.quotaStatement(account=account["name"], domainid=account["domainid"],
                                 startdate="2026-03-10", enddate="2026-03-08")
        api_error(e, 431)


# ------------------------------------------------------------------------------------------
# Alerts and enforcement over the November fall-back change
# ------------------------------------------------------------------------------------------

# The day before: a new aggregation zone takes effect at the next boundary of the old rule
# (midnight UTC), so New York days are in force from 30 October on.
START = "2026-10-29T16:00:00Z"
TARIFFS = {RUNNING_VM: "744", ALLOCATED_VM: "372", VOLUME: "7.44"}


def round8(value: Decimal) -> Decimal:
    return value.quantize(EIGHT, ROUND_HALF_EVEN)


def charge(usage_type: int, hours: int, month_hours: int, gib: Decimal) -> Decimal:
    """docs/quota.md, written out: Compute*Month `hours x round8(tariff / H)`, GB*Month
    `hours x round8(tariff / H) x round8(size / 2^30)`, the record's charge rounded to 8 dp."""
    rate = round8(Decimal(TARIFFS[usage_type]) / Decimal(month_hours))
    if usage_type == VOLUME:
        return round8(Decimal(hours) * rate * gib)
    return round8(Decimal(hours) * rate)


@contextmanager
def private_server(workdir: Path, start: str):
    srv = launch_server(workdir / "data", workdir / "server.log", "--demo", "--clock", "manual",
                        "--clock-start", start)
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


def alerts(admin, alert_type):
    return admin.listAlerts(type=alert_type, fetch_list=True)


def refused(client) -> str | None:
    """The error text when the client's calls are refused, None when they work."""
    try:
        client.listVirtualMachines()
    except CloudStackApiException as e:
        assert e.response.status_code == 401, e.error
        return e.error["errortext"]
    return None


def test_low_and_empty_alerts_lock_and_unlock_across_the_fall_back_change():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-quota-"))
    try:
        with private_server(workdir, START) as srv:
            admin = srv.client(fetch_result=True)
            for name, value in [("quota.enable.service", "true"),
                                ("quota.enable.enforcement", "true"),
                                ("usage.aggregation.timezone", "America/New_York"),
                                # Periods close at 00:15 New York time, right after each day.
                                ("usage.execution.timezone", "America/New_York")]:
                admin.updateConfiguration(name=name, value=value)
            account, _, client = new_user(srv, admin)
            user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
            names = dict(account=account["name"], domainid=account["domainid"])
            for usagetype, value in TARIFFS.items():
                admin.quotaTariffCreate(name=f"t{usagetype}", usagetype=usagetype, value=value,
                                        startdate="2026-10-01")
            admin.quotaCredits(value="100", min_balance="60", quota_enforce=True, **names)

            zone, template, small = demo(user)
            admin.advanceClock(to="2026-10-30T16:00:00Z")        # 12:00 in New York (EDT)

            def deploy(name):
                vm = user.deployVirtualMachine(zoneid=zone["id"], templateid=template["id"],
                                               serviceofferingid=small["id"],
                                               name=name)["virtualmachine"]
                [root] = user.listVolumes(virtualmachineid=vm["id"])["volume"]
                return vm, root

            a, root_a = deploy("a")                              # Oct 30 16:00Z
            admin.advanceClock(to="2026-10-31T04:30:00Z")        # Oct 30 closed
            admin.advanceClock(to="2026-10-31T10:00:00Z")
            b, root_b = deploy("b")
            admin.advanceClock(to="2026-10-31T20:00:00Z")
            user.stopVirtualMachine(id=b["id"])
            admin.advanceClock(to="2026-11-01T04:30:00Z")        # Oct 31 closed

            gibs = {round8(Decimal(r["size"]) / Decimal(2**30)) for r in (root_a, root_b)}
            [gib] = gibs
            # Hours of each record (New York days; 1 November has 25 hours), by hand:
            #   30 Oct: a runs 16:00Z-04:00Z (12 h).
            #   31 Oct: a 24 h; b deployed 10:00Z, stopped 20:00Z: runs 10 h, allocated 18 h.
            #    1 Nov: a 25 h; b started again at 07:00Z: runs 22 h, allocated 25 h.
            october = [(RUNNING_VM, 12), (ALLOCATED_VM, 12), (VOLUME, 12),
                       (RUNNING_VM, 24), (ALLOCATED_VM, 24), (VOLUME, 24),
                       (RUNNING_VM, 10), (ALLOCATED_VM, 18), (VOLUME, 18)]
            november = [(RUNNING_VM, 25), (ALLOCATED_VM, 25), (VOLUME, 25),
                        (RUNNING_VM, 22), (ALLOCATED_VM, 25), (VOLUME, 25)]
            by_type = {RUNNING_VM: Decimal(0), ALLOCATED_VM: Decimal(0), VOLUME: Decimal(0)}
            for usage_type, hours in october:
                by_type[usage_type] += charge(usage_type, hours, 31 * 24, gib)
            spent_october = sum(by_type.values())
            for usage_type, hours in november:
                by_type[usage_type] += charge(usage_type, hours, 30 * 24, gib)
            spent = sum(by_type.values())
            assert 0 < 100 - spent_october < 60 and 100 - spent < 0  # the scenario's premise

            # Below the minimum balance of 60: QUOTA_LOW, once; not empty, not locked.
            [low] = eventually(lambda: alerts(admin, QUOTA_LOW), "the QUOTA_LOW alert")
            assert low["name"] == "ALERT.QUOTA.LOW", low
            assert account["name"] in low["description"], low
            assert f"${(100 - spent_october).normalize():f}," in low["description"], low
            assert alerts(admin, QUOTA_EMPTY) == []
            assert refused(user) is None

            admin.advanceClock(to="2026-11-01T07:00:00Z")
            user.startVirtualMachine(id=b["id"])
            admin.advanceClock(to="2026-11-02T05:30:00Z")        # 1 Nov (25 h) closed

            # Below zero: QUOTA_EMPTY, once; still one QUOTA_LOW; the account is locked.
            [empty] = eventually(lambda: alerts(admin, QUOTA_EMPTY), "the QUOTA_EMPTY alert")
            assert empty["name"] == "ALERT.QUOTA.EMPTY", empty
            assert f"${(100 - spent).normalize():f}," in empty["description"], empty
            assert len(alerts(admin, QUOTA_LOW)) == 1
            text = eventually(lambda: refused(user), "the quota lock")
            assert "locked" in text, text
            [row] = admin.listAccounts(id=account["id"])["account"]
            assert row["state"] == "locked", row

            # Statement and balance equal the decimals computed above.
            statement = admin.quotaStatement(startdate="2026-10-30", enddate="2026-11-01",
                                             **names)["statement"]
            got = {u["type"]: Decimal(u["quota"]) for u in statement["quotausage"]}
            assert got == by_type, (got, by_type)
            assert Decimal(statement["totalquota"]) == spent, statement
            [summary] = admin.quotaSummary(fetch_list=True, **names)
            assert Decimal(summary["balance"]) == 100 - spent, summary
            assert summary["state"] == "locked", summary

            # Credits bring it back above the minimum: unlocked, both alerts resolved.
            admin.quotaCredits(value="120", **names)
            eventually(lambda: refused(user) is None, "the unlock")
            assert user.listVirtualMachines()["count"] == 2
            balance = admin.quotaBalance(startdate="2026-10-30", enddate="2026-11-02",
                                         **names)["balance"]
            assert Decimal(balance["startquota"]) == 100, balance
            assert Decimal(balance["endquota"]) == 220 - spent, balance
            assert [Decimal(c["credit"]) for c in balance["credits"]] == [120], balance
            assert (len(alerts(admin, QUOTA_LOW)), len(alerts(admin, QUOTA_EMPTY))) == (1, 1)
            assert stop_server(srv) == 0

        # Balances, crossings and locks are folded from the log: a rebuild reproduces them.
        data_dir = str(workdir / "data")
        live = _ledgerstack(server_binary(), "digest", "--data-dir", data_dir).split()[0]
        rebuilt = _ledgerstack(server_binary(), "rebuild", "--data-dir", data_dir)
        assert f"digest {live}" in rebuilt, (live, rebuilt)

        # A restart folds the same log: nothing is raised, locked or unlocked again.
        with private_server(workdir, "2026-11-02T05:30:00Z") as srv:
            admin = srv.client(fetch_result=True)
            deadline = time.monotonic() + 2  # a few of the watcher's looks
            while time.monotonic() < deadline:
                assert (len(alerts(admin, QUOTA_LOW)), len(alerts(admin, QUOTA_EMPTY))) == (1, 1)
                time.sleep(0.25)
            [row] = admin.listAccounts(id=account["id"])["account"]
            assert row["state"] == "enabled", row
            [summary] = admin.quotaSummary(fetch_list=True, **names)
            assert Decimal(summary["balance"]) == 220 - spent, summary
            stop_server(srv)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_enforcement_follows_quota_enforce_and_lifts_only_its_own_locks():
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-quota-lock-"))
    try:
        srv = launch_server(workdir / "data", workdir / "server.log")
        try:
            admin = srv.client(fetch_result=True)
            admin.updateConfiguration(name="quota.enable.service", value="true")
            people = {}
            for who in ("lax", "strict", "admin_locked", "sentinel"):
                account, _, client = new_user(srv, admin)
                user = srv.client(key=client.key, secret=client.secret, fetch_result=True)
                people[who] = (account, user)
                # Enforcement set for the account only (the setting's account scope).
                admin.updateConfiguration(name="quota.enable.enforcement", value="true",
                                          accountid=account["id"])

            def names(who):
                account, _ = people[who]
                return dict(account=account["name"], domainid=account["domainid"])

            def state(who):
                [row] = admin.listAccounts(id=people[who][0]["id"])["account"]
                return row["state"]

            def empty_alerts(who):
                return [a for a in alerts(admin, QUOTA_EMPTY)
                        if people[who][0]["name"] in a["description"]]

            def lock_sentinel(value):
                """Takes the sentinel below zero and waits for its lock: the watcher has then
                looked at every account as of this point of the log."""
                admin.quotaCredits(value=value, quota_enforce=True, **names("sentinel"))
                eventually(lambda: state("sentinel") == "locked", "the sentinel's lock")
                admin.quotaCredits(value=str(-Decimal(value)), **names("sentinel"))
                eventually(lambda: state("sentinel") == "enabled", "the sentinel's unlock")

            # quota_enforce never set (CloudStack's default false): alerted, never locked.
            admin.quotaCredits(value="-5", **names("lax"))
            eventually(lambda: empty_alerts("lax"), "lax's QUOTA_EMPTY alert")
            lock_sentinel("-1")
            assert state("lax") == "enabled"
            assert refused(people["lax"][1]) is None
            # Made enforceable while still below zero: locked, the same crossing, one alert.
            admin.quotaCredits(value="0", quota_enforce=True, **names("lax"))
            eventually(lambda: state("lax") == "locked", "lax's lock")
            assert "locked" in refused(people["lax"][1])
            # An admin who enables it overrides the lock for the rest of the crossing.
            admin.enableAccount(id=people["lax"][0]["id"])
            lock_sentinel("-2")
            assert state("lax") == "enabled"
            assert len(empty_alerts("lax")) == 1

            # An account the admin locked is not unlocked by quota.
            admin.disableAccount(id=people["admin_locked"][0]["id"], lock=True)
            admin.quotaCredits(value="-3", quota_enforce=True, **names("admin_locked"))
            admin.quotaCredits(value="10", **names("admin_locked"))
            lock_sentinel("-4")
            assert state("admin_locked") == "locked"

            # Quota's own lock is lifted when credits bring the balance back to zero.
            admin.quotaCredits(value="-7", quota_enforce=True, **names("strict"))
            eventually(lambda: state("strict") == "locked", "strict's lock")
            admin.quotaCredits(value="7", **names("strict"))
            eventually(lambda: state("strict") == "enabled", "strict's unlock")
            assert refused(people["strict"][1]) is None
        finally:
            stop_server(srv)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
