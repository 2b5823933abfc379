"""Shared set-up of the `cs` suites: one `ledgerstack serve --demo` process for the whole
session (127.0.0.1, a port the kernel picks, data in a temporary directory removed at the end),
an HMAC-SHA1 signer written from spec/api.md that shares nothing with the server's, and helpers
every suite uses."""
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

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120  # seconds for the server to print its endpoint (a debug build on a busy machine)
STOP_TIMEOUT = 60
HTTP_TIMEOUT = 30
ROOT_DOMAIN_PATH = "/"
SIGNATURE_FAILURE = "unable to verify user credentials and/or request signature"

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test of this session uses."""
    return f"{prefix}{next(_names):04d}"


# --------------------------------------------------------------------------------------------
# An independent signer, written from spec/api.md "Signing"
# --------------------------------------------------------------------------------------------

_JAVA_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-*_"
)


def java_encode(value: str) -> str:
    """Java's URLEncoder (UTF-8) with `+` replaced by `%20`: everything but A-Z a-z 0-9 . - * _
    is percent-encoded (so `~` becomes %7E and a space %20)."""
    return "".join(
        chr(byte) if byte in _JAVA_SAFE else f"%{byte:02X}" for byte in value.encode("utf-8")
    )


def string_to_sign(params: dict[str, str]) -> str:
    """Every parameter but `signature`, sorted by raw name in UTF-16 code units, `name=ENC(value)`
    joined with `&`, the whole lowercased."""
    pairs = sorted(
        ((k, v) for k, v in params.items() if k != "signature"),
        key=lambda kv: kv[0].encode("utf-16-be"),
    )
    return "&".join(f"{k}={java_encode(v)}" for k, v in pairs).lower()


def hmac_sign(text: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(params: dict[str, str], secret: str) -> str:
    return hmac_sign(string_to_sign(params), secret)


def cs_expires(at: datetime) -> str:
    """`expires` as `cs` sends it: `%Y-%m-%dT%H:%M:%S%z` (`2024-05-01T10:00:00+0000`)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S%z")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class Server:
    def __init__(self, proc, endpoint, credentials, workdir, stderr_path):
        self.proc = proc
        self.endpoint = endpoint
        self.credentials = credentials
        self.workdir = workdir
        self.stderr_path = stderr_path

    @property
    def api_key(self) -> str:
        return self.credentials["api_key"]

    @property
    def secret_key(self) -> str:
        return self.credentials["secret_key"]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.stderr_path).read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def client(self, key=None, secret=None, **options) -> cs.CloudStack:
        """A `cs` client; the root admin's by default. Polls jobs every 50 ms for at most 60 s."""
        options.setdefault("poll_interval", 0.05)
        options.setdefault("job_timeout", 60)
        options.setdefault("timeout", HTTP_TIMEOUT)
        return cs.CloudStack(
            endpoint=self.endpoint,
            key=self.api_key if key is None else key,
            secret=self.secret_key if secret is None else secret,
            **options,
        )

    def raw(self, params, *, secret=None, signed=True, method="GET", cookies=None, session=None):
        """A hand-built request: `params` signed with our own signer (admin's secret by default)."""
        params = dict(params)
        if signed:
            params["signature"] = sign(params, self.secret_key if secret is None else secret)
        http = session if session is not None else requests
        if method == "GET":
            return http.get(self.endpoint, params=params, cookies=cookies, timeout=HTTP_TIMEOUT)
        return http.post(self.endpoint, data=params, cookies=cookies, timeout=HTTP_TIMEOUT)

    def raw_admin(self, command, **params):
        """A hand-built call signed by the root admin (API key added)."""
        return self.raw({"command": command, "apiKey": self.api_key, **params})


def _read_lines(stream, lines: queue.Queue, seen: list):
    for line in stream:
        seen.append(line)
        lines.put(line)
    lines.put(None)


