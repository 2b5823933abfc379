//! `ledgerstack backup`, `restore`, `admin rotate-key` and `admin key-ids`, run as an operator
//! runs them: against real servers on 127.0.0.1, called with `ledgerstack call`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;
use support::{Server, assert_fails_saying, isolated, read_lines, stderr, stdout};

/// `ledgerstack` with no client settings from the environment or a home config.
fn ledgerstack() -> Command {
    isolated(&std::env::temp_dir())
}

/// Runs `ledgerstack ARGS` and asserts it succeeded; its stdout.
fn run_ok(args: &[&str]) -> String {
    let out = ledgerstack().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ledgerstack {args:?} failed ({}): {}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A call signed with the given keys.
fn call_as(server: &Server, keys: &(String, String), args: &[&str]) -> Output {
    ledgerstack()
        .args(["call", "--endpoint", &server.endpoint, "--api-key"])
        .arg(&keys.0)
        .arg("--secret-key")
        .arg(&keys.1)
        .args(args)
        .arg("--json")
        .output()
        .unwrap()
}

/// The event lines of an export of `data_dir` (its final chain_head line apart).
fn export(data_dir: &Path, file: &Path) -> (Vec<String>, Value) {
    run_ok(&["export", "--data-dir", path(data_dir), "-o", path(file)]);
    let mut lines = read_lines(file);
    let trailer = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    (lines, trailer)
}

/// Names of the domains the DOMAIN.CREATE events of `lines` create.
fn created_domains(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "DOMAIN.CREATE")
        .map(|e| e["data"]["domain"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_backup_taken_while_a_writer_appends_restores_to_a_consistent_prefix() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_on(&data, false);
    for n in 0..3 {
        server.json(&["createDomain", &format!("name=before{n}")]);
    }

    // A writer creating domains one after another, until told to stop and at least five
    // more once the backup is done.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (endpoint, data, stop, written) = (
            server.endpoint.clone(),
            data.clone(),
            stop.clone(),
            written.clone(),
        );
        std::thread::spawn(move || {
            let mut after_stop = 0;
            let mut n = 0;
            while after_stop < 5 {
                if stop.load(Ordering::SeqCst) {
                    after_stop += 1;
                }
                let out = support::call(&endpoint, &data, &["createDomain", &format!("name=d{n}")]);
                assert!(out.status.success(), "{}", stderr(&out));
                n += 1;
                written.store(n, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) < 3 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let backup = root.path().join("backup");
    let summary = run_ok(&["backup", path(&backup), "--data-dir", path(&data)]);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(summary.starts_with("Backed up "), "{summary}");
    assert!(
        summary.contains("the log, master.key, admin-credentials.json"),
        "{summary}"
    );

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("manifest.json")).unwrap())
            .unwrap();
    let head = manifest["head_position"].as_u64().unwrap();
    assert_eq!(manifest["events"].as_u64(), Some(head));
    assert!(!backup.join("read-models").exists());
    assert!(!backup.join("log/LOCK").exists());
    assert!(manifest["files"].as_array().unwrap().iter().all(|f| {
        f["sha256"].as_str().unwrap().len() == 64 && f["bytes"].as_u64().unwrap() > 0
    }));

    let restored = root.path().join("restored");
    let out = run_ok(&["restore", path(&backup), "--data-dir", path(&restored)]);
    assert!(
        out.contains("rebuilds the read models from the log"),
        "{out}"
    );
    assert!(!restored.join("read-models").exists());
    let verified = run_ok(&["verify", "--data-dir", path(&restored)]);
    assert!(
        verified.contains(&format!("{head} events (positions 1..{head})")),
        "{verified}"
    );

    // The restored log is exactly the original's first `head` events, which the server went
    // on appending to.
    let (original, _) = export(&data, &root.path().join("original.jsonl"));
    let (copy, trailer) = export(&restored, &root.path().join("restored.jsonl"));
    assert!(original.len() as u64 > head, "the writer appended after");
    assert_eq!(copy.len() as u64, head);
    assert_eq!(copy[..], original[..head as usize]);
    assert_eq!(trailer["chain_head"], manifest["chain_head"]);

    // A server on the restored data directory answers with the domains of that prefix, and
    // the admin's keys (restored with it) sign the calls.
    let domains = created_domains(&copy);
    assert!(domains.contains("before2"));
    let on_restored = Server::start_on(&restored, false);
    let listed = on_restored.json(&["listDomains", "listall=true"]);
    let names: BTreeSet<String> = listed["domain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, domains);
    drop(on_restored);
    server.terminate();
}

#[test]
fn a_damaged_or_altered_backup_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_on(&data, false);
    server.json(&["createDomain", "name=acme"]);
    server.terminate();
    let backup = root.path().join("backup");
    run_ok(&["backup", path(&backup), "--data-dir", path(&data)]);

    // A destination that exists and holds something is refused.
    let out = ledgerstack()
        .args(["backup", path(&backup), "--data-dir", path(&data)])
        .output()
        .unwrap();
    assert_fails_saying(&out, "exists and is not empty");

    let manifest_text = std::fs::read_to_string(backup.join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&manifest_text).unwrap();
    let segment = manifest["files"][0]["path"].as_str().unwrap().to_owned();
    let attempt = |name: &str, damage: &dyn Fn(&Path), expected: &[&str]| {
        let copy = root.path().join(format!("backup-{name}"));
        std::fs::create_dir_all(copy.join("log")).unwrap();
        for file in manifest["files"].as_array().unwrap() {
            let p = file["path"].as_str().unwrap();
            std::fs::copy(backup.join(p), copy.join(p)).unwrap();
        }
        std::fs::write(copy.join("manifest.json"), &manifest_text).unwrap();
        damage(&copy);
        let target = root.path().join(format!("restored-{name}"));
        let out = ledgerstack()
            .args(["restore", path(&copy), "--data-dir", path(&target)])
            .output()
            .unwrap();
        let stderr = stderr(&out);
        assert!(!out.status.success(), "{name}: restore succeeded");
        assert!(stderr.contains("nothing was restored"), "{name}: {stderr}");
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{name}: {fragment:?} not in {stderr}"
            );
        }
        assert!(!target.exists(), "{name}: restore left {target:?}");
    };
    let flip = |file: &Path, at: usize| {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(file, bytes).unwrap();
    };

    // A flipped byte in a segment: its SHA-256 no longer matches.
    attempt(
        "flipped",
        &|dir| flip(&dir.join(&segment), 100),
        &["does not match its manifest", &segment, "SHA-256"],
    );
    // The manifest edited to claim another head.
    attempt(
        "manifest",
        &|dir| {
            let edited = manifest_text.replacen("\"events\": ", "\"events\": 1", 1);
            std::fs::write(dir.join("manifest.json"), edited).unwrap();
        },
        &["does not match its manifest", "the manifest says"],
    );
    // A flipped byte with the manifest's hash fixed up to match: the record CRCs catch it.
    attempt(
        "rehashed",
        &|dir| {
            let file = dir.join(&segment);
            flip(&file, 100);
            let out = Command::new("sha256sum").arg(&file).output().unwrap();
            let sha = stdout(&out)[..64].to_owned();
            let old = manifest["files"][0]["sha256"].as_str().unwrap();
            let edited = manifest_text.replace(old, &sha);
            std::fs::write(dir.join("manifest.json"), edited).unwrap();
        },
        &["does not verify", "damaged record"],
    );
    // A segment file added that the manifest does not list.
    attempt(
        "extra",
        &|dir| {
            std::fs::copy(dir.join(&segment), dir.join("log/00000000000000099999.seg")).unwrap();
        },
        &["is not in the manifest"],
    );

    // A data directory that already holds a log is refused, and left as it was.
    let out = ledgerstack()
        .args(["restore", path(&backup), "--data-dir", path(&data)])
        .output()
        .unwrap();
    assert_fails_saying(&out, "already holds");
}

