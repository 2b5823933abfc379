"""SSH key pairs, resource tags and resource limits through the real `cs` client
(spec/commands.md "Virtual machines, SSH keys, tags" and "Volumes, snapshots, limits"):
createSSHKeyPair, registerSSHKeyPair, listSSHKeyPairs, deleteSSHKeyPair, createTags,
deleteTags, listTags, listResourceLimits, updateResourceLimit, updateResourceCount.

Alone:
    LEDGERSTACK_BIN=target/debug/ledgerstack .venv/bin/python -m pytest -q \
        tests/python/test_keys_tags_limits.py
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import cs
import pytest

from conftest import (  # noqa: F401  (fixtures shared by the suites)
    api_error,
    assert_success,
    new_user,
    require,
    unique,
    waiting,
)

FINGERPRINT = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){15}$")

# Resource type numbers and the settings holding an account's default limit.
LIMIT_SETTINGS = {
    "0": ("user_vm", "max.account.user.vms"),
    "1": ("public_ip", "max.account.public.ips"),
    "2": ("volume", "max.account.volumes"),
    "3": ("snapshot", "max.account.snapshots"),
    "4": ("template", "max.account.templates"),
    "6": ("network", "max.account.networks"),
    "7": ("vpc", "max.account.vpcs"),
    "8": ("cpu", "max.account.cpus"),
    "9": ("memory", "max.account.memory"),
    "10": ("primary_storage", "max.account.primary.storage"),
    "11": ("secondary_storage", "max.account.secondary.storage"),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def user(server, api, **options):
    """A new normal user: (account, client that waits for jobs)."""
    account, _, client = new_user(server, api, **options)
    return account, waiting(server, client)


def job_error(excinfo, code: int) -> str:
    """A failed job as `cs` reports it (HTTP 200, the error in `jobresult`); its text."""
    e = excinfo.value
    assert isinstance(e, cs.CloudStackApiException), repr(e)
    assert e.error.get("errorcode") == code, e.error
    return e.error["errortext"]


def refused(excinfo, code: int) -> str:
    """An error answered at once (HTTP `code`) or by the job; its text."""
    e = excinfo.value
    assert isinstance(e, cs.CloudStackApiException), repr(e)
    if e.response is not None and e.response.status_code == code:
        return api_error(excinfo, code)
    return job_error(excinfo, code)


def keypairs(client: cs.CloudStack, **filters) -> list[dict]:
    return client.listSSHKeyPairs(**filters).get("sshkeypair", [])


def tags(client: cs.CloudStack, **filters) -> list[dict]:
    return client.listTags(**filters).get("tag", [])


def limits(client: cs.CloudStack, **filters) -> dict[str, dict]:
    """listResourceLimits by resource type number."""
    return {
        item["resourcetype"]: item
        for item in client.listResourceLimits(**filters).get("resourcelimit", [])
    }


def md5_fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def ssh_keygen(tmp_path: Path, kind: str = "ed25519") -> str:
    """A fresh OpenSSH public key line (with a comment)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    path = tmp_path / f"id_{kind}_{unique('k')}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@example.org", "-f", str(path)],
        check=True,
    )
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="module")
def disk_offering(api):
    return next(
        o for o in api.listDiskOfferings()["diskoffering"] if not o.get("iscustomized")
    )


def create_volume(client: cs.CloudStack, zone, offering) -> dict:
    return client.createVolume(
        name=unique("vol"), zoneid=zone["id"], diskofferingid=offering["id"]
    )["volume"]


# --------------------------------------------------------------------------------------------
# SSH key pairs
# --------------------------------------------------------------------------------------------