def _ledgerstack(binary, *args) -> str:
    """Runs an offline `ledgerstack` command; its stdout (fails the session on an error)."""
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=STOP_TIMEOUT)
    assert done.returncode == 0, f"ledgerstack {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def server():
    binary = Path(os.environ.get("LEDGERSTACK_BIN", "target/debug/ledgerstack"))
    if not binary.is_absolute():
        binary = REPO / binary
    if not binary.exists():
        pytest.fail(f"no server binary at {binary}: run `cargo build` or set LEDGERSTACK_BIN")
    workdir = Path(tempfile.mkdtemp(prefix="ledgerstack-cs-"))
    data_dir = workdir / "data"
    stderr_path = workdir / "server.log"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--demo"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=workdir,
        )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines, seen), daemon=True)
    reader.start()
    try:
        endpoint = None
        deadline = time.monotonic() + START_TIMEOUT
        while endpoint is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the server printed no endpoint in {START_TIMEOUT} s:\n" + "".join(seen)
                    + Path(stderr_path).read_text(errors="replace")
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the server exited ({proc.wait()}) before printing its endpoint:\n"
                    + "".join(seen)
                    + Path(stderr_path).read_text(errors="replace")
                )
            found = re.match(r"Ledgerstack API on (http://127\.0\.0\.1:\d+/client/api) ", line)
            if found:
                endpoint = found.group(1)
        credentials = json.loads((data_dir / "admin-credentials.json").read_text())
        assert set(credentials) >= {"username", "password", "api_key", "secret_key"}
        srv = Server(proc, endpoint, credentials, workdir, stderr_path)
        yield srv
        # An online backup of everything the session did, taken while the server still runs.
        _ledgerstack(binary, "backup", str(workdir / "backup"), "--data-dir", str(data_dir))
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = f"still running {STOP_TIMEOUT} s after SIGTERM"
        reader.join(timeout=STOP_TIMEOUT)
        assert code == 0, f"SIGTERM: exit {code}\n{srv.log_tail()}"
        assert any(line.startswith("Stopped.") for line in seen), "".join(seen)
        # The read models the server built while the whole session ran against it equal
        # those rebuilt from its log (DESIGN.md invariant 1).
        live = _ledgerstack(binary, "digest", "--data-dir", str(data_dir)).split()[0]
        rebuilt = _ledgerstack(binary, "rebuild", "--data-dir", str(data_dir))
        assert f"digest {live}" in rebuilt, (live, rebuilt)
        _audit_round_trip(binary, workdir, data_dir, live)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _audit_round_trip(binary: Path, workdir: Path, data_dir: Path, live: str):
    """The auditor's and operator's tools over the log the whole session's `cs` traffic wrote
    (issue 8): export -> verify -> import into an empty data directory -> the same digest; a
    point-in-time replay of the whole log and a rebuild of the usage models alone give it too;
    the online backup restores to the digest of its head; tail agrees with export."""
    export = workdir / "export.jsonl.zst"
    _ledgerstack(binary, "export", "--data-dir", str(data_dir), "--zstd", "-o", str(export))
    verified = _ledgerstack(binary, "verify", str(export))
    assert "verifies" in verified, verified
    restored = workdir / "restored"
    _ledgerstack(binary, "import", str(export), "--data-dir", str(restored))
    assert _ledgerstack(binary, "digest", "--data-dir", str(restored)).split()[0] == live
    replayed = json.loads(_ledgerstack(binary, "replay", "--data-dir", str(data_dir), "--json"))
    assert replayed["digest"] == live, replayed
    partial = _ledgerstack(binary, "rebuild", "--only", "usage", "--data-dir", str(data_dir))
    assert f"digest {live}" in partial, partial
    # The backup taken while the server ran restores to the state of its head position.
    manifest = json.loads((workdir / "backup" / "manifest.json").read_text())
    from_backup = workdir / "from-backup"
    _ledgerstack(binary, "restore", str(workdir / "backup"), "--data-dir", str(from_backup))
    at_head = json.loads(_ledgerstack(binary, "replay", "--data-dir", str(data_dir), "--at",
                                      str(manifest["head_position"]), "--json"))
    assert _ledgerstack(binary, "digest", "--data-dir", str(from_backup)).split()[0] \
        == at_head["digest"], (manifest, at_head)
    # `tail --json` prints the export's lines, byte for byte.
    last = _ledgerstack(binary, "tail", "-n", "5", "--json", "--data-dir", str(data_dir))
    exported = _ledgerstack(binary, "export", "--data-dir", str(data_dir)).splitlines()
    assert last.splitlines() == exported[-6:-1]


@pytest.fixture(scope="session")
def api(server) -> cs.CloudStack:
    """The root admin through `cs` (signed GET, signatureVersion 3, 10-minute expiry)."""
    return server.client()


@pytest.fixture(scope="session")
def commands(api) -> set[str]:
    """The commands the root admin may call, from listApis."""
    return {a["name"] for a in api.listApis()["api"]}


@pytest.fixture(scope="session")
def zone(api):
    """The demo zone."""
    [zone] = [z for z in api.listZones()["zone"] if z["name"] == "Demo Zone"]
    return zone


@pytest.fixture(scope="session")
def template(api, zone):
    """The demo's featured template in the demo zone."""
    return next(
        t for t in api.listTemplates(templatefilter="featured")["template"]
        if t["zoneid"] == zone["id"]
    )


@pytest.fixture(scope="session")
def offering(api):
    """The demo's `Small Instance` service offering."""
    return next(
        o for o in api.listServiceOfferings()["serviceoffering"] if o["name"] == "Small Instance"
    )


def waiting(server, client: cs.CloudStack) -> cs.CloudStack:
    """The same caller, waiting for async jobs (`fetch_result`)."""
    return server.client(key=client.key, secret=client.secret, fetch_result=True)


def require(commands: set[str], *names: str):
    missing = [n for n in names if n not in commands]
    if missing:
        pytest.skip(f"command {', '.join(missing)} not implemented yet (absent from listApis)")


