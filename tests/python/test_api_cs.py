"""End-to-end tests of Ledgerstack's CloudStack API through the real `cs` client from PyPI.

One `ledgerstack serve --demo` process serves the whole session, on 127.0.0.1 and a port the
kernel picks, with its data in a temporary directory removed at the end. The facts checked come
from spec/api.md (`/work/shared/spec/api.md`); where a request must be built by hand (expired
signatures, missing `response`, sessions), it is signed here by an HMAC-SHA1 signer written from
the spec, which shares nothing with the server's.

Run by `tests/tests/python_cs.rs` (`cargo test`); alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q tests/python/test_api_cs.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import cs
import pytest
import requests


from conftest import (  # noqa: F401  (fixtures and helpers shared by the suites)
    REPO,
    START_TIMEOUT,
    STOP_TIMEOUT,
    HTTP_TIMEOUT,
    ROOT_DOMAIN_PATH,
    SIGNATURE_FAILURE,
    unique,
    java_encode,
    string_to_sign,
    hmac_sign,
    sign,
    cs_expires,
    Server,
    require,
    RecordingSession,
    sent_params,
    new_user,
    api_error,
    assert_success,
    envelope_key,
    eventually,
)

# --------------------------------------------------------------------------------------------
# The signer itself, against the spec's vectors (so the hand-built requests below are trusted)
# --------------------------------------------------------------------------------------------

SIGNATURE_VECTORS = [
    ("bar", {"apikey": "foo", "command": "listVirtualMachines", "listall": "true", "response": "json"},
     "B0d6hBsZTcFVCiioSxzwKA9Pke8="),
    ("bar", {"apiKey": "foo", "command": "listVirtualMachines", "zoneId": "2", "templateId": "3",
             "temPlateidd": "4", "pageSize": "10", "page": "1", "response": "json"},
     "mMS7XALuGkCXk7kj5SywySku0Z0="),
    ("bar", {"apiKey": "foo", "command": "listVirtualMachines", "listall": "1",
             "unicode_param": "éèààû", "response": "json"},
     "gABU/KFJKD3FLAgKDuxQoryu4sA="),
    ("bar", {"apiKey": "foo", "command": "createNetwork", "name": "", "display_text": "",
             "response": "json"},
     "CistTEiPt/4Rv1v4qSyILvPbhmg="),
    ("abracadabra", {"command": "listVirtualMachines", "apiKey": "fnord", "response": "json"},
     "z/a9Y7J52u48VpqIgiwaGUMCso0="),
    ("VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ",
     {"apiKey": "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg",
      "command": "listUsers", "response": "json"},
     "TTpdDq/7j/J58XCRHomKoQXEQds="),
]


@pytest.mark.parametrize("secret,params,expected", SIGNATURE_VECTORS)
def test_own_signer_reproduces_the_spec_vectors(secret, params, expected):
    assert sign(params, secret) == expected


def test_own_signer_reproduces_the_spec_string_vector():
    text = ("apikey=foo&bar[0].baz=blah&bar[0].foo=1000&bytes_param=blah"
            "&command=listvirtualmachines&foo=foo%2cbar&response=json")
    assert hmac_sign(text, "bar") == "ImJ/5F0P2RDL7yn4LdLnGcEx5WE="
    assert java_encode("a~b c+d") == "a%7Eb%20c%2Bd"


# --------------------------------------------------------------------------------------------
# Signed GET and POST
# --------------------------------------------------------------------------------------------


def test_signed_get_lists_the_demo_zone(server):
    recorder = RecordingSession()
    client = server.client(session=recorder)
    zones = client.listZones()
    assert zones["count"] == len(zones["zone"]) >= 1
    assert "Demo Zone" in [z["name"] for z in zones["zone"]]
    for zone in zones["zone"]:
        assert re.fullmatch(r"[0-9a-f-]{36}", zone["id"])
    [request] = recorder.sent
    assert request.method == "GET"
    assert request.body is None
    params = sent_params(request)
    assert params["command"] == "listZones" and "signature" in params


def test_signed_post_creates_a_domain_and_reads_it_back(server, api):
    recorder = RecordingSession()
    poster = server.client(method="post", session=recorder)
    name = unique("posted")
    domain = poster.createDomain(name=name)["domain"]
    assert domain["name"] == name
    assert domain["path"] == f"ROOT/{name}" or domain["path"].endswith(f"/{name}")
    [request] = recorder.sent
    assert request.method == "POST"
    assert urlsplit(request.url).query == ""
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert sent_params(request)["name"] == name
    # Read your writes: the very next call (GET, another client) sees it.
    listed = api.listDomains(id=domain["id"])
    assert listed["count"] == 1
    assert [d["name"] for d in listed["domain"]] == [name]
    by_name = api.listDomains(listall=True, name=name)
    assert [d["id"] for d in by_name["domain"]] == [domain["id"]]
    # The envelope is named after the command (spec/api.md "Envelopes"), which came in the body.
    assert envelope_key(recorder.received[0]) == "createdomainresponse", recorder.received[0].text


# --------------------------------------------------------------------------------------------
# Expiry (signatureVersion=3)
# --------------------------------------------------------------------------------------------


def test_cs_with_an_expiration_signs_version_3_and_is_accepted(server):
    recorder = RecordingSession()
    client = server.client(expiration=timedelta(minutes=2), session=recorder)
    before = datetime.now(timezone.utc)
    assert "Demo Zone" in [z["name"] for z in client.listZones()["zone"]]
    params = sent_params(recorder.sent[0])
    assert params["signatureVersion"] == "3"
    expires = datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z")
    assert before + timedelta(minutes=1) < expires <= before + timedelta(minutes=3)
    assert recorder.received[0].status_code == 200


def test_signature_version_3_with_an_expires_in_the_past_is_401(server):
    # The same request with a future expiry goes through: only the date makes the difference.
    future = cs_expires(datetime.now(timezone.utc) + timedelta(minutes=5))
    ok = server.raw_admin("listZones", response="json", signatureVersion="3", expires=future)
    assert ok.status_code == 200, ok.text
    past = cs_expires(datetime.now(timezone.utc) - timedelta(hours=1))
    r = server.raw_admin("listZones", response="json", signatureVersion="3", expires=past)
    assert r.status_code == 401, r.text
    body = r.json()["listzonesresponse"]
    assert body["errorcode"] == 401
    # spec/api.md "Failure": a request that fails signing (expiry is part of it) gets this text.
    assert body["errortext"] == SIGNATURE_FAILURE


@pytest.mark.parametrize("expires", [None, "", "not-a-date", "2999-13-45T00:00:00+0000"])
def test_signature_version_3_without_a_valid_expires_is_401(server, expires):
    params = {"response": "json", "signatureVersion": "3"}
    if expires is not None:
        params["expires"] = expires
    r = server.raw_admin("listZones", **params)
    assert r.status_code == 401, r.text
    assert r.json()["listzonesresponse"]["errorcode"] == 401


@pytest.mark.parametrize("render", [
    lambda at: at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
    lambda at: at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    lambda at: (at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00"),
], ids=["+0000", "Z", "+01:00"])
def test_signature_version_3_accepts_each_expires_format(server, render):
    expires = render(datetime.now(timezone.utc) + timedelta(minutes=5))
    r = server.raw_admin("listZones", response="json", signatureVersion="3", expires=expires)
    assert r.status_code == 200, (expires, r.text)


@pytest.mark.parametrize("expires", ["2001-01-01T00:00:00+0000", "2001-01-01T00:00:00Z"])
def test_a_past_expires_without_signature_version_is_accepted(server, expires):
    r = server.raw_admin("listZones", response="json", expires=expires)
    assert r.status_code == 200, r.text
    assert "Demo Zone" in [z["name"] for z in r.json()["listzonesresponse"]["zone"]]


def test_signature_version_other_than_3_ignores_expires(server):
    r = server.raw_admin("listZones", response="json", signatureVersion="2",
                         expires="2001-01-01T00:00:00+0000")
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------------------------
# Error classes, through cs.CloudStackApiException
# --------------------------------------------------------------------------------------------

def test_401_bad_signature(server):
    wrong = server.client(secret=server.secret_key[:-4] + "abcd")
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        wrong.listZones()
    assert api_error(excinfo, 401) == SIGNATURE_FAILURE
    assert envelope_key(excinfo.value.response) == "listzonesresponse"
    assert excinfo.value.error.get("uuidList") == []


def test_401_unknown_api_key(server):
    stranger = server.client(key="no-such-key", secret=server.secret_key)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        stranger.listZones()
    assert api_error(excinfo, 401) == SIGNATURE_FAILURE


def test_401_unknown_command_with_an_api_key(api):
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.noSuchCommand()
    assert api_error(excinfo, 401) == SIGNATURE_FAILURE
    assert envelope_key(excinfo.value.response) == "errorresponse"


def test_405_login_by_get(server):
    anonymous = cs.CloudStack(endpoint=server.endpoint, timeout=HTTP_TIMEOUT)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        anonymous.login(username="admin", password=server.credentials["password"], domain="/")
    api_error(excinfo, 405)
    assert envelope_key(excinfo.value.response) == "loginresponse"


def _configuration_value(api, name: str) -> str:
    [item] = [c for c in api.listConfigurations(name=name)["configuration"] if c["name"] == name]
    return item["value"]


def test_429_throttling_per_account_and_get_api_limit(server, api, commands):
    require(commands, "updateConfiguration", "listConfigurations", "getApiLimit")
    settings = {"api.throttling.enabled": "true", "api.throttling.max": "3",
                "api.throttling.interval": "60"}
    previous = {name: _configuration_value(api, name) for name in settings}
    account, _, user = new_user(server, api)
    try:
        for name, value in settings.items():
            assert api.updateConfiguration(name=name, value=value)["configuration"]["value"] == value
        # Call 1, then getApiLimit (call 2): it reports what is used and what is left.
        user.listAccounts()
        limit = user.getApiLimit()["apilimit"]
        assert limit["accountid"] == account["id"]
        assert limit["account"] == account["name"]
        assert limit["apiIssued"] in (1, 2)
        assert limit["apiIssued"] + limit["apiAllowed"] == 3
        assert 0 < limit["expireAfter"] <= 60
        # Exactly the calls left are allowed, then 429.
        allowed = 0
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            for _ in range(10):
                user.listAccounts()
                allowed += 1
        assert allowed == limit["apiAllowed"]
        text = api_error(excinfo, 429, 4545)
        assert text.startswith("The given user has reached his/her account api limit")
        retry = re.fullmatch(
            r"The given user has reached his/her account api limit, please retry after (\d+) ms\.",
            text,
        )
        assert retry and 0 <= int(retry.group(1)) <= 60_000, text
        # Root admins are exempt.
        for _ in range(5):
            api.listZones()
    finally:
        for name, value in previous.items():
            api.updateConfiguration(name=name, value=value)
    assert _configuration_value(api, "api.throttling.enabled") == previous["api.throttling.enabled"]
    user.listAccounts()  # throttling off again: the same account is served


def test_430_malformed_map_parameter(server, api):
    account, _, _ = new_user(server, api, keys=False)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateAccount(id=account["id"], **{"accountdetails[x].key": "1"})
    text = api_error(excinfo, 430)
    assert "accountdetails[x].key" in text


def test_431_missing_parameter_and_x_description(api):
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.createDomain()
    text = api_error(excinfo, 431, 4350)
    assert text == "Unable to execute API command createDomain due to missing parameter name"
    assert excinfo.value.response.headers["X-Description"] == text
    assert envelope_key(excinfo.value.response) == "createdomainresponse"
    assert excinfo.value.error.get("uuidList") == []


def test_431_pagesize_without_page(api):
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.listDomains(listall=True, pagesize=10)
    api_error(excinfo, 431, 4350)


def test_431_page_without_pagesize(server):
    r = server.raw_admin("listDomains", response="json", listall="true", page="1")
    assert r.status_code == 431, r.text
    assert r.json()["listdomainsresponse"]["errorcode"] == 431


def test_431_pagesize_above_default_page_size(api):
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.listDomains(listall=True, page=1, pagesize=501)
    api_error(excinfo, 431, 4350)


def _login(server, username="admin", password=None, domain=ROOT_DOMAIN_PATH):
    session = requests.Session()
    r = session.post(
        server.endpoint,
        data={"command": "login", "username": username,
              "password": server.credentials["password"] if password is None else password,
              "domain": domain, "response": "json"},
        timeout=HTTP_TIMEOUT,
    )
    return session, r


def login_body(r: requests.Response) -> dict:
    """What `login` answered, whatever its envelope is called (the envelope's name has its own
    test, `test_login_answers_in_the_loginresponse_envelope`)."""
    [body] = r.json().values()
    return body


def session_client(server, session: requests.Session) -> cs.CloudStack:
    """An unsigned `cs` client riding a logged-in session. `cs` prepares its requests without the
    session's cookie jar, so the session cookie goes in as a header."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    return cs.CloudStack(endpoint=server.endpoint, timeout=HTTP_TIMEOUT, headers={"Cookie": cookie})


