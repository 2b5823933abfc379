//! Helpers the integration tests of the `ledgerstack` command share: the built binary, a
//! `serve` on a free port of 127.0.0.1 and calls to it with `ledgerstack call`, and data
//! directories holding a small known history.
//!
//! Each test file is its own crate and compiles this module for itself, using only some of it.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};

use serde_json::{Value, json};

/// A `Command` for the `ledgerstack` binary Cargo built for these tests.
pub fn ledgerstack() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledgerstack"))
}

/// `ledgerstack` with no client settings from the environment or a home config (`HOME` is
/// `home`), and no backtraces: what a client command sees is only what the test gives it.
pub fn isolated(home: &Path) -> Command {
    let mut command = ledgerstack();
    command
        .env_remove("LEDGERSTACK_CONFIG")
        .env_remove("LEDGERSTACK_ENDPOINT")
        .env_remove("LEDGERSTACK_API_KEY")
        .env_remove("LEDGERSTACK_SECRET_KEY")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", home)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    command
}

/// A finished command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A finished command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a command failed and that its standard error contains `fragment`.
pub fn assert_fails_saying(out: &Output, fragment: &str) {
    assert!(!out.status.success(), "succeeded: {}", stdout(out));
    assert!(stderr(out).contains(fragment), "{}", stderr(out));
}

/// The lines of a text file.
pub fn read_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes `lines` to `file`, each followed by a newline (JSON values in their compact form).
pub fn write_lines<T: Display>(file: &Path, lines: &[T]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(file, text).unwrap();
}

