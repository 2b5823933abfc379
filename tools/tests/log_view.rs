//! `ledgerstack inspect` and `ledgerstack tail`, as an auditor or operator runs them: on a data
//! directory a real server bootstrapped with known history imported on top, and `tail --follow`
//! beside a running `serve --demo` that a real client makes append.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

fn ledgerstack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledgerstack"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// How long a test waits for a line it expects before it fails (a bound on a hang, not a
/// timing assertion: the line normally comes within a poll interval).
const PATIENCE: Duration = Duration::from_secs(120);

const DOMAIN: &str = "0d000000-0000-4000-8000-0000000000b1";
const ACCOUNT: &str = "0acc0000-0000-4000-8000-0000000000b1";
const OFFERING: &str = "05e00000-0000-4000-8000-0000000000b1";
const VM: &str = "0f000000-0000-4000-8000-0000000000b1";
/// The request the VM's start and stop are correlated with.
const JOB: &str = "0b000000-0000-4000-8000-0000000000b1";

fn id(n: u32) -> String {
    format!("b0000000-0000-4000-8000-{n:012x}")
}

/// A `serve` on a free port in its own data directory, killed when dropped.
struct Server {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(demo: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut command = ledgerstack();
        command.arg("serve");
        if demo {
            command.arg("--demo");
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let endpoint = loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("serve exited before its ready line");
            }
            if let Some(rest) = line.strip_prefix("Ledgerstack API on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Server {
            child,
            endpoint,
            dir,
        }
    }

    /// Stops the server with SIGTERM and hands back its data directory.
    fn stop(mut self) -> tempfile::TempDir {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        // A SIGTERM that arrives before serve has installed its handler ends it by the signal;
        // either way every acknowledged event is in the log, which is what these tests read.
        assert!(
            status.success() || status.signal() == Some(15),
            "serve exited with {status}"
        );
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// `ledgerstack call COMMAND ARGS...` with the data directory's admin keys; must succeed.
    fn call(&self, args: &[&str]) {
        let out = ledgerstack()
            .args(["call", "--endpoint", &self.endpoint, "--from-data-dir"])
            .arg(self.dir.path())
            .args(args)
            .env_remove("LEDGERSTACK_CONFIG")
            .env_remove("LEDGERSTACK_ENDPOINT")
            .env_remove("LEDGERSTACK_API_KEY")
            .env_remove("LEDGERSTACK_SECRET_KEY")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "call {args:?}: {}", stderr(&out));
    }
}

fn event(n: u32, stream: &str, event_type: &str, at: &str, data: Value) -> Value {
    json!({
        "id": id(n), "stream": stream, "type": event_type, "occurred_at": at, "actor": {},
        "level": "INFO", "state": "Completed", "data": data,
    })
}

fn vm() -> Value {
    json!({
        "vm_id": VM, "name": "web-01", "instance_name": "i-2-5-VM", "account_id": ACCOUNT,
        "domain_id": DOMAIN, "zone_id": "020e0000-0000-4000-8000-0000000000b1",
        "service_offering_id": OFFERING,
        "template_id": "07e00000-0000-4000-8000-0000000000b1",
        "hypervisor": "Simulator", "cpu_number": 1, "cpu_speed": 1000, "memory": 1024,
    })
}