#[test]
fn a_record_caught_half_written_is_left_out_of_the_backup() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    Server::start_on(&data, false).terminate();
    let before = run_ok(&["verify", "--data-dir", path(&data)]);
    // What a reader sees while the server is writing a record: its first bytes only (here a
    // copy of the start of the first record, whose length field promises more).
    let segment = data.join("log/00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let len = bytes.len() as u64;
    let partial = bytes[32..52].to_vec();
    bytes.extend_from_slice(&partial);
    std::fs::write(&segment, bytes).unwrap();

    let backup = root.path().join("backup");
    let out = run_ok(&["backup", path(&backup), "--data-dir", path(&data)]);
    assert!(out.contains("Left out 20 bytes"), "{out}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(backup.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["files"][0]["bytes"].as_u64(), Some(len));
    assert_eq!(
        std::fs::metadata(backup.join("log/00000000000000000001.seg"))
            .unwrap()
            .len(),
        len
    );
    let restored = root.path().join("restored");
    run_ok(&["restore", path(&backup), "--data-dir", path(&restored)]);
    let after = run_ok(&["verify", "--data-dir", path(&restored)]);
    assert!(!after.contains("torn"), "{after}");
    let events = |summary: &str| summary.split(" verifies: ").nth(1).unwrap().to_owned();
    assert_eq!(
        events(&after).split(" checked in").next(),
        events(&before).split(" checked in").next()
    );
}

/// Creates an account with one user named `name` and registers API keys for the user.
fn user_with_keys(server: &Server, name: &str) -> (String, String) {
    server.json(&[
        "createAccount",
        "accounttype=0",
        &format!("username={name}"),
        "password=Secret-123",
        "firstname=F",
        "lastname=L",
        &format!("email={name}@example.com"),
    ]);
    let users = server.json(&["listUsers", &format!("username={name}"), "listall=true"]);
    let id = users["user"][0]["id"].as_str().unwrap().to_owned();
    let keys = server.json(&["registerUserKeys", &format!("id={id}")]);
    (
        keys["userkeys"]["apikey"].as_str().unwrap().to_owned(),
        keys["userkeys"]["secretkey"].as_str().unwrap().to_owned(),
    )
}

/// The export line registering `api_key`.
fn registration<'a>(lines: &'a [String], api_key: &str) -> &'a String {
    lines
        .iter()
        .find(|l| l.contains(&format!("\"api_key\":\"{api_key}\"")))
        .unwrap_or_else(|| panic!("no registration of {api_key}"))
}

