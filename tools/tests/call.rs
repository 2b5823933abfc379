//! `ledgerstack call` and `ledgerstack sign` run as an operator runs them, against a real
//! `ledgerstack serve --demo` on 127.0.0.1.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use support::{Server, isolated, ledgerstack, stderr};

/// The admin's keys, as the server's first start wrote them.
fn keys(server: &Server) -> (String, String) {
    let text = std::fs::read_to_string(server.data_dir.join("admin-credentials.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    (
        json["api_key"].as_str().unwrap().to_owned(),
        json["secret_key"].as_str().unwrap().to_owned(),
    )
}

/// `ledgerstack <args>` with no client settings from the environment or a home config.
fn run(server: &Server, args: &[&str]) -> Output {
    isolated(&server.data_dir).args(args).output().unwrap()
}

/// `deployVirtualMachine` and its zone, template and offering parameters, for the demo
/// zone's featured template and the Small Instance offering.
fn deploy_args(server: &Server) -> Vec<String> {
    let id = |args: &[&str], item: &str| {
        server.json(args)[item][0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    vec![
        "deployVirtualMachine".to_owned(),
        format!("zoneid={}", id(&["listZones"], "zone")),
        format!(
            "templateid={}",
            id(&["listTemplates", "templatefilter=featured"], "template")
        ),
        format!(
            "serviceofferingid={}",
            id(
                &["listServiceOfferings", "name=Small Instance"],
                "serviceoffering"
            )
        ),
    ]
}

#[test]
fn list_zones_as_a_table_and_as_json() {
    let server = Server::start(true);

    let table = server.ok(&["listZones"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..2], ["id", "name"], "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.contains("Demo Zone") && row.contains("Enabled"),
        "{table}"
    );
    assert_eq!(lines.next(), None, "{table}");

    let chosen = server.ok(&["listZones", "--columns", "name,networktype"]);
    assert_eq!(chosen, "name       networktype\nDemo Zone  Advanced\n");

    let json = server.json(&["listZones"]);
    assert_eq!(json["count"], 1);
    assert_eq!(json["zone"][0]["name"], "Demo Zone");
    let by_name = server.json(&["listZones", "name=Demo Zone"]);
    assert_eq!(by_name["zone"][0]["id"], json["zone"][0]["id"]);
}

#[test]
fn a_sync_create_and_an_async_deploy_polled_to_completion() {
    let server = Server::start(true);

    // Sync: values with spaces and `=` arrive whole, POSTed as well as in a query string.
    let account = server.json(&[
        "createAccount",
        "username=ops",
        "password=pa=ss word",
        "email=ops@example.com",
        "firstname=Ada Mary",
        "lastname=Ops",
        "accounttype=0",
    ]);
    assert_eq!(account["account"]["name"], "ops");
    let users = server.json(&["listUsers", "username=ops", "--post"]);
    assert_eq!(users["user"][0]["firstname"], "Ada Mary");

    // Async: the client polls queryAsyncJobResult and prints the finished job's result.
    let deploy_args = deploy_args(&server);
    let deploy: Vec<&str> = deploy_args.iter().map(String::as_str).collect();
    let mut first = deploy.to_vec();
    first.push("name=web-1");
    let result = server.json(&first);
    let vm = &result["virtualmachine"];
    assert_eq!(vm["name"], "web-1");
    assert_eq!(vm["state"], "Running", "{result}");
    let vm_id = vm["id"].as_str().unwrap().to_owned();

    // The table form of a finished job shows the object's fields.
    let mut second = deploy.to_vec();
    second.extend(["name=web-2", "--columns", "name,state"]);
    assert_eq!(server.ok(&second), "name   state\nweb-2  Running\n");

    // --no-wait prints the job id (and the new VM's id) without polling.
    let mut third = deploy.to_vec();
    third.extend(["name=web-3", "--no-wait"]);
    let queued = server.json(&third);
    assert!(
        queued["jobid"].as_str().is_some_and(|j| !j.is_empty()),
        "{queued}"
    );
    assert!(queued["id"].as_str().is_some(), "{queued}");
    assert!(queued.get("virtualmachine").is_none(), "{queued}");
    // queryAsyncJobResult itself answers with a jobid: it is printed, not polled.
    let job = queued["jobid"].as_str().unwrap();
    let status = server.json(&["queryAsyncJobResult", &format!("jobid={job}")]);
    assert_eq!(status["jobid"], job);
    assert!(status["jobstatus"].is_u64(), "{status}");

    // Map parameters pass through as tags[N].field.
    let ids = format!("resourceids={vm_id}");
    let tagged = server.json(&[
        "createTags",
        "resourcetype=UserVm",
        &ids,
        "tags[0].key=env",
        "tags[0].value=prod x=y",
    ]);
    assert_eq!(tagged["success"], true, "{tagged}");
    let tags = server.json(&["listTags", "key=env"]);
    assert_eq!(tags["tag"][0]["value"], "prod x=y", "{tags}");
    assert_eq!(tags["tag"][0]["resourceid"], vm_id.as_str());
}

#[test]
fn errors_exit_non_zero_with_the_cloudstack_code_and_text() {
    let server = Server::start(true);

    let out = server.call(&["createAccount", "username=nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("CloudStack error 431")
            && err.contains("Unable to execute API command createAccount due to missing parameter"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // Nothing was created.
    assert_eq!(
        server.json(&["listAccounts", "name=nobody", "listall=true"]),
        serde_json::json!({})
    );

    let out = server.call(&["listZones", "not-a-pair"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not NAME=VALUE"));

    let out = server.call(&["listZones", "signature=forged"]);
    assert_eq!(out.status.code(), Some(2));

    // Wrong keys: the server's 401.
    let out = run(
        &server,
        &[
            "call",
            "--endpoint",
            &server.endpoint,
            "--api-key",
            "nobody",
            "--secret-key",
            "nothing",
            "listZones",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"));

    // No keys anywhere: a usage error naming where they can come from.
    let out = run(
        &server,
        &["call", "--endpoint", &server.endpoint, "listZones"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--api-key"));

    // A job that fails: the job's error code and text.
    let deploy_args = deploy_args(&server);
    let mut deploy: Vec<&str> = deploy_args.iter().map(String::as_str).collect();
    server.ok(&[
        "configureSimulator",
        "name=StartCommand",
        "value=result:fail",
    ]);
    deploy.push("name=failing");
    let out = server.call(&deploy);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("failed: CloudStack error 534") && err.contains("Simulated failure"),
        "{err}"
    );

    // A job still pending when the wait runs out (the hypervisor takes a minute to start it).
    server.ok(&[
        "configureSimulator",
        "name=StartCommand",
        "value=wait:60000",
    ]);
    deploy.pop();
    deploy.extend(["name=slow", "--timeout", "0"]);
    let out = server.call(&deploy);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("still pending"));

    // Nobody listening: a transport failure.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = server.data_dir.to_str().unwrap();
    let out = run(
        &server,
        &[
            "call",
            "--endpoint",
            &format!("http://127.0.0.1:{closed}/client/api"),
            "--from-data-dir",
            dir,
            "listZones",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// A plain HTTP/1.0 GET of `url` (no client library): the status code and the body.
fn plain_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[test]
fn signed_urls_are_accepted_by_the_server_on_a_plain_get() {
    let server = Server::start(true);
    let (api_key, secret_key) = keys(&server);

    // Keys from a config file named by the environment.
    let config: PathBuf = server.data_dir.join("client.toml");
    std::fs::write(
        &config,
        format!(
            "endpoint = \"{}\"\napi_key = \"{api_key}\"\nsecret_key = \"{secret_key}\"\n",
            server.endpoint
        ),
    )
    .unwrap();
    let sign = |args: &[&str]| -> String {
        let out = ledgerstack()
            .arg("sign")
            .args(args)
            .env("LEDGERSTACK_CONFIG", &config)
            .env_remove("LEDGERSTACK_ENDPOINT")
            .env_remove("LEDGERSTACK_API_KEY")
            .env_remove("LEDGERSTACK_SECRET_KEY")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };

    let url = sign(&["listZones", "name=Demo Zone"]);
    assert!(url.starts_with(&format!("{}?", server.endpoint)), "{url}");
    let (status, body) = plain_get(&url);
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["listzonesresponse"]["zone"][0]["name"], "Demo Zone");

    let expiring = sign(&["--expires", "600", "listZones"]);
    assert!(
        expiring.contains("signatureVersion=3&expires="),
        "{expiring}"
    );
    let (status, body) = plain_get(&expiring);
    assert_eq!(status, 200, "{body}");

    // The signature covers the parameters: change one and the server refuses it.
    let tampered = url.replace("name=Demo%20Zone", "name=Other");
    assert_ne!(tampered, url);
    let (status, body) = plain_get(&tampered);
    assert_eq!(status, 401, "{body}");
}