/// A bootstrapped data directory with six events imported on top (the last six of the log):
/// a domain, an account, an offering, and a VM created, started and stopped, the start and the stop
/// correlated with one job.
fn data_dir_with_history() -> tempfile::TempDir {
    let dir = Server::start(false).stop();
    let vm_stream = format!("vm-{VM}");
    let mut start = event(
        5,
        &vm_stream,
        "VM.START",
        "2024-05-01T10:00:00.000Z",
        json!({"vm": vm()}),
    );
    start["correlation_id"] = json!(JOB);
    let mut stop = event(
        6,
        &vm_stream,
        "VM.STOP",
        "2024-05-02T06:00:00.000Z",
        json!({"vm": vm(), "forced": false}),
    );
    stop["correlation_id"] = json!(JOB);
    let lines = [
        event(
            1,
            &format!("domain-{DOMAIN}"),
            "DOMAIN.CREATE",
            "2024-04-30T00:00:00.000Z",
            json!({"domain": {"domain_id": DOMAIN, "name": "acme", "path": "/acme"}}),
        ),
        event(
            2,
            &format!("account-{ACCOUNT}"),
            "ACCOUNT.CREATE",
            "2024-04-30T00:00:01.000Z",
            json!({"account": {"account_id": ACCOUNT, "name": "acme-ops",
                "account_type": "User", "domain_id": DOMAIN}}),
        ),
        event(
            3,
            &format!("offering-{OFFERING}"),
            "SERVICE.OFFERING.CREATE",
            "2024-04-30T00:00:02.000Z",
            json!({"offering": {
                "service_offering_id": OFFERING, "name": "Small", "display_text": "Small",
                "cpu_number": 1, "cpu_speed": 1000, "memory": 1024, "is_customized": false,
                "offer_ha": false, "limit_cpu_use": false, "dynamic_scaling_enabled": false,
                "storage_type": "shared", "domain_ids": [], "zone_ids": [],
            }}),
        ),
        event(
            4,
            &vm_stream,
            "VM.CREATE",
            "2024-05-01T10:00:00.000Z",
            json!({"vm": vm(), "ssh_keypairs": [], "affinity_group_ids": []}),
        ),
        start,
        stop,
    ];
    let file = dir.path().join("history.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = ledgerstack()
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "import: {}", stderr(&out));
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    ledgerstack()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn inspect_json(dir: &Path, target: &str) -> Value {
    serde_json::from_str(&ok(dir, &["inspect", target, "--json"])).unwrap()
}

#[test]
fn inspect_finds_an_event_by_id_and_by_position_with_its_correlated_events() {
    let dir = data_dir_with_history();
    let dir = dir.path();

    let by_id = inspect_json(dir, &id(5));
    let event = &by_id["event"];
    assert_eq!(event["id"], json!(id(5)));
    assert_eq!(event["type"], "VM.START");
    assert_eq!(event["stream"], json!(format!("vm-{VM}")));
    assert_eq!(event["version"], 2);
    assert_eq!(event["correlation_id"], json!(JOB));
    assert_eq!(event["data"]["vm"]["name"], "web-01");
    let position = event["position"].as_u64().unwrap();
    assert!(by_id["segment"].as_str().unwrap().ends_with(".seg"));
    assert!(by_id["offset"].as_u64().unwrap() > 0);
    // The other event of the same job, and only that one.
    let correlated = by_id["correlated"].as_array().unwrap();
    assert_eq!(correlated.len(), 1, "{by_id}");
    assert_eq!(correlated[0]["id"], json!(id(6)));

    // By position: the same event; its hash is what the next event names as prev_hash.
    let by_position = inspect_json(dir, &position.to_string());
    assert_eq!(by_position["event"], *event);
    assert_eq!(by_position["hash"], by_id["hash"]);
    let next = inspect_json(dir, &(position + 1).to_string());
    assert_eq!(next["event"]["id"], json!(id(6)));
    assert_eq!(next["event"]["prev_hash"], by_id["hash"]);
    let previous = inspect_json(dir, &(position - 1).to_string());
    assert_eq!(previous["hash"], event["prev_hash"]);
    assert_eq!(previous["correlated"], json!([]));

    // The readable block says the same things.
    let text = ok(dir, &["inspect", &id(5)]);
    for fragment in [
        format!("position       {position}\n"),
        format!("id             {}\n", id(5)),
        "type           VM.START (schema 1)\n".to_owned(),
        format!("stream         vm-{VM} (version 2)\n"),
        "occurred at    2024-05-01T10:00:00.000Z\n".to_owned(),
        format!("correlation id {JOB}\n"),
        format!("hash           {}\n", by_id["hash"].as_str().unwrap()),
        format!(
            "record         {} at byte {}\n",
            by_id["segment"].as_str().unwrap(),
            by_id["offset"]
        ),
        "\"name\": \"web-01\"".to_owned(),
        "same correlation id: 1 other event(s)".to_owned(),
        "VM.STOP".to_owned(),
    ] {
        assert!(text.contains(&fragment), "{fragment:?} not in:\n{text}");
    }
}

#[test]
fn inspect_names_what_it_did_not_find_and_the_head() {
    let dir = data_dir_with_history();
    let dir = dir.path();
    let head = inspect_json(dir, &id(6))["event"]["position"]
        .as_u64()
        .unwrap();

    let unknown = "b0000000-0000-4000-8000-00000000ffff";
    let out = run(dir, &["inspect", unknown]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "no event with event id {unknown} in the log (its head is at position {head})"
        )),
        "{}",
        stderr(&out)
    );
    let past = (head + 1).to_string();
    let out = run(dir, &["inspect", &past]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("no event with position {past} in the log")),
        "{}",
        stderr(&out)
    );
    let out = run(dir, &["inspect", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("neither a log position"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn tail_prints_the_last_events_filtered_by_type_and_stream() {
    let dir = data_dir_with_history();
    let dir = dir.path();
    let head = inspect_json(dir, &id(6))["event"]["position"]
        .as_u64()
        .unwrap();

    // The last three, one readable line each, in log order.
    let text = ok(dir, &["tail", "-n", "3"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let positions: Vec<u64> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(positions, [head - 2, head - 1, head]);
    assert!(lines[0].contains("VM.CREATE") && lines[0].contains(&format!("vm-{VM}")));
    assert!(lines[2].contains("VM.STOP") && lines[2].contains("name=web-01"));
    assert!(lines[2].contains("system"), "{}", lines[2]);

    // --json: the external form, exactly as export writes it.
    let text = ok(dir, &["tail", "-n", "3", "--json"]);
    let ids: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, [json!(id(4)), json!(id(5)), json!(id(6))]);
    let export = ok(dir, &["export"]);
    for line in text.lines() {
        assert!(
            export.lines().any(|l| l == line),
            "{line} not in the export"
        );
    }

    // --type VM.*: the three VM events, even with a larger -n; several patterns add up.
    let text = ok(dir, &["tail", "-n", "50", "--type", "VM.*", "--json"]);
    let types: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].clone())
        .collect();
    assert_eq!(types, ["VM.CREATE", "VM.START", "VM.STOP"]);
    let text = ok(
        dir,
        &["tail", "--type", "VM.STOP", "--type", "DOMAIN.*", "--json"],
    );
    let ids: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .filter(|id| id.as_str().unwrap().starts_with("b0000000"))
        .collect();
    assert_eq!(ids, [json!(id(1)), json!(id(6))]);
    // --stream: a whole stream id, or a category.
    let text = ok(dir, &["tail", "--stream", &format!("account-{ACCOUNT}")]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("ACCOUNT.CREATE"));
    let text = ok(
        dir,
        &["tail", "-n", "2", "--stream", "vm", "--type", "VM.START"],
    );
    assert_eq!(text.lines().count(), 1, "{text}");

    // A pattern that can never match is refused, not answered with nothing.
    let out = run(dir, &["tail", "--type", "VM.STRAT"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown event type \"VM.STRAT\""),
        "{}",
        stderr(&out)
    );
    let out = run(dir, &["tail", "--type", "*.START"]);
    assert!(!out.status.success());
}

/// Reads the lines of a child's stdout on a thread, so a test can wait for one with a bound.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = BufReader::new(child.stdout.take().unwrap());
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

#[test]
fn tail_follow_prints_what_a_running_server_appends_and_stops_on_sigterm() {
    let server = Server::start(true);
    let mut tail = ledgerstack()
        .args([
            "tail", "--follow", "--json", "-n", "1", "--type", "DOMAIN.*",
        ])
        .arg("--data-dir")
        .arg(server.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut tail);
    server.call(&["createDomain", "name=followed-one"]);
    server.call(&["createDomain", "name=followed-two"]);
    // The initial tail may or may not include the first domain (if the scan came after the
    // call); wait for both names in log order.
    let mut names = Vec::new();
    while names.last().map(String::as_str) != Some("followed-two") {
        let line = lines
            .recv_timeout(PATIENCE)
            .expect("tail --follow printed the new domain");
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["type"], "DOMAIN.CREATE", "{line}");
        names.push(event["data"]["domain"]["name"].as_str().unwrap().to_owned());
    }
    assert!(names.ends_with(&["followed-one".to_owned(), "followed-two".to_owned()]));

    let status = Command::new("kill")
        .args(["-TERM", &tail.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tail exited with {}: {}",
        out.status,
        stderr(&out)
    );
}

#[test]
fn tail_follow_ends_cleanly_when_its_reader_goes_away() {
    let server = Server::start(true);
    let mut tail = ledgerstack()
        .args(["tail", "--follow", "-n", "1"])
        .arg("--data-dir")
        .arg(server.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away; the next line tail writes (the initial one, or the domain's)
    // finds the pipe closed.
    drop(tail.stdout.take());
    server.call(&["createDomain", "name=nobody-reads"]);
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tail exited with {}: {}",
        out.status,
        stderr(&out)
    );
}

#[test]
fn help_lists_inspect_and_tail() {
    let out = ledgerstack().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    for command in ["inspect", "tail"] {
        assert!(
            text.contains(command),
            "--help does not mention {command}:\n{text}"
        );
    }
}
