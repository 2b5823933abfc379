"""Alert delivery end to end through `cs` (issue 7, docs/alert-delivery.md), on private servers:
a real HTTP receiver (Python `http.server`, 127.0.0.1) that refuses the first two attempts of
every delivery, checks the HMAC-SHA256 signature and deduplicates by `Idempotency-Key`, and a
real SMTP server (`aiosmtpd`, 127.0.0.1, with authentication). Each alert arrives once at each,
also when the server is killed between the raise and the delivery and started again on the same
data; the sink commands refuse bad input with 431 and non-admins with 432."""
from __future__ import annotations

import hashlib
import hmac
import json
import signal
import socket
import threading
from collections import Counter
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cs import CloudStackApiException

from conftest import (_ledgerstack, api_error, eventually, launch_server, new_user, server_binary,
                      stop_server)

SECRET = "webhook-s3cret"
SMTP_USER = "alerts"
SMTP_PASSWORD = "smtp-pa55word"
SENDER = "alerts@ledgerstack.test"
RECIPIENTS = ["ops@example.org", "oncall@example.org"]
REFUSED_ATTEMPTS = 2  # the webhook receiver answers 503 to this many attempts of each key
# The payload's fields, in order (docs/alert-delivery.md "Payload").
PAYLOAD_FIELDS = ["idempotencykey", "notificationid", "kind", "alertid", "type", "name",
                  "description", "sent", "accountid", "zoneid"]
DELIVERY_TIMEOUT = 60  # seconds; retries wait 100 ms doubling up to 1 s

# The SMTP server wants AUTH without TLS on purpose: loopback only, and the server under test
# speaks plain SMTP (docs/alert-delivery.md "Limits").
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class WebhookReceiver:
    """A webhook receiver as docs/alert-delivery.md asks one to be: verifies the signature,
    deduplicates by key. Answers 503 to the first `REFUSED_ATTEMPTS` attempts of each key, and
    to every attempt while `refusing` (a receiver that is down)."""

    def __init__(self, secret: str):
        self.lock = threading.Lock()
        self.refusing = False
        self.attempts: Counter = Counter()  # key -> requests seen
        self.accepted_posts: Counter = Counter()  # key -> requests answered 200
        self.payloads: dict[str, dict] = {}  # key -> the payload first accepted (deduplicated)
        self.problems: list[str] = []
        receiver = self
        key = secret.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                idempotency_key = self.headers.get("Idempotency-Key", "")
                expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
                signature = self.headers.get("X-Ledgerstack-Signature", "")
                with receiver.lock:
                    if not hmac.compare_digest(signature, expected):
                        receiver.problems.append(f"bad signature for {idempotency_key}")
                        status = 401
                    else:
                        payload = json.loads(body)
                        if payload.get("idempotencykey") != idempotency_key:
                            receiver.problems.append(f"header/payload keys differ: {payload}")
                        if self.headers.get("Content-Type") != "application/json":
                            receiver.problems.append(f"content type {self.headers}")
                        receiver.attempts[idempotency_key] += 1
                        if receiver.refusing or receiver.attempts[idempotency_key] <= REFUSED_ATTEMPTS:
                            status = 503
                        else:
                            receiver.accepted_posts[idempotency_key] += 1
                            receiver.payloads.setdefault(idempotency_key, payload)
                            status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/alerts?from=ledgerstack"

    def delivered(self) -> dict[str, dict]:
        with self.lock:
            return dict(self.payloads)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailReceiver:
    """An SMTP server wanting AUTH (PLAIN/LOGIN over plain SMTP, loopback only) that keeps the
    first message of each idempotency key; answers 451 (try later) while `refusing`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.refusing = False
        self.received: Counter = Counter()  # key -> messages accepted
        self.messages: dict[str, tuple] = {}  # key -> (message, mail_from, rcpt_tos), first
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     authenticator=self.authenticate, auth_required=True,
                                     auth_require_tls=False)
        self.controller.start()

    @staticmethod
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == SMTP_USER.encode()
              and auth_data.password == SMTP_PASSWORD.encode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server, session, envelope):
        if self.refusing:
            return "451 4.3.0 Mailbox busy, try again later"
        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)
        key = message["X-Ledgerstack-Idempotency-Key"]
        with self.lock:
            self.received[key] += 1
            self.messages.setdefault(key, (message, envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def delivered(self) -> dict[str, tuple]:
        with self.lock:
            return dict(self.messages)

    def close(self):
        self.controller.stop()


@pytest.fixture
def receivers():
    hook, mail = WebhookReceiver(SECRET), MailReceiver()
    yield hook, mail
    hook.close()
    mail.close()


def deliveries(admin, **filters) -> list[dict]:
    return admin.listAlertDeliveries(**filters).get("alertdelivery", [])


def raise_alert(admin, type_: int, name: str, description: str) -> str:
    """generateAlert (a custom type, so no open alert of a listed type stands in the way); the
    alert's id."""
    admin.generateAlert(type=type_, name=name, description=description)
    [alert] = admin.listAlerts(name=name)["alert"]
    return alert["id"]