def test_created_key_pair_answers_its_private_key_once(server, api, tmp_path):
    account, client = user(server, api)
    name = unique("key")
    created = client.createSSHKeyPair(name=name)["keypair"]
    assert created["name"] == name
    assert created["account"] == account["name"]
    assert created["domainid"] == account["domainid"]
    assert created["domain"] == account["domain"]
    assert FINGERPRINT.match(created["fingerprint"]), created["fingerprint"]
    private = created["privatekey"]
    assert private.startswith("-----BEGIN RSA PRIVATE KEY-----\n"), private[:40]
    assert private.rstrip().endswith("-----END RSA PRIVATE KEY-----")

    [listed] = keypairs(client, name=name)
    assert "privatekey" not in listed
    assert {k: listed[k] for k in ("id", "name", "fingerprint", "account", "domainid")} == {
        k: created[k] for k in ("id", "name", "fingerprint", "account", "domainid")
    }
    assert keypairs(client, id=created["id"]) == [listed]
    assert keypairs(client, fingerprint=created["fingerprint"]) == [listed]
    assert keypairs(client, keyword=name[2:]) == [listed]

    if shutil.which("ssh-keygen") is None:
        return
    # The private key is a real RSA key whose public half has the fingerprint shown.
    key_file = tmp_path / "id_rsa"
    key_file.write_text(private)
    key_file.chmod(0o600)
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key_file)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert public.startswith("ssh-rsa ")
    assert md5_fingerprint(public) == created["fingerprint"]
    # The log holds the public key but never the private one.
    private_body = "".join(private.strip().splitlines()[1:-1])
    stored = b"".join(
        p.read_bytes() for p in (server.workdir / "data").rglob("*") if p.is_file()
    )
    assert public.split()[1][-60:].encode() in stored
    assert private_body[100:160].encode() not in stored
    assert private_body[-60:].encode() not in stored


def test_key_pair_names_are_unique_per_account(server, api):
    _, client = user(server, api)
    _, other = user(server, api)
    name = unique("dup")
    client.createSSHKeyPair(name=name)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createSSHKeyPair(name=name)
    assert api_error(excinfo, 431, 4350) == f"A key pair with name '{name}' already exists."
    # Another account may use the same name.
    assert other.createSSHKeyPair(name=name)["keypair"]["name"] == name
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createSSHKeyPair(name="   ")
    api_error(excinfo, 431)


def test_registered_public_key_gets_its_md5_fingerprint(server, api, tmp_path):
    _, client = user(server, api)
    public = ssh_keygen(tmp_path)
    name = unique("reg")
    registered = client.registerSSHKeyPair(name=name, publickey=public)["keypair"]
    assert registered["name"] == name
    assert registered["fingerprint"] == md5_fingerprint(public)
    assert "privatekey" not in registered
    [listed] = keypairs(client, name=name)
    assert listed["id"] == registered["id"]

    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.registerSSHKeyPair(name=name, publickey=ssh_keygen(tmp_path))
    assert api_error(excinfo, 431) == (
        f"A key pair with name '{name}' already exists for this account."
    )
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.registerSSHKeyPair(name=unique("again"), publickey=public)
    assert "already exists for this account" in api_error(excinfo, 431)

    # An RSA key, base64-encoded as a whole (CloudStack accepts both forms).
    rsa = ssh_keygen(tmp_path, "rsa")
    encoded = base64.b64encode(rsa.encode()).decode()
    other = client.registerSSHKeyPair(name=unique("b64"), publickey=encoded)["keypair"]
    assert other["fingerprint"] == md5_fingerprint(rsa)


@pytest.mark.parametrize(
    "material",
    [
        "not a key",
        "ssh-rsa",
        "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M",
        "ssh-ed25519 %%%%",
        # The blob names ssh-ed25519, the line ssh-rsa.
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGVzNTF1QUWq7w2iOaYrrpLc2PZcAfCTgPoI+qTBxg8M",
    ],
)
def test_invalid_public_keys_are_refused(api, material):
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.registerSSHKeyPair(name=unique("bad"), publickey=material)
    assert api_error(excinfo, 431, 4350) == "Public key is invalid"


def test_key_pairs_are_private_to_their_account(server, api):
    mine, client = user(server, api)
    _, other = user(server, api)
    name = unique("mine")
    created = client.createSSHKeyPair(name=name)["keypair"]
    assert keypairs(other, name=name) == []
    assert keypairs(other, id=created["id"]) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.deleteSSHKeyPair(name=name)
    assert api_error(excinfo, 431).startswith(f"A key pair with name '{name}' does not exist")
    # An admin sees it with listall, or by naming the account.
    assert [k["id"] for k in keypairs(api, listall=True, name=name)] == [created["id"]]
    assert [k["id"] for k in keypairs(api, account=mine["name"], domainid=mine["domainid"])] == [
        created["id"]
    ]
    # Not without: the admin's own account has none of that name.
    assert keypairs(api, name=name) == []