def test_432_unknown_command_in_a_session(server):
    session, r = _login(server)
    assert r.status_code == 200, r.text
    key = login_body(r)["sessionkey"]
    by_session = session_client(server, session)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        by_session.noSuchCommand(sessionkey=key)
    assert api_error(excinfo, 432) == "Unknown API command: noSuchCommand"
    assert envelope_key(excinfo.value.response) == "errorresponse"


def test_432_no_command(server):
    r = server.raw({"response": "json"}, signed=False)
    assert r.status_code == 432, r.text
    body = r.json()["errorresponse"]
    assert body["errorcode"] == 432
    assert r.headers["X-Description"] == body["errortext"]


def test_432_command_not_available_to_the_role(server, api):
    _, _, user = new_user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        user.createDomain(name=unique("forbidden"))
    text = api_error(excinfo, 432, 4555)
    assert text == (
        "The given command 'createDomain' either does not exist, is not available for user, "
        "or not available from ip address '127.0.0.1'."
    )


def test_530_lock_account(server, api, root_domain_id):
    account, _, _ = new_user(server, api, keys=False)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.lockAccount(account=account["name"], domainid=root_domain_id)
    text = api_error(excinfo, 530, 4250)
    assert text.startswith("LockAccount does not lock accounts"), text
    # The account is untouched.
    [same] = api.listAccounts(id=account["id"])["account"]
    assert same["state"] == "enabled"