def wait_delivered(admin, alert_id: str, sinks: int) -> list[dict]:
    def done():
        rows = deliveries(admin, alertid=alert_id)
        if len(rows) == sinks and all(r["state"] == "delivered" for r in rows):
            return rows
        return None
    return eventually(done, f"the deliveries of alert {alert_id}", timeout=DELIVERY_TIMEOUT,
                      step=0.1)


def by_sink(rows: list[dict]) -> dict[str, dict]:
    return {r["sinkid"]: r for r in rows}


def test_each_alert_reaches_the_webhook_and_the_mailbox_once_across_failures_and_a_restart(
        tmp_path, receivers):
    hook_receiver, mail_receiver = receivers
    data, log = tmp_path / "data", tmp_path / "server.log"
    srv = launch_server(data, log)
    try:
        admin = srv.client(fetch_result=True)
        admin.updateConfiguration(name="alert.delivery.backoff.base", value="100")
        admin.updateConfiguration(name="alert.delivery.backoff.max", value="1000")
        hook = admin.createAlertSink(name="ops-hook", type="webhook", url=hook_receiver.url,
                                     secret=SECRET, maxattempts=100)["alertsink"]
        mail = admin.createAlertSink(name="ops-mail", type="email", smtphost="127.0.0.1",
                                     smtpport=mail_receiver.port, smtpusername=SMTP_USER,
                                     smtppassword=SMTP_PASSWORD,
                                     emailfrom=f"Ledgerstack <{SENDER}>",
                                     emailto=",".join(RECIPIENTS), maxattempts=100)["alertsink"]
        quota_only = admin.createAlertSink(name="quota-only", type="webhook",
                                           url="http://127.0.0.1:9/never", alerttypes="1002,1001",
                                           )["alertsink"]
        assert hook["hassecret"] is True and "secret" not in hook
        assert mail["hassmtppassword"] is True and "smtppassword" not in mail
        assert mail["emailto"] == RECIPIENTS and mail["smtpport"] == mail_receiver.port
        assert quota_only["alerttypes"] == [1001, 1002]
        listed = {s["name"]: s for s in admin.listAlertSinks()["alertsink"]}
        assert set(listed) == {"ops-hook", "ops-mail", "quota-only"}
        assert not any(k in s for s in listed.values() for k in ("secret", "smtppassword"))

        # 1. Two refusals, then the webhook takes it; the mail goes through at once.
        first = raise_alert(admin, 2101, "TEST.DELIVERY.FIRST", "the first alert\nof two lines")
        rows = by_sink(wait_delivered(admin, first, sinks=2))
        assert deliveries(admin, sinkid=quota_only["id"]) == []
        to_hook, to_mail = rows[hook["id"]], rows[mail["id"]]
        assert to_hook["attempts"] == REFUSED_ATTEMPTS + 1 and "503" in to_hook["lasterror"]
        assert to_mail["attempts"] == 1 and "lasterror" not in to_mail
        assert "nextattempt" not in to_hook
        assert to_hook["id"] != to_mail["id"]

        key = to_hook["id"]
        assert hook_receiver.attempts[key] == REFUSED_ATTEMPTS + 1
        assert hook_receiver.accepted_posts[key] == 1
        payload = hook_receiver.delivered()[key]
        assert list(payload) == PAYLOAD_FIELDS
        assert payload["kind"] == "raise" and payload["alertid"] == first
        assert payload["type"] == 2101 and payload["name"] == "TEST.DELIVERY.FIRST"
        assert payload["description"] == "the first alert\nof two lines"
        assert payload["notificationid"] == to_hook["notificationid"]
        assert payload["accountid"] is None and payload["zoneid"] is None

        message, mail_from, rcpt_tos = mail_receiver.delivered()[to_mail["id"]]
        assert mail_receiver.received[to_mail["id"]] == 1
        assert mail_from == SENDER and sorted(rcpt_tos) == sorted(RECIPIENTS)
        assert message["Subject"] == "TEST.DELIVERY.FIRST: the first alert of two lines"
        assert message["Message-ID"] == f"<{to_mail['id']}@alerts.ledgerstack>"
        text = message.get_content().replace("\r\n", "\n")
        assert f"idempotencykey: {to_mail['id']}\n" in text
        assert f"alertid: {first}\n" in text and "kind: raise\n" in text
        assert hook_receiver.problems == []

        # 2. Receivers down: attempts fail and are recorded; the server is killed with two
        # deliveries of one alert failing and those of another perhaps not yet attempted.
        hook_receiver.refusing = mail_receiver.refusing = True
        during = raise_alert(admin, 2102, "TEST.DELIVERY.OUTAGE", "raised while receivers are down")
        eventually(lambda: len(deliveries(admin, alertid=during)) == 2
                   and all(r["attempts"] >= 1 for r in deliveries(admin, alertid=during)),
                   "failed attempts recorded", timeout=DELIVERY_TIMEOUT, step=0.1)
        assert all(r["state"] == "pending" and r["lasterror"]
                   for r in deliveries(admin, alertid=during))
        crash = raise_alert(admin, 2103, "TEST.DELIVERY.CRASH", "raised just before a kill")
        pending = {r["id"] for alert in (during, crash)
                   for r in deliveries(admin, alertid=alert, state="pending")}
        assert len(pending) == 4
        assert stop_server(srv, signal.SIGKILL) == -signal.SIGKILL
        assert not pending & set(hook_receiver.delivered())
        assert not pending & set(mail_receiver.delivered())

        # 3. Receivers back, server started again on the same data: delivered, once each.
        hook_receiver.refusing = mail_receiver.refusing = False
        srv = launch_server(data, log)
        admin = srv.client(fetch_result=True)
        for alert in (during, crash):
            rows = by_sink(wait_delivered(admin, alert, sinks=2))
            assert rows[hook["id"]]["id"] in hook_receiver.delivered()
            assert rows[mail["id"]]["id"] in mail_receiver.delivered()
        ours = {r["id"] for alert in (first, during, crash)
                for r in deliveries(admin, alertid=alert)}
        assert ours == pending | {to_hook["id"], to_mail["id"]}
        # Deduplicated by key, every alert arrived exactly once at each sink, and nothing of
        # ours arrived that the outbox does not list.
        hooked = {k: p for k, p in hook_receiver.delivered().items()
                  if p["name"].startswith("TEST.DELIVERY.")}
        mailed = {k: m for k, m in mail_receiver.delivered().items()
                  if m[0]["Subject"].startswith("TEST.DELIVERY.")}
        assert set(hooked) | set(mailed) == ours
        assert sorted(p["name"] for p in hooked.values()) == [
            "TEST.DELIVERY.CRASH", "TEST.DELIVERY.FIRST", "TEST.DELIVERY.OUTAGE"]
        assert sorted(m[0]["Subject"].split(":")[0] for m in mailed.values()) == [
            "TEST.DELIVERY.CRASH", "TEST.DELIVERY.FIRST", "TEST.DELIVERY.OUTAGE"]
        assert all(hook_receiver.accepted_posts[k] >= 1 for k in hooked)
        assert hook_receiver.problems == []
        counts = {s["name"]: s for s in admin.listAlertSinks()["alertsink"]}
        assert counts["ops-hook"]["delivered"] >= 3 and counts["ops-mail"]["delivered"] >= 3
    finally:
        code = stop_server(srv)
    assert code == 0, srv.log_tail()
    # The outbox is a fold of the log: rebuilt from it, the read models are the same.
    binary = server_binary()
    live = _ledgerstack(binary, "digest", "--data-dir", str(data)).split()[0]
    assert f"digest {live}" in _ledgerstack(binary, "rebuild", "--data-dir", str(data))