def test_admin_manages_key_pairs_of_an_account(server, api):
    account, client = user(server, api)
    name = unique("forthem")
    created = api.createSSHKeyPair(
        name=name, account=account["name"], domainid=account["domainid"]
    )["keypair"]
    assert created["account"] == account["name"]
    assert [k["id"] for k in keypairs(client)] == [created["id"]]
    result = api.deleteSSHKeyPair(name=name, account=account["name"], domainid=account["domainid"])
    assert_success(result)
    assert keypairs(client) == []


def test_deleting_a_key_pair(server, api):
    account, client = user(server, api)
    name = unique("gone")
    client.createSSHKeyPair(name=name)
    result = client.deleteSSHKeyPair(name=name)
    assert result == {"success": True}
    assert keypairs(client, name=name) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deleteSSHKeyPair(name=name)
    assert api_error(excinfo, 431, 4350) == (
        f"A key pair with name '{name}' does not exist for account {account['name']} "
        "in specified domain id"
    )
    # The name is free again.
    client.createSSHKeyPair(name=name)


def test_key_pair_events(server, api):
    _, client = user(server, api)
    name = unique("ev")
    client.createSSHKeyPair(name=name)
    client.deleteSSHKeyPair(name=name)
    types = {e["type"] for e in client.listEvents().get("event", [])}
    assert {"SSH.KEYPAIR.CREATE", "SSH.KEYPAIR.DELETE"} <= types


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def tagged_volume(server, api, commands, zone, disk_offering):
    require(commands, "createVolume", "listVolumes")
    account, client = user(server, api)
    volume = create_volume(client, zone, disk_offering)
    return account, client, volume


def test_tags_on_a_volume(server, api, tagged_volume):
    account, client, volume = tagged_volume
    result = client.createTags(
        resourceids=volume["id"],
        resourcetype="volume",
        tags=[{"key": "env", "value": "prod"}, {"key": "team", "value": "blue"}],
    )
    assert_success(result)
    listed = tags(client, resourceid=volume["id"])
    assert sorted((t["key"], t["value"]) for t in listed) == [("env", "prod"), ("team", "blue")]
    for t in listed:
        assert t["resourcetype"] == "Volume"
        assert t["resourceid"] == volume["id"]
        assert t["account"] == account["name"]
        assert t["domainid"] == account["domainid"]
        assert t["domain"] == account["domain"]
    assert [t["value"] for t in tags(client, key="ENV")] == ["prod"]
    assert [t["key"] for t in tags(client, value="blue")] == ["team"]
    assert [t["key"] for t in tags(client, keyword="blu")] == ["team"]
    assert tags(client, resourcetype="UserVm") == []

    # A key already on the resource: refused, in any case.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(
            resourceids=volume["id"], resourcetype="Volume", tags={"key": "ENV", "value": "x"}
        )
    assert refused(excinfo, 431) == f"tag ENV already on Volume with id {volume['id']}"

    # Another user may neither tag it nor see its tags.
    _, other = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.createTags(
            resourceids=volume["id"], resourcetype="Volume", tags={"key": "a", "value": "b"}
        )
    refused(excinfo, 531)
    assert tags(other, resourceid=volume["id"]) == []
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        other.deleteTags(resourceids=volume["id"], resourcetype="Volume")
    refused(excinfo, 531)

    # The admin may, and the tag is the owner's.
    assert_success(
        waiting(server, api).createTags(
            resourceids=volume["id"], resourcetype="Volume", tags={"key": "ops", "value": "1"}
        )
    )
    [ops] = tags(client, key="ops")
    assert ops["account"] == account["name"]
    assert len(tags(api, listall=True, resourceid=volume["id"])) == 3

    # Delete by key (any value), by key and value, then everything.
    assert_success(
        client.deleteTags(resourceids=volume["id"], resourcetype="Volume", tags={"key": "team"})
    )
    assert sorted(t["key"] for t in tags(client, resourceid=volume["id"])) == ["env", "ops"]
    assert_success(
        client.deleteTags(
            resourceids=volume["id"], resourcetype="Volume", tags={"key": "env", "value": "dev"}
        )
    )
    assert sorted(t["key"] for t in tags(client, resourceid=volume["id"])) == ["env", "ops"]
    # Tags that are not there are ignored.
    assert_success(
        client.deleteTags(resourceids=volume["id"], resourcetype="Volume", tags={"key": "nope"})
    )
    assert_success(client.deleteTags(resourceids=volume["id"], resourcetype="Volume"))
    assert tags(client, resourceid=volume["id"]) == []
    # The key is free again.
    assert_success(
        client.createTags(
            resourceids=volume["id"], resourcetype="Volume", tags={"key": "env", "value": "qa"}
        )
    )