def test_531_user_reading_another_accounts_resources(server, api, root_domain_id):
    _, _, user = new_user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        user.listAccounts(account="admin", domainid=root_domain_id)
    api_error(excinfo, 531, 4365)
    other_domain = api.createDomain(name=unique("elsewhere"))["domain"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        user.listAccounts(listall=True, domainid=other_domain["id"])
    api_error(excinfo, 531, 4365)


def test_531_login_with_a_bad_password(server):
    _, r = _login(server, password="not-the-password")
    assert r.status_code == 531, r.text
    body = login_body(r)
    assert body["errorcode"] == 531
    assert body["cserrorcode"] == 4365
    assert r.headers["X-Description"] == body["errortext"]


def _non_empty_domain(server, api):
    domain = api.createDomain(name=unique("busy"))["domain"]
    account, _, _ = new_user(server, api, domainid=domain["id"], keys=False)
    return domain, account


def test_536_delete_domain_without_cleanup_when_it_holds_an_account(server, api):
    domain, _ = _non_empty_domain(server, api)
    try:
        answer = api.deleteDomain(id=domain["id"])
    except cs.CloudStackApiException as e:
        # Refused at once, before any job.
        assert e.response.status_code == 536, e.error
        assert e.error["errorcode"] == 536 and e.error["cserrorcode"] == 4375, e.error
        assert e.error["errortext"]
    else:
        # Or accepted as a job that fails with 536.
        jobid = answer["jobid"]
        job = eventually(
            lambda: (lambda j: j if j["jobstatus"] != 0 else None)(
                api.queryAsyncJobResult(jobid=jobid)),
            "the deleteDomain job to finish",
        )
        assert job["jobstatus"] == 2, job
        assert job["jobresultcode"] == 536, job
        assert job["jobresult"]["errorcode"] == 536, job
    # Still there.
    assert api.listDomains(id=domain["id"])["count"] == 1


_UNTRIGGERABLE = {
    535: "no implemented command can fail with 535 (ResourceAllocation 4370): CloudStack raises it "
         "from its resource limit manager, which Ledgerstack reports as 532 per spec/api.md, and "
         "from pod IP allocation (acquirePodIpAddress), which Ledgerstack does not implement",
}


@pytest.mark.parametrize("code", sorted(_UNTRIGGERABLE))
def test_error_codes_no_command_can_trigger(code):
    pytest.skip(_UNTRIGGERABLE[code])


def test_537_a_port_forwarding_rule_overlapping_another(server, api):
    """Network rule conflict: two port forwarding rules on one public IP whose public port
    ranges overlap for the same protocol."""
    _account, _user, plain = new_user(server, api)
    client = server.client(key=plain.key, secret=plain.secret, fetch_result=True)
    params = _demo_deploy_params(api)
    vm = client.deployVirtualMachine(**params)["virtualmachine"]
    ip = client.associateIpAddress(networkid=vm["nic"][0]["networkid"])["ipaddress"]
    client.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp", publicport=2000,
                                    publicendport=2010, privateport=2000, privateendport=2010,
                                    virtualmachineid=vm["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createPortForwardingRule(ipaddressid=ip["id"], protocol="tcp", publicport=2005,
                                        privateport=22, virtualmachineid=vm["id"])
    assert "conflicts with rule" in api_error(excinfo, 537, 4250)
    assert len(client.listPortForwardingRules(ipaddressid=ip["id"])["portforwardingrule"]) == 1
    api.destroyVirtualMachine(id=vm["id"], expunge=True)


def _demo_deploy_params(api):
    zone = api.listZones()["zone"][0]
    template = api.listTemplates(templatefilter="featured")["template"][0]
    small = [o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"][0]
    return dict(zoneid=zone["id"], templateid=template["id"], serviceofferingid=small["id"])


def test_532_deploy_beyond_the_account_vm_limit(server, api, root_domain_id):
    account, _user, client = new_user(server, api)
    api.updateResourceLimit(resourcetype=0, max=0, account=account["name"], domainid=root_domain_id)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(startvm=False, **_demo_deploy_params(api))
    assert "user_vm" in api_error(excinfo, 532, 4280)
    assert client.listVirtualMachines().get("count", 0) == 0


def test_533_deploy_on_a_host_without_room(server, api):
    params = _demo_deploy_params(api)
    custom = [api.createServiceOffering(name=unique("custom"), displaytext="any shape")["serviceoffering"]]
    assert custom[0]["iscustomized"] is True, custom
    account, _user, client = new_user(server, api)
    for resource in (8, 9):  # no CPU or memory limit: the hosts' capacity is what refuses
        api.updateResourceLimit(resourcetype=resource, max=-1, account=account["name"],
                                domainid=account["domainid"])
    params["serviceofferingid"] = custom[0]["id"]
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(**{"details[0].cpuNumber": "64", "details[0].cpuSpeed": "2000",
                                       "details[0].memory": "1024"}, **params)
    api_error(excinfo, 533, 4325)
    assert client.listVirtualMachines().get("count", 0) == 0


def test_534_a_failed_hypervisor_command_fails_the_job(server, api):
    _account, _user, client = new_user(server, api)
    api.configureSimulator(name="StartCommand", value="result:fail", count=1)
    try:
        answer = client.deployVirtualMachine(**_demo_deploy_params(api))
        job = eventually(
            lambda: (lambda j: j if j["jobstatus"] != 0 else None)(
                client.queryAsyncJobResult(jobid=answer["jobid"])),
            "the deploy job to finish",
        )
    finally:
        api.configureSimulator(name="StartCommand", value="clear")
    assert job["jobstatus"] == 2, job
    assert job["jobresultcode"] == 534, job
    assert "Simulated failure of StartCommand" in job["jobresult"]["errortext"], job
    [vm] = client.listVirtualMachines(id=answer["id"])["virtualmachine"]
    assert vm["state"] == "Error"


# --------------------------------------------------------------------------------------------
# fetch_list paging over more than one page of 500
# --------------------------------------------------------------------------------------------


def test_fetch_list_pages_over_520_domains(server, api):
    parent = api.createDomain(name=unique("bulkparent"))["domain"]
    prefix = unique("bulk") + "-"
    created = set()
    for i in range(520):
        created.add(api.createDomain(name=f"{prefix}{i:03d}", parentdomainid=parent["id"])["domain"]["id"])
    assert len(created) == 520

    recorder = RecordingSession()
    client = server.client(session=recorder)
    listed = client.listDomains(listall=True, keyword=prefix, fetch_list=True)
    ids = [d["id"] for d in listed]
    assert len(ids) == len(set(ids)) == 520
    assert set(ids) == created
    pages = [sent_params(r) for r in recorder.sent]
    assert [(p["page"], p["pagesize"]) for p in pages] == [("1", "500"), ("2", "500")]

    # One page: `count` is the total across pages.
    first = api.listDomains(listall=True, keyword=prefix, page=1, pagesize=500)
    second = api.listDomains(listall=True, keyword=prefix, page=2, pagesize=500)
    assert first["count"] == second["count"] == 520
    assert len(first["domain"]) == 500 and len(second["domain"]) == 20
    assert not {d["id"] for d in first["domain"]} & {d["id"] for d in second["domain"]}
    # pagesize=-1 without page: everything at once.
    everything = api.listDomains(listall=True, keyword=prefix, pagesize=-1)
    assert everything["count"] == 520 and len(everything["domain"]) == 520

    # The whole tree (more than 500 as well), with no duplicates.
    total = api.listDomains(listall=True, page=1, pagesize=1)["count"]
    whole = [d["id"] for d in api.listDomains(listall=True, fetch_list=True)]
    assert len(whole) == len(set(whole)) == total > 520
    assert created <= set(whole)


# --------------------------------------------------------------------------------------------
# Async jobs through cs's fetch_result polling
# --------------------------------------------------------------------------------------------


def test_fetch_result_returns_the_final_result_of_jobs(server, api):
    account, user, _ = new_user(server, api, keys=False)
    recorder = RecordingSession()
    waiting = server.client(fetch_result=True, session=recorder)

    result = waiting.disableUser(id=user["id"])
    assert result["user"]["id"] == user["id"]
    assert result["user"]["state"] == "disabled"
    first = recorder.received[0].json()["disableuserresponse"]
    assert isinstance(first["jobid"], str) and set(first) == {"jobid"}
    final = recorder.received[-1].json()["queryasyncjobresultresponse"]
    assert final["jobid"] == first["jobid"]
    assert final["jobstatus"] == 1 and final["jobresultcode"] == 0
    assert final["jobresulttype"] == "object"
    assert final["cmd"]
    assert final["jobresult"] == result
    [listed] = api.listUsers(id=user["id"])["user"]
    assert listed["state"] == "disabled"

    recorder.sent.clear()
    recorder.received.clear()
    assert_success(waiting.deleteAccount(id=account["id"]))
    final = recorder.received[-1].json()["queryasyncjobresultresponse"]
    assert final["jobstatus"] == 1 and final["jobresultcode"] == 0
    assert "account" not in api.listAccounts(listall=True, id=account["id"])


def test_fetch_result_raises_on_a_failing_job(server, api):
    domain, account = _non_empty_domain(server, api)
    waiting = server.client(fetch_result=True)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        waiting.deleteDomain(id=domain["id"])
    error = excinfo.value.error
    # Either the job's result ({"errorcode","errortext"}) or the request's own error body.
    assert error["errorcode"] == 536, error
    assert isinstance(error["errortext"], str) and error["errortext"], error
    # With cleanup the same domain goes, account and all.
    assert_success(waiting.deleteDomain(id=domain["id"], cleanup=True))
    assert api.listDomains(listall=True, id=domain["id"]).get("count", 0) == 0
    assert "account" not in api.listAccounts(listall=True, id=account["id"])


# --------------------------------------------------------------------------------------------
# Sessions: login / logout
# --------------------------------------------------------------------------------------------


def test_login_session_then_logout(server):
    session, r = _login(server)
    assert r.status_code == 200, r.text
    login = login_body(r)
    for field in ("username", "userid", "domainid", "timeout", "account", "type", "sessionkey"):
        assert field in login, (field, login)
    assert login["username"] == "admin" and login["account"] == "admin"
    key = login["sessionkey"]
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    assert any(c.startswith("JSESSIONID=") for c in set_cookies), set_cookies
    assert any(c.startswith("sessionkey=") and "HttpOnly" in c for c in set_cookies), set_cookies
    jsessionid = session.cookies.get("JSESSIONID")
    assert jsessionid

    # Unsigned, with the session cookie and the sessionkey parameter.
    ok = server.raw({"command": "listZones", "response": "json", "sessionkey": key},
                    signed=False, session=session)
    assert ok.status_code == 200, ok.text
    assert "Demo Zone" in [z["name"] for z in ok.json()["listzonesresponse"]["zone"]]
    # The same through cs (no key, no secret: unsigned).
    by_session = session_client(server, session)
    assert by_session.listZones(sessionkey=key)["count"] >= 1

    # The session cookie without any sessionkey: 401.
    bare = server.raw({"command": "listZones", "response": "json"}, signed=False,
                      cookies={"JSESSIONID": jsessionid})
    assert bare.status_code == 401, bare.text
    assert bare.json()["listzonesresponse"]["errorcode"] == 401
    # A sessionkey that does not match: 401.
    wrong = server.raw({"command": "listZones", "response": "json", "sessionkey": key + "x"},
                       signed=False, cookies={"JSESSIONID": jsessionid})
    assert wrong.status_code == 401, wrong.text
    # The sessionkey without the session cookie: 401.
    no_cookie = server.raw({"command": "listZones", "response": "json", "sessionkey": key},
                           signed=False)
    assert no_cookie.status_code == 401, no_cookie.text

    out = server.raw({"command": "logout", "response": "json", "sessionkey": key},
                     signed=False, session=session)
    assert out.status_code == 200, out.text
    assert out.json() == {"logoutresponse": {"description": "success"}}
    after = server.raw({"command": "listZones", "response": "json", "sessionkey": key},
                       signed=False, cookies={"JSESSIONID": jsessionid, "sessionkey": key})
    assert after.status_code == 401, after.text


def test_login_answers_in_the_loginresponse_envelope(server):
    """spec/api.md: the envelope is `<command>response`, `{"loginresponse":{...}}`, also when
    the command comes in the POST body (as it always does for login), and for its errors."""
    _, ok = _login(server)
    assert ok.status_code == 200, ok.text
    assert envelope_key(ok) == "loginresponse", ok.text
    _, bad = _login(server, password="not-the-password")
    assert bad.status_code == 531, bad.text
    assert envelope_key(bad) == "loginresponse", bad.text


# --------------------------------------------------------------------------------------------
# JSON and XML
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["json", "JSON", "Json"])
def test_response_json_is_json(server, response):
    r = server.raw_admin("listZones", response=response)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Content-Type"].replace(" ", "").lower() == "application/json;charset=utf-8"
    assert r.json()["listzonesresponse"]["count"] >= 1


@pytest.mark.parametrize("response", [None, "xml", "anything"])
def test_response_absent_or_other_is_xml(server, response):
    params = {} if response is None else {"response": response}
    r = server.raw_admin("listZones", **params)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/xml")
    assert r.text.startswith("<?xml")
    assert "<listzonesresponse" in r.text and "<zone>" in r.text
    assert "Demo Zone" in r.text


def test_cs_without_json_gets_xml(api):
    text = api.listZones(json=False)
    assert text.startswith("<?xml")
    assert "<listzonesresponse" in text


def test_errors_in_xml(server):
    r = server.raw_admin("createDomain")
    assert r.status_code == 431
    assert r.headers["Content-Type"].startswith("text/xml")
    assert r.text.startswith("<?xml") and "<createdomainresponse" in r.text
    assert "<errorcode>431</errorcode>" in r.text


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def test_list_events_shows_account_create_and_the_delete_job(server, api, commands):
    require(commands, "listEvents")
    account, _, _ = new_user(server, api, keys=False)

    def created_rows():
        events = api.listEvents(listall=True, type="ACCOUNT.CREATE").get("event", [])
        return [e for e in events if e.get("resourceid") == account["id"]]

    [created] = eventually(created_rows, "the ACCOUNT.CREATE event")
    assert created["type"] == "ACCOUNT.CREATE"
    assert created["state"] == "Completed"
    assert created["level"] == "INFO"
    assert created.get("resourcetype") == "Account"
    assert "parentid" not in created

    waiting = server.client(fetch_result=True)
    assert_success(waiting.deleteAccount(id=account["id"]))

    def delete_rows():
        events = api.listEvents(listall=True, type="ACCOUNT.DELETE").get("event", [])
        rows = [e for e in events if e.get("resourceid") == account["id"]]
        return rows if len(rows) >= 3 else None

    rows = eventually(delete_rows, "Scheduled, Started and Completed ACCOUNT.DELETE events")
    by_state = {}
    for row in rows:
        assert row["state"] not in by_state, rows
        by_state[row["state"]] = row
    assert set(by_state) == {"Scheduled", "Started", "Completed"}, rows
    scheduled = by_state["Scheduled"]
    assert "parentid" not in scheduled
    assert by_state["Started"]["parentid"] == scheduled["id"]
    assert by_state["Completed"]["parentid"] == scheduled["id"]
    # Newest first.
    created_order = [r["created"] for r in rows]
    assert created_order == sorted(created_order, reverse=True)


# --- Request limits and odd input: clear errors, nothing appended, the server stays up ---


def _event_count(api) -> int:
    return api.listEvents(listall=True, pagesize=1, page=1).get("count", 0)


def test_oversized_body_is_413_and_appends_nothing(server, api):
    before = _event_count(api)
    # The body is refused unread, so only the query string can name the command and format.
    r = requests.post(server.endpoint + "?command=createDomain&response=json",
                      data={"name": "x" * (2 * 1024 * 1024)}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 413, r.text
    assert r.json()["createdomainresponse"]["errorcode"] == 413
    assert _event_count(api) == before


def test_overlong_request_line_is_431(server):
    r = requests.get(server.endpoint + "?command=listZones&response=json&junk=" + "a" * (20 * 1024),
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 431, r.text
    assert "request line too long" in r.headers["X-Description"]


def test_too_many_parameters_is_431(server):
    query = "&".join(f"p{i}=1" for i in range(1100))
    r = requests.get(f"{server.endpoint}?command=listZones&response=json&{query}", timeout=HTTP_TIMEOUT)
    assert r.status_code == 431, r.text
    assert "too many parameters" in r.headers["X-Description"]


def test_invalid_utf8_and_duplicate_parameters_are_handled_as_cloudstack_does(server, api):
    # A repeated name: the last value wins (here: a bad then a good response format).
    params = {"command": "listZones", "apiKey": server.api_key, "response": "json"}
    params["signature"] = sign(params, server.secret_key)
    query = "response=xml&" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    r = requests.get(f"{server.endpoint}?{query}", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["listzonesresponse"]["count"] >= 1
    # Invalid UTF-8 in a value is decoded with U+FFFD: the request is refused by signature, not a crash.
    r = requests.get(f"{server.endpoint}?command=listZones&apiKey=x&signature=%FF%FE&response=json",
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 401
    assert api.listZones()["count"] >= 1
