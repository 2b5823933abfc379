//! One authenticated call: who makes it, with which parameters, and the typed accessors and
//! standard rules (paging, account/domain scope) every command shares.

use engine::event::Actor;
use projections::State;
use uuid::Uuid;

use crate::error::ApiError;
use crate::protocol::dates::parse_filter_date;
use crate::protocol::params::{Params, parse_bool};
use crate::registry::{CommandSpec, Role};

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their user id.
    pub user_id: Uuid,
    /// Their account.
    pub account_id: Uuid,
    /// Their account's domain.
    pub domain_id: Uuid,
    /// Their role (from the account type).
    pub role: Role,
}

impl Caller {
    /// The actor recorded on the events this caller causes.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user_id, self.account_id)
    }

    /// True for root admins.
    pub fn is_root_admin(&self) -> bool {
        self.role == Role::RootAdmin
    }

    /// True when the caller may act on resources of `account` in `domain`: their own account,
    /// any account in a domain admin's subtree, anything for a root admin.
    pub fn may_access(&self, state: &State, account: Uuid, domain: Uuid) -> bool {
        match self.role {
            Role::RootAdmin => true,
            Role::DomainAdmin => state.identity.is_in_subtree(domain, self.domain_id),
            Role::User => account == self.account_id,
        }
    }

    /// True when the caller may see or manage `domain`.
    pub fn may_access_domain(&self, state: &State, domain: Uuid) -> bool {
        match self.role {
            Role::RootAdmin => true,
            Role::DomainAdmin => state.identity.is_in_subtree(domain, self.domain_id),
            Role::User => domain == self.domain_id,
        }
    }
}

/// A call being handled.
#[derive(Debug)]
pub struct Call {
    /// The command's table entry.
    pub command: &'static CommandSpec,
    /// Its parameters.
    pub params: Params,
    /// Who makes it.
    pub caller: Caller,
    /// Correlates the events this call appends.
    pub request_id: Uuid,
    /// Client address, for the 432 message.
    pub remote_ip: String,
}

impl Call {
    /// A parameter's value (case-insensitive name; empty counts as absent).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// A required parameter (431 when missing).
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)
            .ok_or_else(|| ApiError::missing_param(self.command.name, name))
    }

    /// An id parameter (431 when not a UUID).
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.str(name).map(|v| parse_uuid(name, v)).transpose()
    }

    /// A comma-separated list of ids, each once (431 for an item that is not a UUID); `None`
    /// when absent or empty.
    pub fn uuid_list(&self, name: &str) -> Result<Option<Vec<Uuid>>, ApiError> {
        let Some(value) = self.str(name) else {
            return Ok(None);
        };
        let mut ids = Vec::new();
        for item in crate::protocol::params::parse_list(value) {
            let id = parse_uuid(name, &item)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// A required id parameter.
    pub fn required_uuid(&self, name: &str) -> Result<Uuid, ApiError> {
        parse_uuid(name, self.required(name)?)
    }

    /// A boolean parameter (`true` case-insensitively).
    pub fn flag(&self, name: &str) -> bool {
        self.str(name).is_some_and(parse_bool)
    }

    /// A boolean parameter, `None` when absent.
    pub fn bool_opt(&self, name: &str) -> Option<bool> {
        self.str(name).map(parse_bool)
    }

    /// A whole-number parameter (431 when not a number).
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.str(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::invalid_param(format!(
                        "Unable to execute API command {} due to invalid value {v:?} for parameter {name}: not a whole number",
                        self.command.name
                    ))
                })
            })
            .transpose()
    }

    /// A date filter (`startdate` → start of day, `enddate` → end of day for date-only values).
    pub fn date(
        &self,
        name: &str,
        end_of_day: bool,
    ) -> Result<Option<engine::time::Timestamp>, ApiError> {
        self.str(name)
            .map(|v| {
                parse_filter_date(v, end_of_day)
                    .map(|at| engine::time::Timestamp::from_millis(at.timestamp_millis()))
                    .ok_or_else(|| {
                        ApiError::invalid_param(format!(
                            "Unable to parse date {v:?} for parameter {name}: use yyyy-MM-dd, yyyy-MM-dd HH:mm:ss or yyyy-MM-dd'T'HH:mm:ssZ"
                        ))
                    })
            })
            .transpose()
    }

    /// The event actor for this call.
    pub fn actor(&self) -> Actor {
        self.caller.actor()
    }

    /// A new event caused by this call: by its caller, correlated with the request, so
    /// `listEvents` and auditors can find one call's events together.
    pub fn event(&self, body: engine::event::EventBody) -> engine::event::NewEvent {
        engine::event::NewEvent::new(body)
            .by(self.actor())
            .correlated_with(self.request_id)
    }
}

fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        ApiError::invalid_param(format!(
            "Invalid parameter {name} value={value} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class."
        ))
    })
}

/// Which page of a list to return (spec/api.md "Paging and scope").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return (`None`: all).
    pub limit: Option<usize>,
}