def test_tags_show_on_the_volume(server, api, tagged_volume):
    _, client, volume = tagged_volume
    client.createTags(resourceids=volume["id"], resourcetype="Volume", tags={"key": "k", "value": "v"})
    [listed] = client.listVolumes(id=volume["id"])["volume"]
    [tag] = listed["tags"]
    assert (tag["key"], tag["value"], tag["resourcetype"]) == ("k", "v", "Volume")


def test_create_tags_checks_its_parameters(server, api, tagged_volume):
    _, client, volume = tagged_volume
    cases = [
        (dict(resourcetype="Volume", tags={"key": "a", "value": "b"}), "resourceids"),
        (dict(resourceids=volume["id"], tags={"key": "a", "value": "b"}), "resourcetype"),
        (dict(resourceids=volume["id"], resourcetype="Volume"), "tags"),
    ]
    for params, missing in cases:
        with pytest.raises(cs.CloudStackApiException) as excinfo:
            client.createTags(**params)
        assert api_error(excinfo, 431) == (
            f"Unable to execute API command createTags due to missing parameter {missing}"
        )
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(resourceids=volume["id"], resourcetype="Bogus", tags={"key": "a", "value": "b"})
    assert api_error(excinfo, 431) == "Invalid resource type Bogus"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(resourceids=volume["id"], resourcetype="Volume", tags={"key": "a", "value": ""})
    assert api_error(excinfo, 431) == "Value for the key a is either null or empty"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(resourceids=volume["id"], resourcetype="Volume", tags={"key": "", "value": "b"})
    api_error(excinfo, 431)
    # The volume is not a template.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(resourceids=volume["id"], resourcetype="Template", tags={"key": "a", "value": "b"})
    assert api_error(excinfo, 431) == (
        f"Unable to find resource by uuid {volume['id']} and type Template"
    )
    # One bad resource refuses the whole call.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(
            resourceids=f"{volume['id']},not-an-id", resourcetype="Volume",
            tags={"key": "a", "value": "b"},
        )
    api_error(excinfo, 431)
    assert tags(client, resourceid=volume["id"]) == []


def test_users_cannot_tag_the_public_admin_template(server, api, commands):
    require(commands, "listTemplates")
    featured = api.listTemplates(templatefilter="featured").get("template", [])
    if not featured:
        pytest.skip("the demo has no featured template yet")
    template = featured[0]
    _, client = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.createTags(
            resourceids=template["id"], resourcetype="Template", tags={"key": "a", "value": "b"}
        )
    refused(excinfo, 531)
    # Its owner, the admin, may.
    key = unique("os")
    assert_success(
        waiting(server, api).createTags(
            resourceids=template["id"], resourcetype="Template", tags={"key": key, "value": "x"}
        )
    )
    assert [t["resourcetype"] for t in tags(api, key=key)] == ["Template"]
    assert tags(client, key=key) == []
    assert_success(
        waiting(server, api).deleteTags(
            resourceids=template["id"], resourcetype="Template", tags={"key": key}
        )
    )


# --------------------------------------------------------------------------------------------
# Resource limits
# --------------------------------------------------------------------------------------------


def setting(api, name: str) -> int:
    [item] = [c for c in api.listConfigurations(name=name)["configuration"] if c["name"] == name]
    return int(item["value"])


def test_default_limits_are_the_account_settings(server, api):
    account, client = user(server, api)
    shown = limits(client)
    assert set(shown) == set(LIMIT_SETTINGS)
    for number, (type_name, name) in LIMIT_SETTINGS.items():
        item = shown[number]
        assert item["resourcetypename"] == type_name
        assert item["max"] == max(setting(api, name), -1), (number, item)
        assert item["account"] == account["name"]
        assert item["domainid"] == account["domainid"]
        assert item["domain"] == account["domain"]
    # One type, by number or by name.
    assert list(limits(client, resourcetype=2)) == ["2"]
    assert list(limits(client, resourcetypename="cpu")) == ["8"]
    # Root admin accounts have no limits.
    assert {item["max"] for item in limits(api).values()} == {-1}


