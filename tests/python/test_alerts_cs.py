"""Alerts through `cs` (issue 7): generateAlert, listAlerts and its filters, listAlertTypes,
archiveAlerts and deleteAlerts (which hide, never erase), errors and roles."""
from __future__ import annotations

import re

import pytest
from cs import CloudStackApiException

from conftest import api_error, assert_success, new_user, unique

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SENT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$")


def alerts(api, **filters):
    return api.listAlerts(**filters).get("alert", [])


def generate(waiting, zone, type_: int, name: str, description: str):
    result = waiting.generateAlert(type=type_, name=name, description=description,
                                   zoneid=zone["id"])
    assert_success(result)


@pytest.fixture
def waiting(server):
    return server.client(fetch_result=True)


def test_alert_types_list_cloudstack_and_ledgerstack_types(api):
    response = api.listAlertTypes()
    types = response["alerttype"]
    assert response["count"] == len(types)
    by_name = {t["name"]: t["alerttypeid"] for t in types}
    assert by_name["ALERT.MEMORY"] == 0
    assert by_name["ALERT.CPU"] == 1
    assert by_name["ALERT.STORAGE"] == 2
    assert by_name["ALERT.NETWORK.PUBLICIP"] == 4
    assert by_name["ALERT.USAGE"] == 13
    assert by_name["ALERT.USAGE.RESULT"] == 20
    assert by_name["ALERT.USAGE.SANITY"] == 23
    assert by_name["ALERT.QUOTA.LOW"] == 1001
    assert by_name["ALERT.QUOTA.EMPTY"] == 1002
    assert by_name["ALERT.USAGE.THRESHOLD"] == 1003
    assert all(isinstance(t["alerttypeid"], int) for t in types)
    assert set(types[0]) == {"alerttypeid", "name"}


def test_generated_alert_is_listed_filtered_archived_and_deleted(api, waiting, zone):
    description = unique("disk on fire")
    generate(waiting, zone, 500, "ALERT.TEST.CUSTOM", description)
    [alert] = [a for a in alerts(api) if a["description"] == description]
    assert set(alert) == {"id", "type", "name", "description", "sent"}
    assert UUID.match(alert["id"]) and SENT.match(alert["sent"]), alert
    assert alert["type"] == 500 and alert["name"] == "ALERT.TEST.CUSTOM"

    # Filters: id, type, name, keyword.
    assert [a["id"] for a in alerts(api, id=alert["id"])] == [alert["id"]]
    assert alert["id"] in [a["id"] for a in alerts(api, type=500)]
    assert all(a["type"] == 500 for a in alerts(api, type=500))
    assert alert["id"] in [a["id"] for a in alerts(api, name="ALERT.TEST.CUSTOM")]
    assert [a["id"] for a in alerts(api, keyword=description)] == [alert["id"]]
    assert alerts(api, type=501) == []

    # Already open: a second generate of the same type and zone raises nothing new.
    generate(waiting, zone, 500, "ALERT.TEST.CUSTOM", description + " again")
    assert [a for a in alerts(api, type=500) if a["description"].startswith(description)] \
        == [alert]

    # Archive hides it; the type may then be raised again.
    assert_success(api.archiveAlerts(ids=alert["id"]))
    assert alerts(api, keyword=description) == []
    with pytest.raises(CloudStackApiException) as excinfo:
        api.listAlerts(id="00000000-0000-0000-0000-000000000001")
    api_error(excinfo, 431)

    second = unique("second")
    generate(waiting, zone, 500, "ALERT.TEST.CUSTOM", second)
    [again] = alerts(api, keyword=second)
    assert again["id"] != alert["id"]
    # Archiving it twice fails as CloudStack's does (nothing left to archive).
    assert_success(api.deleteAlerts(ids=again["id"]))
    assert alerts(api, keyword=second) == []
    with pytest.raises(CloudStackApiException) as excinfo:
        api.archiveAlerts(ids=again["id"])
    api_error(excinfo, 530)


def test_archive_by_type_and_dates(api, waiting, zone):
    first, second = unique("first"), unique("second")
    generate(waiting, zone, 601, "ALERT.TEST.A", first)
    generate(waiting, zone, 602, "ALERT.TEST.B", second)
    # A date range that ended long ago selects nothing.
    assert_success(api.archiveAlerts(startdate="2000-01-01", enddate="2000-01-02"))
    assert len(alerts(api, keyword=first)) == 1
    assert_success(api.archiveAlerts(type=601))
    assert alerts(api, keyword=first) == []
    assert len(alerts(api, keyword=second)) == 1
    assert_success(api.deleteAlerts(enddate="2999-12-31"))
    assert alerts(api, keyword=second) == []


def test_errors(api, waiting, zone, server):
    for command in (api.archiveAlerts, api.deleteAlerts):
        with pytest.raises(CloudStackApiException) as excinfo:
            command()
        assert "must be specified" in api_error(excinfo, 431)
        with pytest.raises(CloudStackApiException) as excinfo:
            command(startdate="2026-01-01")
        assert "enddate must be specified" in api_error(excinfo, 431)
        with pytest.raises(CloudStackApiException) as excinfo:
            command(ids="not-a-uuid")
        api_error(excinfo, 431)
        with pytest.raises(CloudStackApiException) as excinfo:
            command(ids="00000000-0000-0000-0000-000000000002")
        api_error(excinfo, 431)
    # A listed type's number with another name.
    with pytest.raises(CloudStackApiException) as excinfo:
        waiting.generateAlert(type=13, name="NOT.USAGE", description="x")
    assert "ALERT.USAGE" in api_error(excinfo, 431)
    with pytest.raises(CloudStackApiException) as excinfo:
        waiting.generateAlert(type=13, name="ALERT.USAGE", description="x",
                              zoneid="00000000-0000-0000-0000-000000000003")
    api_error(excinfo, 431)
    with pytest.raises(CloudStackApiException) as excinfo:
        waiting.generateAlert(name="ALERT.USAGE", description="x")
    api_error(excinfo, 431)

    # Not for users.
    _, _, user = new_user(server, api)
    for call in (lambda: user.listAlerts(), lambda: user.listAlertTypes(),
                 lambda: user.archiveAlerts(type=1),
                 lambda: user.generateAlert(type=500, name="X", description="x")):
        with pytest.raises(CloudStackApiException) as excinfo:
            call()
        assert excinfo.value.response.status_code in (401, 432), excinfo.value.error