def test_a_delivery_is_given_up_after_the_sinks_attempts(tmp_path, receivers):
    hook_receiver, _ = receivers
    hook_receiver.refusing = True
    srv = launch_server(tmp_path / "data", tmp_path / "server.log")
    try:
        admin = srv.client(fetch_result=True)
        admin.updateConfiguration(name="alert.delivery.backoff.base", value="50")
        sink = admin.createAlertSink(name="flaky", type="webhook", url=hook_receiver.url,
                                     secret=SECRET, maxattempts=3)["alertsink"]
        alert = raise_alert(admin, 2201, "TEST.DELIVERY.GIVEUP", "never accepted")
        [row] = eventually(lambda: deliveries(admin, alertid=alert, state="failed"),
                           "the delivery given up", timeout=DELIVERY_TIMEOUT, step=0.1)
        assert row["attempts"] == 3 and "503" in row["lasterror"] and "nextattempt" not in row
        assert hook_receiver.attempts[row["id"]] == 3
        assert admin.listAlertSinks(id=sink["id"])["alertsink"][0]["failed"] >= 1
    finally:
        code = stop_server(srv)
    assert code == 0, srv.log_tail()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("alert-sinks")
    srv = launch_server(workdir / "data", workdir / "server.log")
    yield srv
    assert stop_server(srv) == 0, srv.log_tail()


