//! `ledgerstack import` and `ledgerstack usage export`, as a user runs them: historical events in
//! the JSON Lines form of docs/events.md go into a data directory, and usage records come out.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use support::{
    Ids, Server, assert_fails_saying, digest, import, import_lines, ledgerstack, stderr, stdout,
    write_lines,
};

const DOMAIN: &str = "0d000000-0000-4000-8000-000000000001";
const ACCOUNT: &str = "0acc0000-0000-4000-8000-000000000001";
const VM: &str = "0f000000-0000-4000-8000-000000000001";
const IDS: Ids = Ids {
    domain: DOMAIN,
    account: ACCOUNT,
    offering: "05e00000-0000-4000-8000-000000000001",
    zone: "020e0000-0000-4000-8000-000000000001",
    template: "07e00000-0000-4000-8000-000000000001",
    vm: VM,
    event_prefix: "e0000000-0000-4000-8000-",
};

/// A domain, an account and an offering, then a VM created and started on 2024-05-01 at 10:00
/// and stopped on 2024-05-02 at 06:00, and the usage periods closed up to 2024-05-03.
fn scenario() -> Vec<Value> {
    let mut lines = IDS.history("Small");
    lines.push(IDS.event(
        7,
        "usage",
        "USAGE.CLOSE",
        "2024-05-03T00:00:00.000Z",
        json!({"until": "2024-05-03T00:00:00.000Z"}),
    ));
    lines
}

/// The position of the log's head, as `ledgerstack digest` reports it.
fn head(dir: &Path) -> u64 {
    let text = digest(dir);
    text.rsplit("at position ")
        .next()
        .and_then(|rest| rest.trim().trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no position in {text:?}"))
}

/// A data directory holding the scenario.
fn imported_scenario() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    import_lines(dir.path(), &scenario());
    dir
}

#[test]
fn a_valid_file_imports_once_and_a_second_import_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    // Members the store assigns may be present: they are checked for form and ignored.
    let mut lines = scenario();
    lines[0]["position"] = json!(41);
    lines[0]["version"] = json!(7);
    lines[0]["recorded_at"] = json!("2024-04-30T00:00:00.000Z");
    lines[0]["prev_hash"] = json!("00".repeat(32));
    lines[0]["schema"] = json!(1);
    write_lines(&file, &lines);

    let first = import(dir.path(), &file);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("7 appended, 0 already present"),
        "{}",
        stdout(&first)
    );
    assert_eq!(head(dir.path()), 7);

    let second = import(dir.path(), &file);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("0 appended, 7 already present"),
        "{}",
        stdout(&second)
    );
    assert_eq!(head(dir.path()), 7);

    // A longer file whose start is already imported appends only its end.
    lines.push(IDS.event(
        8,
        &IDS.vm_stream(),
        "VM.START",
        "2024-05-02T08:00:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT)}),
    ));
    write_lines(&file, &lines);
    let third = import(dir.path(), &file);
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stdout(&third).contains("1 appended, 7 already present"),
        "{}",
        stdout(&third)
    );
    assert_eq!(head(dir.path()), 8);
}

/// Imports `lines` (after the scenario) and expects a refusal naming `line N` and `what`, with
/// nothing appended.
fn assert_refused(lines: &[Value], raw_extra: Option<(usize, &str)>, expected: &str) {
    let dir = imported_scenario();
    let before = head(dir.path());
    let file = dir.path().join("more.jsonl");
    let mut text: Vec<String> = lines.iter().map(Value::to_string).collect();
    if let Some((at, raw)) = raw_extra {
        text.insert(at, raw.to_owned());
    }
    std::fs::write(&file, text.join("\n") + "\n").unwrap();
    let out = import(dir.path(), &file);
    assert!(!out.status.success(), "accepted: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    assert!(err.contains("nothing was appended"), "{err}");
    assert_eq!(head(dir.path()), before);
}

/// A valid event to put before a bad one, so that a refusal visibly appends nothing.
fn restart() -> Value {
    IDS.event(
        20,
        &IDS.vm_stream(),
        "VM.START",
        "2024-05-02T08:00:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT)}),
    )
}

#[test]
fn an_unknown_account_is_refused_with_its_line_and_nothing_is_appended() {
    let stranger = "0acc0000-0000-4000-8000-0000000000ff";
    let other_vm = IDS.event(
        21,
        "vm-0f000000-0000-4000-8000-000000000002",
        "VM.CREATE",
        "2024-05-02T09:00:00.000Z",
        json!({"vm": IDS.vm(stranger), "ssh_keypairs": [], "affinity_group_ids": []}),
    );
    assert_refused(
        &[restart(), other_vm],
        None,
        &format!("line 2: unknown account {stranger}"),
    );
}

#[test]
fn bad_json_is_refused_with_its_line_and_nothing_is_appended() {
    assert_refused(
        &[restart(), restart()],
        Some((1, "{\"id\": \"not json")),
        "line 2: not an event line",
    );
}

#[test]
fn an_unknown_type_or_bad_payload_is_refused() {
    let mut nap = restart();
    nap["type"] = json!("VM.NAP");
    assert_refused(&[nap], None, "line 1: unknown event type \"VM.NAP\"");
    let mut bad = restart();
    bad["data"] = json!({"vm": {"vm_id": VM}});
    assert_refused(&[restart(), bad], None, "line 2: data of VM.START");
}

#[test]
fn events_out_of_order_are_refused() {
    // Within the file: a stop before the start it follows.
    let start = IDS.event(
        22,
        &IDS.vm_stream(),
        "VM.START",
        "2024-05-02T09:00:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT)}),
    );
    let stop = IDS.event(
        23,
        &IDS.vm_stream(),
        "VM.STOP",
        "2024-05-02T08:30:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT), "forced": false}),
    );
    assert_refused(
        &[start, stop],
        None,
        "line 2: occurred_at 2024-05-02T08:30:00.000Z",
    );
    // Before the last event of the stream already in the log (the stop at 06:00).
    let early = IDS.event(
        24,
        &IDS.vm_stream(),
        "VM.START",
        "2024-05-02T05:00:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT)}),
    );
    assert_refused(
        &[early],
        None,
        "line 1: occurred_at 2024-05-02T05:00:00.000Z is before 2024-05-02T06:00:00.000Z",
    );
    // In the future.
    let future = IDS.event(
        25,
        &IDS.vm_stream(),
        "VM.START",
        "2999-01-01T00:00:00.000Z",
        json!({"vm": IDS.vm(ACCOUNT)}),
    );
    assert_refused(
        &[restart(), future],
        None,
        "line 2: occurred_at 2999-01-01T00:00:00.000Z is in the future",
    );
}

#[test]
fn an_id_already_stored_with_other_content_is_refused() {
    let mut changed = scenario().remove(5);
    changed["data"]["forced"] = json!(true);
    assert_refused(
        &[restart(), changed],
        None,
        &format!(
            "line 2: event {} is already in the log at position 6 with different content",
            IDS.event_id(6)
        ),
    );
}

#[test]
fn import_refuses_a_data_directory_a_server_is_running_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_on(dir.path(), false);
    let file = dir.path().join("history.jsonl");
    write_lines(&file, &scenario());
    let out = import(dir.path(), &file);
    drop(server);
    assert_fails_saying(&out, "stop it before importing");
}

