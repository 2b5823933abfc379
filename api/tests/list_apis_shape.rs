//! The `cmk sync` contract (spec/api.md "API discovery"): `listApis` over real HTTP, signed as
//! the root admin, has every key `cmk` reads with the type it expects, for every api, and the
//! sync/async nature spec/commands.md gives. A missing key or a wrong type crashes `cmk`.

mod support;

use api::app::ClockChoice;
use serde_json::Value;
use support::Server;

/// Parameter types `cmk` knows (spec/api.md "API discovery").
const PARAM_TYPES: &[&str] = &[
    "boolean", "date", "float", "double", "integer", "short", "list", "long", "object", "map",
    "string", "uuid",
];

/// Sync (false) or async (true), from spec/commands.md.
const NATURE: &[(&str, bool)] = &[
    ("deleteDomain", true),
    ("disableAccount", true),
    ("deleteAccount", true),
    ("disableUser", true),
    ("createDomain", false),
    ("enableAccount", false),
    ("lockAccount", false),
    ("deleteUser", false),
    ("enableUser", false),
    ("createZone", false),
    ("createServiceOffering", false),
    ("updateConfiguration", false),
    ("queryAsyncJobResult", false),
    // Networks, IPs, NAT, firewall, load balancing, VPN, security groups, VPCs, routers.
    ("listNetworkOfferings", false),
    ("createNetworkOffering", false),
    ("updateNetworkOffering", false),
    ("createNetwork", false),
    ("listNetworks", false),
    ("updateNetwork", true),
    ("restartNetwork", true),
    ("deleteNetwork", true),
    ("createVlanIpRange", false),
    ("listVlanIpRanges", false),
    ("deleteVlanIpRange", false),
    ("addNicToVirtualMachine", true),
    ("removeNicFromVirtualMachine", true),
    ("updateDefaultNicForVirtualMachine", true),
    ("associateIpAddress", true),
    ("disassociateIpAddress", true),
    ("listPublicIpAddresses", false),
    ("enableStaticNat", false),
    ("disableStaticNat", true),
    ("createPortForwardingRule", true),
    ("deletePortForwardingRule", true),
    ("listPortForwardingRules", false),
    ("updatePortForwardingRule", true),
    ("createFirewallRule", true),
    ("deleteFirewallRule", true),
    ("listFirewallRules", false),
    ("createEgressFirewallRule", true),
    ("deleteEgressFirewallRule", true),
    ("listEgressFirewallRules", false),
    ("createIpForwardingRule", true),
    ("deleteIpForwardingRule", true),
    ("listIpForwardingRules", false),
    ("createLoadBalancerRule", true),
    ("deleteLoadBalancerRule", true),
    ("updateLoadBalancerRule", true),
    ("assignToLoadBalancerRule", true),
    ("removeFromLoadBalancerRule", true),
    ("listLoadBalancerRules", false),
    ("listLoadBalancerRuleInstances", false),
    ("createRemoteAccessVpn", true),
    ("deleteRemoteAccessVpn", true),
    ("listRemoteAccessVpns", false),
    ("addVpnUser", true),
    ("removeVpnUser", true),
    ("listVpnUsers", false),
    ("createSecurityGroup", false),
    ("deleteSecurityGroup", false),
    ("listSecurityGroups", false),
    ("authorizeSecurityGroupIngress", true),
    ("authorizeSecurityGroupEgress", true),
    ("revokeSecurityGroupIngress", true),
    ("revokeSecurityGroupEgress", true),
    ("createVPC", true),
    ("listVPCs", false),
    ("updateVPC", true),
    ("deleteVPC", true),
    ("restartVPC", true),
    ("listVPCOfferings", false),
    ("listRouters", false),
    ("startRouter", true),
    ("stopRouter", true),
    ("rebootRouter", true),
    ("destroyRouter", true),
    // Usage.
    ("listUsageRecords", false),
    ("listUsageTypes", false),
    ("generateUsageRecords", false),
    ("removeRawUsageRecords", false),
    ("listUsageServerMetrics", false),
];

/// `listApis&response=json`: the `api` array, after checking `count` against it.
async fn list_apis(server: &Server) -> Vec<Value> {
    let (status, json) = server
        .signed_get(&[("command", "listApis"), ("response", "json")])
        .await;
    assert_eq!(status, 200, "{json}");
    let response = &json["listapisresponse"];
    let apis = response["api"]
        .as_array()
        .unwrap_or_else(|| panic!("no api array: {json}"))
        .clone();
    assert_eq!(
        response["count"].as_u64(),
        Some(apis.len() as u64),
        "count must equal the number of apis listed"
    );
    apis
}