/// Runs `ledgerstack import FILE --data-dir DIR`.
pub fn import(dir: &Path, file: &Path) -> Output {
    ledgerstack()
        .arg("import")
        .arg(file)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// Writes `lines` to `history.jsonl` in `dir` and imports them into `dir`, which must succeed.
pub fn import_lines(dir: &Path, lines: &[Value]) {
    let file = dir.join("history.jsonl");
    write_lines(&file, lines);
    let out = import(dir, &file);
    assert!(out.status.success(), "import: {}", stderr(&out));
}

/// What `ledgerstack digest --data-dir DIR` prints, which must succeed.
pub fn digest(dir: &Path) -> String {
    let out = ledgerstack()
        .args(["digest", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Sends SIGTERM to `child`, as a service manager or Ctrl-C stops `serve` (or `tail --follow`).
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A `serve` just past its ready line, its standard output still to be read.
pub struct Serving {
    /// The `serve` process.
    pub child: Child,
    /// Its standard output, read up to the ready line.
    pub stdout: BufReader<ChildStdout>,
    /// Everything it printed up to and including the ready line.
    pub printed: String,
    /// The API endpoint of the ready line, `http://127.0.0.1:PORT/client/api`.
    pub endpoint: String,
}

/// Starts `ledgerstack serve` (with `--demo` if `demo`) on a free port of 127.0.0.1 over
/// `data_dir` and reads its standard output up to its ready line; panics, with what it printed,
/// if it ends first.
pub fn spawn_serve(data_dir: &Path, demo: bool) -> Serving {
    let mut command = ledgerstack();
    command.arg("serve");
    if demo {
        command.arg("--demo");
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    match read_until_ready(&mut stdout) {
        Ok((printed, endpoint)) => Serving {
            child,
            stdout,
            printed,
            endpoint,
        },
        Err(printed) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("serve exited ({status:?}) before its ready line:\n{printed}");
        }
    }
}

/// Everything `serve` prints up to and including its ready line, and the endpoint that line
/// names; `Err` with what it printed if its stdout ends first.
fn read_until_ready(stdout: &mut BufReader<ChildStdout>) -> Result<(String, String), String> {
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            return Err(printed);
        }
        printed.push_str(&line);
        if let Some(rest) = line.strip_prefix("Ledgerstack API on ") {
            let endpoint = rest.split_whitespace().next().unwrap().to_owned();
            return Ok((printed, endpoint));
        }
    }
}

/// A `serve` on a free port of 127.0.0.1, killed when dropped (or stopped with SIGTERM).
pub struct Server {
    child: Child,
    /// Its API endpoint.
    pub endpoint: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The temporary directory it made for its data, if it made one.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A server (a demo one if `demo`) in a new data directory of its own, removed after it.
    pub fn start(demo: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_on(dir.path(), demo);
        server._dir = Some(dir);
        server
    }

    /// A server (a demo one if `demo`) over `data_dir`, which it creates if it is missing.
    pub fn start_on(data_dir: &Path, demo: bool) -> Server {
        let Serving {
            child,
            mut stdout,
            endpoint,
            ..
        } = spawn_serve(data_dir, demo);
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            child,
            endpoint,
            data_dir: data_dir.to_owned(),
            _dir: None,
        }
    }

    /// Stops the server with SIGTERM and waits for it: every acknowledged event is in the log.
    pub fn terminate(mut self) -> ExitStatus {
        sigterm(&self.child);
        self.child.wait().unwrap()
    }

    /// `ledgerstack call COMMAND ARGS...` with the keys of the admin of this server's data
    /// directory.
    pub fn call(&self, args: &[&str]) -> Output {
        call(&self.endpoint, &self.data_dir, args)
    }

    /// A successful `call`'s standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.call(args);
        assert!(
            out.status.success(),
            "call {args:?} failed ({}): {}",
            out.status,
            stderr(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A successful `call`'s standard output with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// `ledgerstack call --endpoint ENDPOINT --from-data-dir KEYS_FROM ARGS...`, with no client
/// settings from the environment or a home config: signed with the keys of the admin of the
/// data directory `keys_from`.
pub fn call(endpoint: &str, keys_from: &Path, args: &[&str]) -> Output {
    isolated(keys_from)
        .args(["call", "--endpoint", endpoint, "--from-data-dir"])
        .arg(keys_from)
        .args(args)
        .output()
        .unwrap()
}

/// A new data directory holding the bootstrap's events: a server started on it and stopped
/// with SIGTERM.
pub fn bootstrapped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Server::start_on(dir.path(), false).terminate();
    // A SIGTERM that arrives before serve has installed its handler ends it by the signal;
    // either way every acknowledged event is in the log, which is what these tests read.
    assert!(
        status.success() || status.signal() == Some(15),
        "serve exited with {status}"
    );
    dir
}

/// The ids in a test file's small history of a domain, an account, an offering and a VM (each
/// file has its own).
pub struct Ids {
    /// The domain's id.
    pub domain: &'static str,
    /// The account's id.
    pub account: &'static str,
    /// The service offering's id.
    pub offering: &'static str,
    /// The id of the VM's zone.
    pub zone: &'static str,
    /// The id of the VM's template.
    pub template: &'static str,
    /// The VM's id.
    pub vm: &'static str,
    /// What the events' ids start with: their number follows, in 12 hex digits.
    pub event_prefix: &'static str,
}

impl Ids {
    /// The id of the `n`th event.
    pub fn event_id(&self, n: u32) -> String {
        format!("{}{n:012x}", self.event_prefix)
    }

    /// The `n`th event as a line of docs/events.md shows it (without the members the store
    /// assigns).
    pub fn event(&self, n: u32, stream: &str, event_type: &str, at: &str, data: Value) -> Value {
        json!({
            "id": self.event_id(n), "stream": stream, "type": event_type, "occurred_at": at,
            "actor": {}, "level": "INFO", "state": "Completed", "data": data,
        })
    }

    /// The VM as its events describe it, owned by `account`.
    pub fn vm(&self, account: &str) -> Value {
        json!({
            "vm_id": self.vm, "name": "web-01", "instance_name": "i-2-5-VM",
            "account_id": account, "domain_id": self.domain, "zone_id": self.zone,
            "service_offering_id": self.offering, "template_id": self.template,
            "hypervisor": "Simulator", "cpu_number": 1, "cpu_speed": 1000, "memory": 1024,
        })
    }

    /// The VM's stream.
    pub fn vm_stream(&self) -> String {
        format!("vm-{}", self.vm)
    }

    /// Events 1 to 6: a domain `acme`, an account `acme-ops` in it, an offering `Small` whose
    /// display text is `offering_text`, then the VM created and started on 2024-05-01 at 10:00
    /// and stopped on 2024-05-02 at 06:00.
    pub fn history(&self, offering_text: &str) -> Vec<Value> {
        let (domain, account, offering) = (self.domain, self.account, self.offering);
        let vm_stream = self.vm_stream();
        vec![
            self.event(
                1,
                &format!("domain-{domain}"),
                "DOMAIN.CREATE",
                "2024-04-30T00:00:00.000Z",
                json!({"domain": {"domain_id": domain, "name": "acme", "path": "/acme"}}),
            ),
            self.event(
                2,
                &format!("account-{account}"),
                "ACCOUNT.CREATE",
                "2024-04-30T00:00:01.000Z",
                json!({"account": {"account_id": account, "name": "acme-ops",
                    "account_type": "User", "domain_id": domain}}),
            ),
            self.event(
                3,
                &format!("offering-{offering}"),
                "SERVICE.OFFERING.CREATE",
                "2024-04-30T00:00:02.000Z",
                json!({"offering": {
                    "service_offering_id": offering, "name": "Small",
                    "display_text": offering_text, "cpu_number": 1, "cpu_speed": 1000,
                    "memory": 1024, "is_customized": false, "offer_ha": false,
                    "limit_cpu_use": false, "dynamic_scaling_enabled": false,
                    "storage_type": "shared", "domain_ids": [], "zone_ids": [],
                }}),
            ),
            self.event(
                4,
                &vm_stream,
                "VM.CREATE",
                "2024-05-01T10:00:00.000Z",
                json!({"vm": self.vm(account), "ssh_keypairs": [], "affinity_group_ids": []}),
            ),
            self.event(
                5,
                &vm_stream,
                "VM.START",
                "2024-05-01T10:00:00.000Z",
                json!({"vm": self.vm(account)}),
            ),
            self.event(
                6,
                &vm_stream,
                "VM.STOP",
                "2024-05-02T06:00:00.000Z",
                json!({"vm": self.vm(account), "forced": false}),
            ),
        ]
    }
}
