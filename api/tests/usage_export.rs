//! `GET /client/usage/export` over real HTTP on a manual clock: a VM of account `acme` runs for
//! two days, the periods close, and the export answers CSV and JSON Lines holding exactly what
//! `listUsageRecords` lists, to whoever may call `listUsageRecords` (signed or by session), and
//! CloudStack's error envelope to anyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;
use support::usage_scene::{Keys, PASSWORD, Scene, ok, scene, signed_query};
use support::{Server, encode};
use usage::export::COLUMNS;

/// An HTTP answer: status, headers (names lowercase) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error object of CloudStack's envelope.
    fn error(&self) -> Value {
        let json: Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body));
        json["errorresponse"].clone()
    }
}

/// Sends a raw HTTP/1.1 request and reads the whole answer.
async fn send(server: &Server, request: String) -> Answer {
    let addr = server.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        raw
    })
    .await
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(server: &Server, path: &str, query: &str, extra_headers: &str) -> Answer {
    let addr = server.addr;
    send(
        server,
        format!("GET {path}?{query} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"),
    )
    .await
}

/// A signed export request.
async fn export(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> Answer {
    get(
        server,
        "/client/usage/export",
        &signed_query(keys, pairs),
        "",
    )
    .await
}

/// The `usagerecord` items `listUsageRecords` answers for `pairs`.
async fn listed(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> Vec<Value> {
    let mut all = vec![("command", "listUsageRecords")];
    all.extend_from_slice(pairs);
    let list = ok(server, keys, &all).await;
    list["usagerecord"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_holds_what_list_usage_records_lists_for_whoever_may_list_it() {
    let Scene {
        server,
        admin,
        domain,
        user,
        ..
    } = scene().await;

    let range = [("startdate", "2026-03-01"), ("enddate", "2026-03-02")];
    let all = listed(&server, &admin, &[range[0], range[1], ("pagesize", "-1")]).await;
    assert!(all.len() >= 4, "two VMs, two days: {all:?}");

    // JSON Lines: one record per line, exactly the listed objects, in the same order.
    let jsonl = export(&server, &admin, &[range[0], range[1], ("format", "jsonl")]).await;
    assert_eq!(jsonl.status, 200, "{}", jsonl.body);
    assert_eq!(jsonl.header("content-type"), Some("application/x-ndjson"));
    assert!(
        jsonl
            .header("content-disposition")
            .is_some_and(|v| v.contains("usage-records.jsonl")),
        "{:?}",
        jsonl.headers
    );
    let lines: Vec<Value> = jsonl
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, all);

    // CSV: the documented header, then one row per record with the same values.
    let csv = export(&server, &admin, &[range[0], range[1], ("format", "csv")]).await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(
        csv.header("content-type")
            .is_some_and(|v| v.starts_with("text/csv")),
        "{:?}",
        csv.headers
    );
    let rows: Vec<&str> = csv.body.split_terminator("\r\n").collect();
    assert_eq!(rows[0], COLUMNS.join(","));
    assert_eq!(rows.len(), all.len() + 1);
    for (row, record) in rows[1..].iter().zip(&all) {
        let usage_id = record["usageid"].as_str().unwrap();
        let raw = record["rawusage"].as_str().unwrap();
        let start = record["startdate"].as_str().unwrap();
        assert!(
            row.contains(usage_id) && row.contains(&format!(",{raw},")) && row.contains(start),
            "{row} vs {record}"
        );
    }

    // Filters are listUsageRecords': one account's records only.
    let acme = export(
        &server,
        &admin,
        &[
            range[0],
            range[1],
            ("account", "acme"),
            ("domainid", &domain),
            ("format", "jsonl"),
        ],
    )
    .await;
    assert_eq!(acme.status, 200, "{}", acme.body);
    let acme_lines: Vec<Value> = acme
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!acme_lines.is_empty() && acme_lines.len() < all.len());
    assert!(acme_lines.iter().all(|r| r["account"] == "acme"));

    // A domain admin with a session (the JSESSIONID cookie and the session key) sees their
    // domain's records.
    let body = format!(
        "command=login&username=dadmin&password={}&domainid={domain}&response=json",
        encode(PASSWORD)
    );
    let addr = server.addr;
    let login = send(
        &server,
        format!(
            "POST /client/api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookies: Vec<String> = login
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next().map(str::to_owned))
        .collect();
    let session_key = cookies
        .iter()
        .find_map(|c| c.strip_prefix("sessionkey="))
        .unwrap()
        .to_owned();
    let by_session = get(
        &server,
        "/client/usage/export",
        &format!(
            "startdate=2026-03-01&enddate=2026-03-02&format=jsonl&sessionkey={}",
            encode(&session_key)
        ),
        &format!("Cookie: {}\r\n", cookies.join("; ")),
    )
    .await;
    assert_eq!(by_session.status, 200, "{}", by_session.body);
    let domain_lines: Vec<Value> = by_session
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(domain_lines, acme_lines);

    // A user may not call listUsageRecords, so may not export: CloudStack's error envelope.
    let refused = export(&server, &user, &[range[0], range[1], ("format", "csv")]).await;
    assert_ne!(refused.status, 200);
    let error = refused.error();
    assert_eq!(error["errorcode"], refused.status, "{error}");
    assert!(
        error["errortext"]
            .as_str()
            .unwrap()
            .contains("listUsageRecords"),
        "{error}"
    );

    // A bad signature, a missing or unknown format, a bad date: errors, as on /client/api.
    let forged = Keys {
        secret: "not-the-secret".into(),
        ..admin.clone()
    };
    let unauthorized = export(&server, &forged, &[range[0], range[1], ("format", "csv")]).await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.error()["errorcode"], 401);
    let missing = export(&server, &admin, &[range[0], range[1]]).await;
    assert_eq!(missing.status, 431, "{}", missing.body);
    assert!(
        missing.error()["errortext"]
            .as_str()
            .unwrap()
            .contains("format")
    );
    let unknown = export(&server, &admin, &[range[0], range[1], ("format", "xls")]).await;
    assert_eq!(unknown.status, 431);
    let no_start = export(&server, &admin, &[range[1], ("format", "csv")]).await;
    assert_eq!(no_start.status, 431, "{}", no_start.body);
    assert!(
        no_start.error()["errortext"]
            .as_str()
            .unwrap()
            .contains("startdate")
    );
    assert!(no_start.header("x-description").is_some());

    server.stop().await;
}