impl Paging {
    /// Reads `page` and `pagesize` under `default.page.size`.
    pub fn from_call(call: &Call, default_page_size: i64) -> Result<Paging, ApiError> {
        let page = call.int("page")?;
        let page_size = call.int("pagesize")?;
        let max = default_page_size.max(1);
        match (page, page_size) {
            (None, None) => Ok(Paging {
                offset: 0,
                limit: Some(max as usize),
            }),
            (None, Some(-1)) => Ok(Paging {
                offset: 0,
                limit: None,
            }),
            (None, Some(_)) => Err(ApiError::invalid_param(
                "\"page\" parameter is required when \"pagesize\" is specified",
            )),
            (Some(_), None) => Err(ApiError::invalid_param(
                "\"pagesize\" parameter is required when \"page\" is specified",
            )),
            (Some(_), Some(size)) if size > max => Err(ApiError::invalid_param(format!(
                "Page size can't exceed max allowed page size value: {max}"
            ))),
            (Some(_), Some(size)) if size < 1 => Err(ApiError::invalid_param(
                "Page size must be a positive number, or -1 (without page) for all",
            )),
            (Some(page), Some(size)) => {
                let page = page.max(1) as usize;
                Ok(Paging {
                    offset: (page - 1).saturating_mul(size as usize),
                    limit: Some(size as usize),
                })
            }
        }
    }

    /// Reads `page` and `pagesize` under the current `default.page.size`.
    pub fn for_call(call: &Call, state: &State) -> Result<Paging, ApiError> {
        Paging::from_call(call, state.configuration.global_i64("default.page.size"))
    }

    /// This page of `rows`, and how many rows there were in all.
    pub fn apply<T>(self, rows: Vec<T>) -> (usize, Vec<T>) {
        let count = rows.len();
        let page = rows
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect();
        (count, page)
    }
}

/// Whose resources a list call shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListScope {
    /// One account's.
    Account(Uuid),
    /// A domain's accounts, and with `recursive` its subdomains'.
    Domain {
        /// The domain.
        domain: Uuid,
        /// Include subdomains.
        recursive: bool,
    },
    /// Everything (root admin with `listall=true`).
    All,
    /// Nothing (`projectid` given: projects are not supported yet).
    Nothing,
}

impl ListScope {
    /// The scope CloudStack derives from `account`, `domainid`, `listall`, `isrecursive`,
    /// `projectid`. With `admins_see_domain`, an admin without `listall` still sees their
    /// domain (listAccounts, listUsers, listDomains behave so).
    pub fn from_call(
        call: &Call,
        state: &State,
        admins_see_domain: bool,
    ) -> Result<ListScope, ApiError> {
        if call.str("projectid").is_some() {
            return Ok(ListScope::Nothing);
        }
        let caller = &call.caller;
        let domain = call.uuid("domainid")?;
        let recursive = call.flag("isrecursive");
        if let Some(domain) = domain
            && !caller.may_access_domain(state, domain)
        {
            return Err(ApiError::permission_denied(format!(
                "Caller cannot access domain {domain}"
            )));
        }
        if let Some(account_name) = call.str("account") {
            let domain = domain.unwrap_or(caller.domain_id);
            let account = state
                .identity
                .account_by_name(domain, account_name)
                .ok_or_else(|| {
                    ApiError::invalid_param(format!(
                        "Unable to find account {account_name} in domain {domain}"
                    ))
                })?;
            if !caller.may_access(state, account.facts.account_id, domain) {
                return Err(ApiError::permission_denied(format!(
                    "Account {account_name} is not accessible by the caller"
                )));
            }
            return Ok(ListScope::Account(account.facts.account_id));
        }
        if caller.role == Role::User {
            return Ok(ListScope::Account(caller.account_id));
        }
        if let Some(domain) = domain {
            return Ok(ListScope::Domain { domain, recursive });
        }
        let listall = call.flag("listall");
        match (caller.role, listall || admins_see_domain) {
            (Role::RootAdmin, true) => Ok(ListScope::All),
            (Role::DomainAdmin, true) => Ok(ListScope::Domain {
                domain: caller.domain_id,
                recursive: true,
            }),
            _ => Ok(ListScope::Account(caller.account_id)),
        }
    }

    /// True when a resource of `account` in `domain` is in scope.
    pub fn admits(self, state: &State, account: Option<Uuid>, domain: Option<Uuid>) -> bool {
        match self {
            ListScope::All => true,
            ListScope::Nothing => false,
            ListScope::Account(a) => account == Some(a),
            ListScope::Domain {
                domain: d,
                recursive,
            } => match domain {
                Some(domain) if recursive => state.identity.is_in_subtree(domain, d),
                Some(domain) => domain == d,
                None => false,
            },
        }
    }
}

/// True when `keyword` is absent or a case-insensitive substring of one of `fields`.
pub fn keyword_matches(keyword: Option<&str>, fields: &[&str]) -> bool {
    match keyword {
        None => true,
        Some(k) => {
            let k = k.to_lowercase();
            fields.iter().any(|f| f.to_lowercase().contains(&k))
        }
    }
}
