//! `ledgerstack backup`, `restore`, `admin rotate-key` and `admin key-ids`, run as an operator
//! runs them: against real servers on 127.0.0.1, called with `ledgerstack call`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::Value;

fn ledgerstack() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledgerstack"));
    // No client settings from the environment or a home config.
    command
        .env_remove("LEDGERSTACK_CONFIG")
        .env_remove("LEDGERSTACK_ENDPOINT")
        .env_remove("LEDGERSTACK_API_KEY")
        .env_remove("LEDGERSTACK_SECRET_KEY")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", std::env::temp_dir())
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ledgerstack ARGS` and asserts it succeeded; its stdout.
fn run_ok(args: &[&str]) -> String {
    let out = ledgerstack().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ledgerstack {args:?} failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A `serve` on a free port over `data_dir`, killed when dropped (or stopped with SIGTERM).
struct Server {
    child: Child,
    endpoint: String,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = ledgerstack()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        let endpoint = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("serve exited before its ready line:\n{printed}");
            }
            printed.push_str(&line);
            if let Some(rest) = line.strip_prefix("Ledgerstack API on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            endpoint,
            data_dir: data_dir.to_owned(),
        }
    }

    /// Stops the server with SIGTERM and waits for it: every acknowledged event is in the log.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap();
    }

    /// `ledgerstack call COMMAND ARGS... --json` with the admin's keys of `keys_from`.
    fn call_with_admin_of(&self, keys_from: &Path, args: &[&str]) -> Output {
        ledgerstack()
            .args(["call", "--endpoint", &self.endpoint, "--from-data-dir"])
            .arg(keys_from)
            .args(args)
            .arg("--json")
            .output()
            .unwrap()
    }

    /// A successful admin call (keys of this server's data directory), parsed.
    fn admin(&self, args: &[&str]) -> Value {
        let out = self.call_with_admin_of(&self.data_dir, args);
        assert!(
            out.status.success(),
            "call {args:?} failed: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A call signed with the given keys.
    fn call_as(&self, keys: &(String, String), args: &[&str]) -> Output {
        ledgerstack()
            .args(["call", "--endpoint", &self.endpoint, "--api-key"])
            .arg(&keys.0)
            .arg("--secret-key")
            .arg(&keys.1)
            .args(args)
            .arg("--json")
            .output()
            .unwrap()
    }
}

/// The event lines of an export of `data_dir` (its final chain_head line apart).
fn export(data_dir: &Path, file: &Path) -> (Vec<String>, Value) {
    run_ok(&["export", "--data-dir", path(data_dir), "-o", path(file)]);
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
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
    let server = Server::start(&data);
    for n in 0..3 {
        server.admin(&["createDomain", &format!("name=before{n}")]);
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
                let out = ledgerstack()
                    .args(["call", "--endpoint", &endpoint, "--from-data-dir"])
                    .arg(&data)
                    .args(["createDomain", &format!("name=d{n}")])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", text(&out.stderr));
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
    let on_restored = Server::start(&restored);
    let listed = on_restored.admin(&["listDomains", "listall=true"]);
    let names: BTreeSet<String> = listed["domain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, domains);
    drop(on_restored);
    server.stop();
}

#[test]
fn a_damaged_or_altered_backup_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start(&data);
    server.admin(&["createDomain", "name=acme"]);
    server.stop();
    let backup = root.path().join("backup");
    run_ok(&["backup", path(&backup), "--data-dir", path(&data)]);

    // A destination that exists and holds something is refused.
    let out = ledgerstack()
        .args(["backup", path(&backup), "--data-dir", path(&data)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exists and is not empty"),
        "{}",
        text(&out.stderr)
    );

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
        let stderr = text(&out.stderr);
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
            let sha = text(&out.stdout)[..64].to_owned();
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
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_record_caught_half_written_is_left_out_of_the_backup() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    Server::start(&data).stop();
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
    server.admin(&[
        "createAccount",
        "accounttype=0",
        &format!("username={name}"),
        "password=Secret-123",
        "firstname=F",
        "lastname=L",
        &format!("email={name}@example.com"),
    ]);
    let users = server.admin(&["listUsers", &format!("username={name}"), "listall=true"]);
    let id = users["user"][0]["id"].as_str().unwrap().to_owned();
    let keys = server.admin(&["registerUserKeys", &format!("id={id}")]);
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
    server.call_as(keys, &["listAccounts"]).status.success()
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("master.key"), to.join("master.key")).unwrap();
}

#[test]
fn key_rotation_re_encrypts_nothing_and_an_import_needs_the_key() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start(&data);
    let alice = user_with_keys(&server, "alice");
    server.stop();
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

    let server = Server::start(&data);
    let bob = user_with_keys(&server, "bob");
    assert!(works(&server, &alice), "alice's key (sealed with k1)");
    assert!(works(&server, &bob), "bob's key (sealed with k2)");
    server.stop();

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
    let server = Server::start(&moved);
    assert!(works(&server, &alice));
    assert!(works(&server, &bob));
    drop(server);

    // Without the master.key: the server starts (it creates a new key), but the keys sealed
    // with the lost ones fail with CloudStack's 401, and `key-ids` names what is missing.
    let keyless = root.path().join("keyless");
    std::fs::create_dir(&keyless).unwrap();
    run_ok(&["import", path(&export_file), "--data-dir", path(&keyless)]);
    let server = Server::start(&keyless);
    for keys in [&alice, &bob] {
        let out = server.call_as(keys, &["listAccounts"]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    }
    drop(server);
    let out = ledgerstack()
        .args(["admin", "key-ids", "--data-dir", path(&keyless)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("does not hold") && stderr.contains(&k1) && stderr.contains(&k2),
        "{stderr}"
    );
    assert!(
        stderr.contains("put back the master.key this log was written with"),
        "{stderr}"
    );
}
