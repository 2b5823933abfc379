//! `ledgerstack inspect` and `ledgerstack tail`, as an auditor or operator runs them: on a data
//! directory a real server bootstrapped with known history imported on top, and `tail --follow`
//! beside a running `serve --demo` that a real client makes append.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{
    Ids, Server, assert_fails_saying, bootstrapped, import_lines, ledgerstack, sigterm, stderr,
    stdout,
};

/// How long a test waits for a line it expects before it fails (a bound on a hang, not a
/// timing assertion: the line normally comes within a poll interval).
const PATIENCE: Duration = Duration::from_secs(120);

const ACCOUNT: &str = "0acc0000-0000-4000-8000-0000000000b1";
const VM: &str = "0f000000-0000-4000-8000-0000000000b1";
const IDS: Ids = Ids {
    domain: "0d000000-0000-4000-8000-0000000000b1",
    account: ACCOUNT,
    offering: "05e00000-0000-4000-8000-0000000000b1",
    zone: "020e0000-0000-4000-8000-0000000000b1",
    template: "07e00000-0000-4000-8000-0000000000b1",
    vm: VM,
    event_prefix: "b0000000-0000-4000-8000-",
};
/// The request the VM's start and stop are correlated with.
const JOB: &str = "0b000000-0000-4000-8000-0000000000b1";

fn id(n: u32) -> String {
    IDS.event_id(n)
}

/// A bootstrapped data directory with six events imported on top (the last six of the log):
/// a domain, an account, an offering, and a VM created, started and stopped, the start and the stop
/// correlated with one job.
fn data_dir_with_history() -> tempfile::TempDir {
    let dir = bootstrapped();
    let mut lines = IDS.history("Small");
    lines[4]["correlation_id"] = json!(JOB);
    lines[5]["correlation_id"] = json!(JOB);
    import_lines(dir.path(), &lines);
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

/// A data directory with the history, and the position of its head (the history's last event).
fn data_dir_and_head() -> (tempfile::TempDir, u64) {
    let dir = data_dir_with_history();
    let head = inspect_json(dir.path(), &id(6))["event"]["position"]
        .as_u64()
        .unwrap();
    (dir, head)
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
    let (dir, head) = data_dir_and_head();
    let dir = dir.path();

    let unknown = "b0000000-0000-4000-8000-00000000ffff";
    let out = run(dir, &["inspect", unknown]);
    assert_fails_saying(
        &out,
        &format!("no event with event id {unknown} in the log (its head is at position {head})"),
    );
    let past = (head + 1).to_string();
    let out = run(dir, &["inspect", &past]);
    assert_fails_saying(&out, &format!("no event with position {past} in the log"));
    let out = run(dir, &["inspect", "yesterday"]);
    assert_fails_saying(&out, "neither a log position");
    assert!(stdout(&out).is_empty());
}

#[test]
fn tail_prints_the_last_events_filtered_by_type_and_stream() {
    let (dir, head) = data_dir_and_head();
    let dir = dir.path();

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
    assert_fails_saying(&out, "unknown event type \"VM.STRAT\"");
    let out = run(dir, &["tail", "--type", "*.START"]);
    assert!(!out.status.success());
}

/// `ledgerstack tail --follow ARGS... --data-dir DIR`, its standard output and error piped.
fn spawn_tail(dir: &Path, args: &[&str]) -> Child {
    ledgerstack()
        .args(["tail", "--follow"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a `tail --follow` and asserts that it exited with success.
fn assert_ended_cleanly(tail: Child) {
    let out = tail.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tail exited with {}: {}",
        out.status,
        stderr(&out)
    );
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
    let mut tail = spawn_tail(
        &server.data_dir,
        &["--json", "-n", "1", "--type", "DOMAIN.*"],
    );
    let lines = lines_of(&mut tail);
    server.ok(&["createDomain", "name=followed-one"]);
    server.ok(&["createDomain", "name=followed-two"]);
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

    sigterm(&tail);
    assert_ended_cleanly(tail);
}

#[test]
fn tail_follow_ends_cleanly_when_its_reader_goes_away() {
    let server = Server::start(true);
    let mut tail = spawn_tail(&server.data_dir, &["-n", "1"]);
    // The reader goes away; the next line tail writes (the initial one, or the domain's)
    // finds the pipe closed.
    drop(tail.stdout.take());
    server.ok(&["createDomain", "name=nobody-reads"]);
    assert_ended_cleanly(tail);
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