fn usage_export(dir: &Path, args: &[&str]) -> Output {
    ledgerstack()
        .args(["usage", "export", "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// (usage type, rawusage, startdate) of each exported JSON line.
fn summary(lines: &[Value]) -> Vec<(u64, String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["usagetype"].as_u64().unwrap(),
                l["rawusage"].as_str().unwrap().to_owned(),
                l["startdate"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn usage_export_writes_the_imported_history_as_csv_and_json_lines() {
    let dir = imported_scenario();

    // JSON Lines into a file: the VM ran 14 h on May 1 and 6 h on May 2, and was allocated
    // 14 h and then the whole of May 2.
    let file = dir.path().join("usage.jsonl");
    let out = ledgerstack()
        .args(["usage", "export", "--data-dir"])
        .arg(dir.path())
        .args([
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
            "--format",
            "jsonl",
        ])
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Exported 4 usage records"),
        "{}",
        stderr(&out)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let day = |d: &str| format!("2024-05-0{d}T00:00:00+0000");
    assert_eq!(
        summary(&lines),
        [
            (1, "14".to_owned(), day("1")),
            (2, "14".to_owned(), day("1")),
            (1, "6".to_owned(), day("2")),
            (2, "24".to_owned(), day("2")),
        ]
    );
    assert!(lines.iter().all(|l| l["account"] == "acme-ops"
        && l["accountid"] == ACCOUNT
        && l["usageid"] == VM
        && l["revision"] == 1));

    // CSV on standard output: the header, then the same records.
    let csv = usage_export(
        dir.path(),
        &[
            "--from",
            "2024-05-02",
            "--to",
            "2024-05-02",
            "--format",
            "csv",
        ],
    );
    assert!(csv.status.success(), "{}", stderr(&csv));
    let text = stdout(&csv);
    let rows: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[0], usage::export::COLUMNS.join(","));
    assert!(
        rows[1].starts_with(&format!("acme-ops,{ACCOUNT},{DOMAIN},acme,")),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains(",6 Hrs,1,6,"), "{}", rows[1]);
    assert!(rows[2].contains(",24 Hrs,2,24,"), "{}", rows[2]);

    // Filters: by account name or id, by domain; an unknown account is an error.
    for account in ["acme-ops", ACCOUNT] {
        let out = usage_export(
            dir.path(),
            &[
                "--from",
                "2024-05-01",
                "--to",
                "2024-05-02",
                "--format",
                "jsonl",
                "--account",
                account,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).lines().count(), 4);
    }
    let other_domain = usage_export(
        dir.path(),
        &[
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
            "--format",
            "jsonl",
            "--domain-id",
            DOMAIN,
        ],
    );
    assert!(other_domain.status.success(), "{}", stderr(&other_domain));
    assert_eq!(stdout(&other_domain).lines().count(), 4);
    let nobody = usage_export(
        dir.path(),
        &[
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
            "--format",
            "csv",
            "--account",
            "nobody",
        ],
    );
    assert!(!nobody.status.success());
    assert!(
        stderr(&nobody).contains("no account \"nobody\""),
        "{}",
        stderr(&nobody)
    );
    let bad_format = usage_export(
        dir.path(),
        &[
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
            "--format",
            "xls",
        ],
    );
    assert!(!bad_format.status.success());
    assert!(
        stderr(&bad_format).contains("use csv or jsonl"),
        "{}",
        stderr(&bad_format)
    );
    let backwards = usage_export(
        dir.path(),
        &[
            "--from",
            "2024-05-02",
            "--to",
            "2024-05-01",
            "--format",
            "csv",
        ],
    );
    assert!(!backwards.status.success());
    assert!(
        stderr(&backwards).contains("is after --to"),
        "{}",
        stderr(&backwards)
    );
}