def test_update_resource_limit_then_list(server, api):
    account, client = user(server, api)
    owner = dict(account=account["name"], domainid=account["domainid"])
    updated = api.updateResourceLimit(resourcetype=2, max=7, **owner)["resourcelimit"]
    assert updated == {
        "account": account["name"],
        "domainid": account["domainid"],
        "domain": account["domain"],
        "domainpath": updated["domainpath"],
        "resourcetype": "2",
        "resourcetypename": "volume",
        "max": 7,
    }
    assert limits(client)["2"]["max"] == 7
    assert limits(api, **owner)["2"]["max"] == 7
    # Other accounts keep the default.
    _, other = user(server, api)
    assert limits(other)["2"]["max"] == setting(api, "max.account.volumes")
    # Unlimited, then back to the default without `max`.
    assert api.updateResourceLimit(resourcetype=2, max=-1, **owner)["resourcelimit"]["max"] == -1
    assert limits(client)["2"]["max"] == -1
    back = api.updateResourceLimit(resourcetype=2, **owner)["resourcelimit"]
    assert back["max"] == setting(api, "max.account.volumes")
    types = {e["type"] for e in api.listEvents(listall=True).get("event", [])}
    assert "RESOURCE.LIMIT.UPDATE" in types


def test_update_resource_limit_refusals(server, api, root_domain_id):
    account, client = user(server, api)
    owner = dict(account=account["name"], domainid=account["domainid"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceLimit(resourcetype=2, max=-2, **owner)
    assert api_error(excinfo, 431) == (
        "Please specify either '-1' for an infinite limit, or a limit that is at least '0'."
    )
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceLimit(resourcetype=99, max=1, **owner)
    assert api_error(excinfo, 431) == "Please specify valid resource type"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceLimit(resourcetype=2, max=1)
    assert api_error(excinfo, 431) == (
        "AccountId or domainId have to be specified in order to update resource limit"
    )
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceLimit(resourcetype=2, max=1, account="admin", domainid=root_domain_id)
    assert api_error(excinfo, 431) == "Only -1 limit is supported for Root Admin accounts"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceLimit(resourcetype=2, max=1, domainid=root_domain_id)
    api_error(excinfo, 531)
    # Users may not change limits at all.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.updateResourceLimit(resourcetype=2, max=100, **owner)
    api_error(excinfo, 432)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.updateResourceCount(domainid=account["domainid"])
    api_error(excinfo, 432)


@pytest.fixture()
def domain_admin_setup(server, api):
    """A domain D with a domain admin, a user, and a subdomain D2."""
    domain = api.createDomain(name=unique("lim"))["domain"]
    sub = api.createDomain(name=unique("limsub"), parentdomainid=domain["id"])["domain"]
    name = unique("da")
    admin = api.createAccount(
        username=name, password=f"pw-{name}", email=f"{name}@example.org",
        firstname="Domain", lastname="Admin", accounttype=2, domainid=domain["id"],
    )["account"]
    keys = api.registerUserKeys(id=admin["user"][0]["id"])["userkeys"]
    da = server.client(key=keys["apikey"], secret=keys["secretkey"])
    member, _ = user(server, api, domainid=domain["id"])
    return domain, sub, admin, da, member


def test_domain_admin_limits(server, api, domain_admin_setup):
    domain, sub, admin, da, member = domain_admin_setup
    # An account of their domain: yes.
    item = da.updateResourceLimit(
        resourcetype=0, max=3, account=member["name"], domainid=domain["id"]
    )["resourcelimit"]
    assert (item["account"], item["max"]) == (member["name"], 3)
    assert limits(da, account=member["name"], domainid=domain["id"])["0"]["max"] == 3
    # Their own account or domain: no.
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        da.updateResourceLimit(resourcetype=0, max=30, account=admin["name"], domainid=domain["id"])
    assert "their own account" in api_error(excinfo, 531)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        da.updateResourceLimit(resourcetype=0, max=30, domainid=domain["id"])
    api_error(excinfo, 531)
    # Accounts outside their subtree: no.
    outsider, _ = user(server, api)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        da.updateResourceLimit(
            resourcetype=0, max=30, account=outsider["name"], domainid=outsider["domainid"]
        )
    api_error(excinfo, 531)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        da.listResourceLimits(account=outsider["name"], domainid=outsider["domainid"])
    api_error(excinfo, 531)
    # A subdomain: yes, within the parent's limit.
    api.updateResourceLimit(resourcetype=2, max=3, domainid=domain["id"])
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        da.updateResourceLimit(resourcetype=2, max=5, domainid=sub["id"])
    assert api_error(excinfo, 431).startswith(
        f"Domain {domain['name']} has maximum allowed resource limit 3 for volume"
    )
    item = da.updateResourceLimit(resourcetype=2, max=2, domainid=sub["id"])["resourcelimit"]
    assert "account" not in item
    assert (item["domainid"], item["max"]) == (sub["id"], 2)
    shown = limits(da, domainid=sub["id"])
    assert set(shown) == set(LIMIT_SETTINGS)
    assert shown["2"]["max"] == 2
    assert all(v["max"] == -1 for k, v in shown.items() if k != "2")
    assert all("account" not in v for v in shown.values())
    # With no account or domain, a domain admin sees their own account's limits.
    assert {v["account"] for v in limits(da).values()} == {admin["name"]}


def test_update_resource_count_reports_counts(server, api, commands, zone, disk_offering):
    domain = api.createDomain(name=unique("cnt"))["domain"]
    account, client = user(server, api, domainid=domain["id"])
    owner = dict(account=account["name"], domainid=domain["id"])
    counts = api.updateResourceCount(**owner)
    assert counts["count"] == len(LIMIT_SETTINGS)
    by_type = {c["resourcetype"]: c for c in counts["resourcecount"]}
    assert set(by_type) == set(LIMIT_SETTINGS)
    for number, (type_name, _) in LIMIT_SETTINGS.items():
        item = by_type[number]
        assert item["resourcetypename"] == type_name
        assert item["resourcecount"] == 0
        assert item["account"] == account["name"]
        assert item["domainid"] == domain["id"]
    [one] = api.updateResourceCount(resourcetype=2, **owner)["resourcecount"]
    assert one["resourcetype"] == "2"
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        api.updateResourceCount(domainid=domain["id"], resourcetype=42)
    assert api_error(excinfo, 431) == "Please specify valid resource type"

    if "createVolume" not in commands:
        return
    create_volume(client, zone, disk_offering)
    [held] = api.updateResourceCount(resourcetype=2, **owner)["resourcecount"]
    assert held["resourcecount"] == 1
    [storage] = api.updateResourceCount(resourcetype=10, **owner)["resourcecount"]
    assert storage["resourcecount"] == disk_offering["disksize"]
    # The domain's count covers its accounts (and subdomains').
    [in_domain] = api.updateResourceCount(domainid=domain["id"], resourcetype=2)["resourcecount"]
    assert "account" not in in_domain
    assert in_domain["resourcecount"] == 1


def test_volume_limit_is_enforced(server, api, commands, zone, disk_offering):
    require(commands, "createVolume", "listVolumes")
    account, client = user(server, api)
    api.updateResourceLimit(
        resourcetype=2, max=1, account=account["name"], domainid=account["domainid"]
    )
    create_volume(client, zone, disk_offering)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        create_volume(client, zone, disk_offering)
    assert "volume" in refused(excinfo, 532)
    assert len(client.listVolumes().get("volume", [])) == 1


def test_user_vm_limit_is_enforced(server, api, commands, zone):
    require(commands, "deployVirtualMachine", "listVirtualMachines", "listTemplates")
    featured = [
        t for t in api.listTemplates(templatefilter="featured").get("template", [])
        if t.get("zoneid") == zone["id"]
    ]
    if not featured:
        pytest.skip("the demo has no featured template yet")
    offering = next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )
    account, client = user(server, api)
    api.updateResourceLimit(
        resourcetype=0, max=1, account=account["name"], domainid=account["domainid"]
    )
    params = dict(
        zoneid=zone["id"], templateid=featured[0]["id"], serviceofferingid=offering["id"],
        startvm=False,
    )
    client.deployVirtualMachine(name=unique("vm"), **params)
    with pytest.raises(cs.CloudStackApiException) as excinfo:
        client.deployVirtualMachine(name=unique("vm"), **params)
    assert "user_vm" in refused(excinfo, 532)
    assert len(client.listVirtualMachines().get("virtualmachine", [])) == 1
    [count] = api.updateResourceCount(
        resourcetype=0, account=account["name"], domainid=account["domainid"]
    )["resourcecount"]
    assert count["resourcecount"] == 1
