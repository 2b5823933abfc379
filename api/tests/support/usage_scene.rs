//! The usage suites' shared scenario (`usage_records.rs`, `usage_export.rs`): signed calls as
//! any caller, async jobs run to their end, and a manual-clock server where two VMs ran for two
//! days and their usage was generated.

use std::time::{Duration, Instant};

use api::app::ClockChoice;
use api::bootstrap::demo_id;
use api::protocol::params::Params;
use api::protocol::signature;
use serde_json::Value;

use super::{Server, encode};

/// Someone calling the API: API key and secret.
#[derive(Clone)]
pub struct Keys {
    pub api_key: String,
    pub secret: String,
}

pub fn admin(server: &Server) -> Keys {
    Keys {
        api_key: server.api_key.clone(),
        secret: server.secret_key.clone(),
    }
}

/// The password of every account [`account`] creates.
pub const PASSWORD: &str = "s3cret-Passw0rd";

/// The query string of `pairs` signed with `keys`.
pub fn signed_query(keys: &Keys, pairs: &[(&str, &str)]) -> String {
    let mut params = Params::default();
    params.insert("apiKey", &keys.api_key);
    for (name, value) in pairs {
        params.insert(name, value);
    }
    let signature = signature::sign(&params, &keys.secret);
    let mut query = format!("apiKey={}", encode(&keys.api_key));
    for (name, value) in pairs {
        query.push_str(&format!("&{name}={}", encode(value)));
    }
    query.push_str(&format!("&signature={}", encode(&signature)));
    query
}

/// GET `/client/api` signed with `keys`: the status and the raw body.
pub async fn raw_get(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> (u16, String) {
    let query = signed_query(keys, pairs);
    let reply = super::http_get(server.addr, format!("/client/api?{query}")).await;
    (reply.status, reply.body)
}

/// A JSON call: status and the object under `<command>response`.
pub async fn call(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> (u16, Value) {
    let mut all = pairs.to_vec();
    all.push(("response", "json"));
    let (status, body) = raw_get(server, keys, &all).await;
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let inner = json
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    (status, inner)
}

pub async fn ok(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> Value {
    let (status, body) = call(server, keys, pairs).await;
    assert_eq!(status, 200, "{pairs:?}: {body}");
    body
}

/// An error's HTTP status and code.
pub async fn error(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> (u16, Value) {
    let (status, body) = call(server, keys, pairs).await;
    assert_ne!(status, 200, "{pairs:?} should fail: {body}");
    assert_eq!(body["errorcode"], status, "{body}");
    (status, body)
}

/// Runs an async command to its successful end.
pub async fn job(server: &Server, keys: &Keys, pairs: &[(&str, &str)]) -> Value {
    let submitted = ok(server, keys, pairs).await;
    let job = submitted["jobid"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = ok(
            server,
            keys,
            &[("command", "queryAsyncJobResult"), ("jobid", &job)],
        )
        .await;
        match status["jobstatus"].as_u64() {
            Some(1) => return status["jobresult"].clone(),
            Some(2) => panic!("{pairs:?} failed: {status}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the scenario created.
pub struct Scene {
    pub server: Server,
    pub admin: Keys,
    /// The `customers` domain.
    pub domain: String,
    /// A user of account `acme` in `customers`.
    pub user: Keys,
    /// A domain admin of `customers`.
    pub domain_admin: Keys,
}

/// An account in `domain` with API keys for its user.
pub async fn account(server: &Server, domain: &str, name: &str, account_type: &str) -> Keys {
    let admin = admin(server);
    let created = ok(
        server,
        &admin,
        &[
            ("command", "createAccount"),
            ("accounttype", account_type),
            ("username", name),
            ("account", name),
            ("domainid", domain),
            ("password", PASSWORD),
            ("email", "someone@example.com"),
            ("firstname", "Some"),
            ("lastname", "One"),
        ],
    )
    .await;
    let user_id = created["account"]["user"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys = ok(
        server,
        &admin,
        &[("command", "registerUserKeys"), ("id", &user_id)],
    )
    .await;
    Keys {
        api_key: keys["userkeys"]["apikey"].as_str().unwrap().to_owned(),
        secret: keys["userkeys"]["secretkey"].as_str().unwrap().to_owned(),
    }
}

/// From 2026-03-01T00:00Z: the admin deploys a VM of its own and one for `acme` in
/// `customers`; the clock moves two days on; `generateUsageRecords` closes both days.
pub async fn scene() -> Scene {
    let start = "2026-03-01T00:00:00Z".parse().unwrap();
    let server = Server::start_with(ClockChoice::Manual { start: Some(start) }, true).await;
    let admin = admin(&server);
    let domain = ok(
        &server,
        &admin,
        &[("command", "createDomain"), ("name", "customers")],
    )
    .await["domain"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = account(&server, &domain, "acme", "0").await;
    let domain_admin = account(&server, &domain, "dadmin", "2").await;
    let template = ok(
        &server,
        &admin,
        &[("command", "listTemplates"), ("templatefilter", "featured")],
    )
    .await["template"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (zone, small) = (demo_id("zone").to_string(), demo_id("small").to_string());
    let deploy = [
        ("command", "deployVirtualMachine"),
        ("zoneid", zone.as_str()),
        ("templateid", template.as_str()),
        ("serviceofferingid", small.as_str()),
    ];
    job(&server, &admin, &deploy).await;
    let mut for_acme = deploy.to_vec();
    for_acme.extend([("account", "acme"), ("domainid", domain.as_str())]);
    job(&server, &admin, &for_acme).await;
    ok(
        &server,
        &admin,
        &[("command", "advanceClock"), ("days", "2")],
    )
    .await;
    let generated = ok(&server, &admin, &[("command", "generateUsageRecords")]).await;
    assert_eq!(generated["success"], true, "{generated}");
    Scene {
        server,
        admin,
        domain,
        user,
        domain_admin,
    }
}