def test_sinks_are_updated_and_deleted(private):
    admin = private.client()
    sink = admin.createAlertSink(name="to-update", type="webhook",
                                 url="http://127.0.0.1:9/a")["alertsink"]
    assert sink["hassecret"] is False and sink["alerttypes"] == [] and sink["maxattempts"] == 10
    updated = admin.updateAlertSink(id=sink["id"], url="http://127.0.0.1:9/b", secret="k",
                                    alerttypes="1003,13,13", maxattempts=4)["alertsink"]
    assert updated["url"] == "http://127.0.0.1:9/b" and updated["hassecret"] is True
    assert updated["alerttypes"] == [13, 1003] and updated["maxattempts"] == 4
    assert admin.updateAlertSink(id=sink["id"], alerttypes="all")["alertsink"]["alerttypes"] == []
    renamed = admin.updateAlertSink(id=sink["id"], name="renamed")["alertsink"]
    assert renamed["name"] == "renamed"
    assert admin.listAlertSinks(name="renamed")["alertsink"][0]["id"] == sink["id"]
    admin.deleteAlertSink(id=sink["id"])
    assert admin.listAlertSinks(id=sink["id"]).get("alertsink", []) == []
    with pytest.raises(CloudStackApiException) as e:
        admin.deleteAlertSink(id=sink["id"])
    assert "Unable to find alert sink" in api_error(e, 431)
    # The name is free again.
    again = admin.createAlertSink(name="renamed", type="webhook", url="http://127.0.0.1:9/")
    admin.deleteAlertSink(id=again["alertsink"]["id"])


@pytest.mark.parametrize("params, names", [
    (dict(type="webhook", url="ftp://127.0.0.1/x"), "url"),
    (dict(type="webhook", url="https://127.0.0.1/x"), "https"),
    (dict(type="webhook", url="not a url"), "url"),
    (dict(type="webhook"), "url"),
    (dict(type="webhook", url="http://127.0.0.1:9/", alerttypes="13,99999"), "alerttypes"),
    (dict(type="webhook", url="http://127.0.0.1:9/", alerttypes="2101"), "alerttypes"),
    (dict(type="webhook", url="http://127.0.0.1:9/", smtphost="127.0.0.1"), "email sinks"),
    (dict(type="webhook", url="http://127.0.0.1:9/", maxattempts=0), "maxattempts"),
    (dict(type="webhook", url="http://127.0.0.1:9/", maxattempts=101), "maxattempts"),
    (dict(type="pigeon"), "type"),
    (dict(type="email", emailfrom=SENDER, emailto="ops@example.org"), "smtphost"),
    (dict(type="email", smtphost="127.0.0.1", emailto="ops@example.org"), "emailfrom"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom=SENDER), "emailto"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom="nobody", emailto="ops@example.org"),
     "emailfrom"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom=SENDER, emailto="ops@example.org,x"),
     "emailto"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom=SENDER, emailto="ops@example.org",
          smtpport=70000), "smtpport"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom=SENDER, emailto="ops@example.org",
          smtpusername="u"), "smtppassword"),
    (dict(type="email", smtphost="127.0.0.1", emailfrom=SENDER, emailto="ops@example.org",
          url="http://127.0.0.1:9/"), "webhook sinks"),
])
def test_bad_sinks_are_refused_with_431_and_append_nothing(private, params, names):
    admin = private.client()
    before = admin.listAlertSinks().get("count", 0)
    with pytest.raises(CloudStackApiException) as e:
        admin.createAlertSink(name="bad", **params)
    assert names in api_error(e, 431)
    assert admin.listAlertSinks().get("count", 0) == before


def test_duplicate_names_bad_filters_and_non_admins_are_refused(private):
    admin = private.client()
    sink = admin.createAlertSink(name="Unique", type="webhook", url="http://127.0.0.1:9/")
    try:
        with pytest.raises(CloudStackApiException) as e:
            admin.createAlertSink(name="unique", type="webhook", url="http://127.0.0.1:9/")
        assert "already exists" in api_error(e, 431)
        with pytest.raises(CloudStackApiException) as e:
            admin.updateAlertSink(id=sink["alertsink"]["id"], url="https://example.org/")
        assert "https" in api_error(e, 431)
        with pytest.raises(CloudStackApiException) as e:
            admin.listAlertDeliveries(state="lost")
        assert "state" in api_error(e, 431)
        _, _, user = new_user(private, admin)
        for command, params in [
            ("createAlertSink", dict(name="mine", type="webhook", url="http://127.0.0.1:9/")),
            ("listAlertSinks", {}),
            ("updateAlertSink", dict(id=sink["alertsink"]["id"], name="x")),
            ("deleteAlertSink", dict(id=sink["alertsink"]["id"])),
            ("listAlertDeliveries", {}),
        ]:
            with pytest.raises(CloudStackApiException) as e:
                getattr(user, command)(**params)
            api_error(e, 432)
        assert admin.listAlertSinks(id=sink["alertsink"]["id"])["alertsink"][0]["name"] == "Unique"
    finally:
        admin.deleteAlertSink(id=sink["alertsink"]["id"])