@pytest.fixture(scope="session")
def root_domain_id(api) -> str:
    [root] = [d for d in api.listDomains(listall=True, name="ROOT")["domain"]
              if "parentdomainid" not in d]
    return root["id"]


class RecordingSession(requests.Session):
    """A requests session that keeps every request `cs` sends and every response it gets."""

    def __init__(self):
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.received: list[requests.Response] = []

    def send(self, request, **kwargs):
        response = super().send(request, **kwargs)
        self.sent.append(request)
        self.received.append(response)
        return response


def sent_params(request: requests.PreparedRequest) -> dict[str, str]:
    if request.method == "GET":
        return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    return dict(parse_qsl(body, keep_blank_values=True))


def new_user(server, api, *, domainid=None, keys=True):
    """A fresh normal-user account (type 0) with API keys; returns (account, user, cs client)."""
    name = unique("user")
    params = dict(
        username=name,
        password=f"pw-{name}",
        email=f"{name}@example.org",
        firstname="Test",
        lastname=name.capitalize(),
        accounttype=0,
    )
    if domainid:
        params["domainid"] = domainid
    account = api.createAccount(**params)["account"]
    [user] = account["user"]
    client = None
    if keys:
        userkeys = api.registerUserKeys(id=user["id"])["userkeys"]
        client = server.client(key=userkeys["apikey"], secret=userkeys["secretkey"])
    return account, user, client


def api_error(excinfo, status: int, cserrorcode: int | None = None) -> str:
    """Checks a `cs.CloudStackApiException`: HTTP status, errorcode, cserrorcode; the errortext."""
    e = excinfo.value
    assert isinstance(e, cs.CloudStackApiException), repr(e)
    assert e.response.status_code == status, (e.response.status_code, e.error)
    assert e.error["errorcode"] == status, e.error
    if cserrorcode is not None:
        assert e.error.get("cserrorcode") == cserrorcode, e.error
    assert isinstance(e.error.get("errortext"), str) and e.error["errortext"], e.error
    return e.error["errortext"]


def assert_success(result):
    """A job's `{"success": true}`: a JSON boolean, not the string "true" (spec/api.md)."""
    assert result.get("success") is True, result
    assert set(result) <= {"success", "displaytext", "details"}, result


def envelope_key(response: requests.Response) -> str:
    [key] = response.json().keys()
    return key


def eventually(probe, what: str, timeout: float = 10.0, step: float = 0.05):
    """Bounded polling: `probe()` until it returns something truthy, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value!r}")
        time.sleep(step)


# --------------------------------------------------------------------------------------------
# A server of a test's own (restart tests: SIGKILL, start again on the same data)
# --------------------------------------------------------------------------------------------


def server_binary() -> Path:
    """The server binary the suites run: $LEDGERSTACK_BIN, relative to the repository."""
    binary = Path(os.environ.get("LEDGERSTACK_BIN", "target/debug/ledgerstack"))
    return binary if binary.is_absolute() else REPO / binary


def launch_server(data_dir: Path, log_path: Path, *extra_args: str) -> Server:
    """Starts `ledgerstack serve --data-dir <data_dir> --listen 127.0.0.1:0 <extra_args>` and
    waits for its endpoint (stderr appended to `log_path`, so a restart keeps the first run's
    log). The `Server` has two more attributes: `output`, every stdout line so far (a reader
    thread keeps appending), and `reader`, that thread. Stop it with `stop_server`."""
    binary = server_binary()
    if not binary.exists():
        pytest.fail(f"no server binary at {binary}: run `cargo build` or set LEDGERSTACK_BIN")
    data_dir = Path(data_dir)
    with open(log_path, "ab") as stderr:
        proc = subprocess.Popen(
            [str(binary), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
             *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=data_dir.parent,
        )
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines, seen), daemon=True)
    reader.start()
    endpoint = None
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while endpoint is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the server printed no endpoint in {START_TIMEOUT} s:\n" + "".join(seen)
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"the server exited ({proc.wait()}) before printing its endpoint:\n"
                    + "".join(seen) + Path(log_path).read_text(errors="replace")
                )
            found = re.match(r"Ledgerstack API on (http://127\.0\.0\.1:\d+/client/api) ", line)
            if found:
                endpoint = found.group(1)
        credentials = json.loads((data_dir / "admin-credentials.json").read_text())
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    srv = Server(proc, endpoint, credentials, data_dir.parent, log_path)
    srv.output = seen
    srv.reader = reader
    return srv


def stop_server(srv: Server, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT):
    """Sends `sig` to a server `launch_server` started; its exit code (an int), or a sentence
    when it was still running `timeout` s later (then it is killed)."""
    if srv.proc.poll() is None:
        srv.proc.send_signal(sig)
    try:
        code = srv.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait()
        code = f"still running {timeout} s after signal {sig}"
    srv.reader.join(timeout=timeout)
    return code
