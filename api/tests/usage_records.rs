//! The usage commands over real HTTP on a manual clock: a VM runs for two days, periods close
//! with `generateUsageRecords`, and `listUsageRecords` answers in JSON and XML with the shape
//! held in `tests/golden/` (ids normalised); then its parameters, roles, scope, paging and
//! `changedsince`.
//!
//! Regenerate the golden files after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p api --test usage_records`.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use support::usage_scene::{Keys, Scene, error, job, ok, raw_get, scene};

/// Replaces every UUID with `{uuid-N}` and every other 8-hex-digit word (the id fragments in
/// instance and volume names, `i-63ca8ff1-4c950149-VM`) with `{hex-N}`, numbered by first
/// appearance, so the shape and the sameness of ids are compared but not their random values.
fn normalise(text: &str) -> String {
    let mut uuids: HashMap<String, usize> = HashMap::new();
    let mut fragments: HashMap<String, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(candidate) = rest.get(..36)
            && candidate.as_bytes()[8] == b'-'
            && uuid::Uuid::try_parse(candidate).is_ok()
        {
            let next = uuids.len() + 1;
            let n = *uuids.entry(candidate.to_ascii_lowercase()).or_insert(next);
            out.push_str(&format!("{{uuid-{n}}}"));
            rest = &rest[36..];
            continue;
        }
        if c.is_ascii_alphanumeric() {
            let word_len = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let word = &rest[..word_len];
            let is_fragment = word.len() == 8
                && word
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && word.bytes().any(|b| b.is_ascii_digit());
            if is_fragment {
                let next = fragments.len() + 1;
                let n = *fragments.entry(word.to_owned()).or_insert(next);
                out.push_str(&format!("{{hex-{n}}}"));
            } else {
                out.push_str(word);
            }
            rest = &rest[word_len..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Compares `actual` with the golden file `name`, or writes it with `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected.as_str(),
        "{} differs (UPDATE_GOLDEN=1 rewrites it after an intended change)",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_usage_records_json_and_xml_match_the_golden_shape() {
    let scene = scene().await;
    let pairs = [
        ("command", "listUsageRecords"),
        ("startdate", "2026-03-01"),
        ("enddate", "2026-03-01"),
        ("account", "acme"),
        ("domainid", scene.domain.as_str()),
    ];
    let mut json = pairs.to_vec();
    json.push(("response", "json"));
    let (status, body) = raw_get(&scene.server, &scene.admin, &json).await;
    assert_eq!(status, 200, "{body}");
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let records = parsed["listusagerecordsresponse"]["usagerecord"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {body}"));
    assert!(
        records
            .iter()
            .any(|r| r["usagetype"] == 1 && r["rawusage"] == "24" && r["usage"] == "24 Hrs"),
        "a VM running all day has 24 hours of RUNNING_VM: {body}"
    );
    let pretty = serde_json::to_string_pretty(&parsed).unwrap() + "\n";
    golden("usage_records.json", &normalise(&pretty));

    let mut xml = pairs.to_vec();
    xml.push(("response", "xml"));
    let (status, body) = raw_get(&scene.server, &scene.admin, &xml).await;
    assert_eq!(status, 200, "{body}");
    // One record per line, so a difference reads well.
    let lines = body.replace("<usagerecord>", "\n<usagerecord>") + "\n";
    golden("usage_records.xml", &normalise(&lines));
    scene.server.stop().await;
}

/// `listUsageRecords` over both days with extra parameters: (count, records).
async fn records(scene: &Scene, keys: &Keys, extra: &[(&str, &str)]) -> (u64, Vec<Value>) {
    let mut pairs = vec![("command", "listUsageRecords")];
    for (name, default) in [("startdate", "2026-03-01"), ("enddate", "2026-03-02")] {
        if !extra.iter().any(|(n, _)| *n == name) {
            pairs.push((name, default));
        }
    }
    pairs.extend_from_slice(extra);
    let body = ok(&scene.server, keys, &pairs).await;
    let items = body["usagerecord"].as_array().cloned().unwrap_or_default();
    (body["count"].as_u64().unwrap_or(0), items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_commands_check_parameters_roles_scope_paging_and_changedsince() {
    let scene = scene().await;
    let (server, admin) = (&scene.server, &scene.admin);

    // Everything, for the root admin: both accounts, both days, in (period, account, type,
    // usage id) order, with `count` the total.
    let (count, all) = records(&scene, admin, &[]).await;
    assert_eq!(count as usize, all.len());
    let accounts: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|r| r["account"].as_str()).collect();
    assert!(
        accounts.contains("admin") && accounts.contains("acme"),
        "{accounts:?}"
    );
    let order: Vec<(String, String, u64, String)> = all
        .iter()
        .map(|r| {
            (
                r["startdate"].as_str().unwrap().to_owned(),
                r["accountid"].as_str().unwrap().to_owned(),
                r["usagetype"].as_u64().unwrap(),
                r["usageid"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "records are ordered by period, account, type, id"
    );
    for r in &all {
        assert_eq!(r["revision"], 1, "{r}");
        assert!(
            r["enddate"].as_str().unwrap().ends_with("T23:59:59+0000"),
            "{r}"
        );
    }

    // One day: only that day's records.
    let (day_one, _) = records(
        &scene,
        admin,
        &[("startdate", "2026-03-02"), ("enddate", "2026-03-02")],
    )
    .await;
    assert!(day_one > 0 && day_one < count, "{day_one} of {count}");

    // Paging: two pages of two are the first four, and count stays the total.
    let (c1, p1) = records(&scene, admin, &[("page", "1"), ("pagesize", "2")]).await;
    let (c2, p2) = records(&scene, admin, &[("page", "2"), ("pagesize", "2")]).await;
    assert_eq!((c1, c2), (count, count));
    assert_eq!([p1, p2].concat(), all[..4].to_vec());

    // type and usageid.
    let (running, running_records) = records(&scene, admin, &[("type", "1")]).await;
    assert!(running_records.iter().all(|r| r["usagetype"] == 1));
    let vm = running_records[0]["usageid"].as_str().unwrap().to_owned();
    let (one_vm, one_vm_records) = records(&scene, admin, &[("type", "1"), ("usageid", &vm)]).await;
    assert!(one_vm < running && one_vm_records.iter().all(|r| r["usageid"] == vm.as_str()));
    // includetags shows the entity's tags; oldformat the stored description.
    job(
        server,
        admin,
        &[
            ("command", "createTags"),
            ("resourcetype", "UserVm"),
            ("resourceids", &vm),
            ("tags[0].key", "billing"),
            ("tags[0].value", "team-a"),
        ],
    )
    .await;
    let (_, tagged) = records(
        &scene,
        admin,
        &[("type", "1"), ("usageid", &vm), ("includetags", "true")],
    )
    .await;
    assert_eq!(tagged[0]["tags"][0]["key"], "billing", "{tagged:?}");
    assert_eq!(tagged[0]["tags"][0]["value"], "team-a");
    assert_eq!(one_vm_records[0]["tags"], serde_json::json!([]));
    let (_, old) = records(
        &scene,
        admin,
        &[("type", "1"), ("usageid", &vm), ("oldformat", "true")],
    )
    .await;
    let old_text = old[0]["description"].as_str().unwrap();
    assert!(
        old_text.contains("running time (ServiceOffering: "),
        "{old_text}"
    );
    let (status, body) = error(
        server,
        admin,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-01"),
            ("enddate", "2026-03-02"),
            ("usageid", &vm),
        ],
    )
    .await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(
        body["errortext"],
        "Usageid must be specified together with usageType"
    );
    let (status, _) = error(
        server,
        admin,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-02"),
            ("enddate", "2026-03-01"),
        ],
    )
    .await;
    assert_eq!(status, 431);
    let (status, _) = error(
        server,
        admin,
        &[("command", "listUsageRecords"), ("startdate", "2026-03-01")],
    )
    .await;
    assert_eq!(status, 431, "enddate is required");

    // A user may not call it (default roles: Admin, Resource Admin, Domain Admin).
    let (status, _) = error(
        server,
        &scene.user,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-01"),
            ("enddate", "2026-03-02"),
        ],
    )
    .await;
    assert_eq!(status, 432);
    let (status, _) = error(server, &scene.user, &[("command", "listUsageTypes")]).await;
    assert_eq!(status, 432);

    // A domain admin sees their domain's records only, and not ROOT's.
    let (_, theirs) = records(&scene, &scene.domain_admin, &[]).await;
    assert!(!theirs.is_empty());
    assert!(
        theirs
            .iter()
            .all(|r| r["domainid"] == scene.domain.as_str()),
        "{theirs:?}"
    );
    let (_, recursive) = records(&scene, &scene.domain_admin, &[("isrecursive", "true")]).await;
    assert_eq!(recursive, theirs);
    let root = all.iter().find(|r| r["account"] == "admin").unwrap()["domainid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = error(
        server,
        &scene.domain_admin,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-01"),
            ("enddate", "2026-03-02"),
            ("domainid", &root),
        ],
    )
    .await;
    assert_eq!(status, 531);
    let admin_account = all.iter().find(|r| r["account"] == "admin").unwrap()["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = error(
        server,
        &scene.domain_admin,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-01"),
            ("enddate", "2026-03-02"),
            ("accountid", &admin_account),
        ],
    )
    .await;
    assert_eq!(status, 531);
    let (status, body) = error(
        server,
        admin,
        &[
            ("command", "listUsageRecords"),
            ("startdate", "2026-03-01"),
            ("enddate", "2026-03-02"),
            ("projectid", &admin_account),
        ],
    )
    .await;
    assert_eq!(status, 431, "{body}");

    // changedsince: after another day closes, only its records are new.
    let now = ok(server, admin, &[("command", "advanceClock"), ("days", "1")]).await["clock"]["to"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(server, admin, &[("command", "generateUsageRecords")]).await;
    let (_, changed) = records(
        &scene,
        admin,
        &[("enddate", "2026-03-03"), ("changedsince", &now)],
    )
    .await;
    assert!(!changed.is_empty());
    assert!(
        changed
            .iter()
            .all(|r| r["startdate"] == "2026-03-03T00:00:00+0000"),
        "{changed:?}"
    );
    let (_, again) = records(&scene, admin, &[("changedsince", &now)]).await;
    assert!(
        again.is_empty(),
        "the first two days did not change: {again:?}"
    );

    // The other usage commands.
    let types = ok(server, admin, &[("command", "listUsageTypes")]).await;
    assert_eq!(types["count"], 25);
    assert_eq!(
        types["usagetype"][0],
        serde_json::json!({"id": 1, "name": "RUNNING_VM", "description": "Running Vm Usage"})
    );
    let metrics = ok(server, admin, &[("command", "listUsageServerMetrics")]).await;
    let metrics = &metrics["usageMetrics"];
    assert_eq!(metrics["state"], "Up");
    assert_eq!(metrics["lastclosedperiodend"], "2026-03-04T00:00:00+0000");
    assert!(metrics["records"].as_u64().unwrap() > 0, "{metrics}");
    assert!(metrics["recordswritten"].as_u64().unwrap() >= metrics["records"].as_u64().unwrap());
    for interval in ["0", "-1"] {
        let (status, _) = error(
            server,
            admin,
            &[("command", "removeRawUsageRecords"), ("interval", interval)],
        )
        .await;
        assert_eq!(status, 431);
    }
    // Now 2026-03-04: one day back prunes the periods ending by 2026-03-03.
    let removed = ok(
        server,
        admin,
        &[("command", "removeRawUsageRecords"), ("interval", "1")],
    )
    .await;
    assert_eq!(removed["success"], true);
    let (left, left_records) = records(&scene, admin, &[("enddate", "2026-03-03")]).await;
    assert!(left > 0);
    assert!(
        left_records
            .iter()
            .all(|r| r["startdate"] == "2026-03-03T00:00:00+0000"),
        "{left_records:?}"
    );
    scene.server.stop().await;
}