/// Every way `api` departs from what `cmk` reads, as readable lines.
fn shape_problems(api: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let name = api["name"].as_str().unwrap_or("<no name>").to_owned();
    let mut problem = |what: String| problems.push(format!("{name}: {what}"));
    if !api.is_object() {
        problem(format!("not an object: {api}"));
        return problems;
    }
    if !api["name"].is_string() {
        problem(format!("name is not a string: {}", api["name"]));
    }
    if !api["isasync"].is_boolean() {
        problem(format!("isasync is not a boolean: {}", api["isasync"]));
    }
    if !api["description"].is_string() {
        problem(format!(
            "description is not a string: {}",
            api["description"]
        ));
    }
    for key in ["related", "since", "type"] {
        if let Some(value) = api.get(key)
            && !value.is_string()
        {
            problem(format!("{key} is present but not a string: {value}"));
        }
    }
    match api["response"].as_array() {
        None => problem(format!("response is not an array: {}", api["response"])),
        Some(fields) => {
            for field in fields {
                if !field["name"].is_string() {
                    problem(format!("a response field without a string name: {field}"));
                }
            }
        }
    }
    let Some(params) = api["params"].as_array() else {
        problem(format!("params is not an array: {}", api["params"]));
        return problems;
    };
    for param in params {
        let pname = param["name"].as_str().unwrap_or("<no name>");
        if !param["name"].is_string() {
            problem(format!("a param without a string name: {param}"));
        }
        match param["type"].as_str() {
            Some(ty) if PARAM_TYPES.contains(&ty) => {}
            _ => problem(format!(
                "param {pname}: type is not one cmk knows: {}",
                param["type"]
            )),
        }
        if !param["required"].is_boolean() {
            problem(format!(
                "param {pname}: required is not a boolean: {}",
                param["required"]
            ));
        }
        if !param["description"].is_string() {
            problem(format!(
                "param {pname}: description is not a string: {}",
                param["description"]
            ));
        }
        if !param["length"].is_number() {
            problem(format!(
                "param {pname}: length is not a number: {}",
                param["length"]
            ));
        }
        if let Some(related) = param.get("related")
            && !related.is_string()
        {
            problem(format!(
                "param {pname}: related is present but not a string: {related}"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_has_the_keys_and_types_cmk_sync_reads() {
    let server = Server::start(ClockChoice::System).await;
    let apis = list_apis(&server).await;
    assert!(
        apis.len() >= NATURE.len(),
        "only {} apis listed",
        apis.len()
    );

    let mut problems: Vec<String> = apis.iter().flat_map(shape_problems).collect();
    let mut names: Vec<&str> = apis.iter().filter_map(|a| a["name"].as_str()).collect();
    names.sort_unstable();
    for pair in names.windows(2) {
        if pair[0] == pair[1] {
            problems.push(format!("{} is listed more than once", pair[0]));
        }
    }
    for &(command, is_async) in NATURE {
        match apis.iter().find(|a| a["name"] == command) {
            None => problems.push(format!("{command} is not listed")),
            Some(api) if api["isasync"] != is_async => problems.push(format!(
                "{command}: isasync is {}, spec/commands.md says {}",
                api["isasync"],
                if is_async { "async" } else { "sync" }
            )),
            Some(_) => {}
        }
    }
    server.stop().await;
    assert!(
        problems.is_empty(),
        "listApis breaks the cmk sync contract:\n{}",
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advance_clock_is_listed_only_on_the_manual_clock() {
    let system = Server::start(ClockChoice::System).await;
    let listed = list_apis(&system).await;
    system.stop().await;
    assert!(
        !listed.iter().any(|a| a["name"] == "advanceClock"),
        "advanceClock is listed on the system clock"
    );

    let manual = Server::start(ClockChoice::Manual { start: None }).await;
    let listed = list_apis(&manual).await;
    manual.stop().await;
    let advance = listed
        .iter()
        .find(|a| a["name"] == "advanceClock")
        .expect("advanceClock is listed on the manual clock");
    assert_eq!(advance["isasync"], false);
    assert!(
        shape_problems(advance).is_empty(),
        "{:?}",
        shape_problems(advance)
    );
}