fn key_id_of(line: &str) -> String {
    let event: Value = serde_json::from_str(line).unwrap();
    event["data"]["secret_key"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether a signed `listAccounts` with `keys` succeeds on `server`.
fn works(server: &Server, keys: &(String, String)) -> bool {
    call_as(server, keys, &["listAccounts"]).status.success()
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("master.key"), to.join("master.key")).unwrap();
}

#[test]
fn key_rotation_re_encrypts_nothing_and_an_import_needs_the_key() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_on(&data, false);
    let alice = user_with_keys(&server, "alice");
    server.terminate();
    let k1 = run_ok(&["admin", "key-ids", "--data-dir", path(&data)]);
    let k1 = k1.split(" (current)").next().unwrap().to_owned();
    let (before, _) = export(&data, &root.path().join("before.jsonl"));
    assert_eq!(key_id_of(registration(&before, &alice.0)), k1);

    let k2 = run_ok(&["admin", "rotate-key", "--data-dir", path(&data)])
        .trim()
        .to_owned();
    assert_ne!(k2, k1);
    let ids: Value = serde_json::from_str(&run_ok(&[
        "admin",
        "key-ids",
        "--json",
        "--data-dir",
        path(&data),
    ]))
    .unwrap();
    assert_eq!(ids["key_ids"], serde_json::json!([k1, k2]));
    assert_eq!(ids["current"], k2.as_str());
    let key_text = std::fs::read_to_string(data.join("master.key")).unwrap();
    let material = key_text
        .lines()
        .find(|l| l.starts_with("key "))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap();
    assert!(!ids.to_string().contains(material), "key-ids printed a key");

    let server = Server::start_on(&data, false);
    let bob = user_with_keys(&server, "bob");
    assert!(works(&server, &alice), "alice's key (sealed with k1)");
    assert!(works(&server, &bob), "bob's key (sealed with k2)");
    server.terminate();

    let export_file = root.path().join("after.jsonl");
    let (after, _) = export(&data, &export_file);
    assert_eq!(key_id_of(registration(&after, &bob.0)), k2);
    // Alice's secret is the same line as before the rotation: nothing was re-encrypted.
    assert_eq!(
        registration(&after, &alice.0),
        registration(&before, &alice.0)
    );

    // Moved into a new data directory with the same master.key: both keys work.
    let moved = root.path().join("moved");
    copy_key(&data, &moved);
    run_ok(&["import", path(&export_file), "--data-dir", path(&moved)]);
    let server = Server::start_on(&moved, false);
    assert!(works(&server, &alice));
    assert!(works(&server, &bob));
    drop(server);

    // Without the master.key: the server starts (it creates a new key), but the keys sealed
    // with the lost ones fail with CloudStack's 401, and `key-ids` names what is missing.
    let keyless = root.path().join("keyless");
    std::fs::create_dir(&keyless).unwrap();
    run_ok(&["import", path(&export_file), "--data-dir", path(&keyless)]);
    let server = Server::start_on(&keyless, false);
    for keys in [&alice, &bob] {
        let out = call_as(&server, keys, &["listAccounts"]);
        assert_fails_saying(&out, "401");
    }
    drop(server);
    let out = ledgerstack()
        .args(["admin", "key-ids", "--data-dir", path(&keyless)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = stderr(&out);
    assert!(
        stderr.contains("does not hold") && stderr.contains(&k1) && stderr.contains(&k2),
        "{stderr}"
    );
    assert!(
        stderr.contains("put back the master.key this log was written with"),
        "{stderr}"
    );
}
