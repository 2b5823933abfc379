"""Quota end to end through `cs` (issue 7): tariffs, credits, a VM and its volume billed over
three New York days across the spring-forward change, and quotaStatement / quotaBalance equal to
decimals computed by hand."""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from conftest import api_error, new_user
from test_usage_cs import demo, manual_clock_server, wait_for

RUNNING_VM, ALLOCATED_VM, VOLUME = 1, 2, 6
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
