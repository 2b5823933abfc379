//! Domains, accounts, users and their API keys, as `listDomains`, `listAccounts`, `listUsers`,
//! authentication and scoping need them.

use compact_str::CompactString;
use engine::event::common::SealedSecret;
use engine::event::identity::*;
use engine::event::{
    AccountEvent, DomainEvent, EventBody, RecordedEvent, RegisterEvent, UserEvent,
};
use engine::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::table::{PersistedTable, Table};

/// A domain as `listDomains` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRow {
    /// Its facts as last recorded.
    pub facts: DomainFacts,
    /// Depth in the tree: ROOT is 0.
    pub level: u32,
    /// When it was created.
    pub created: Timestamp,
}

/// An account's API state: `enabled`, `disabled` or `locked`, as CloudStack names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountState {
    /// Usable.
    Enabled,
    /// Disabled by an admin: its users cannot log in or call the API.
    Disabled,
    /// Locked (quota enforcement): its users' calls are refused.
    Locked,
}

impl AccountState {
    /// CloudStack's text for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Enabled => "enabled",
            AccountState::Disabled => "disabled",
            AccountState::Locked => "locked",
        }
    }
}

/// An account as `listAccounts` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRow {
    /// Its facts as last recorded.
    pub facts: AccountFacts,
    /// Enabled, disabled or locked.
    pub state: AccountState,
    /// When it was created.
    pub created: Timestamp,
}

/// A user as `listUsers` shows it, with what authentication needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    /// Its facts as last recorded.
    pub facts: UserFacts,
    /// `enabled`, `disabled` or `locked`.
    pub state: AccountState,
    /// When it was created.
    pub created: Timestamp,
    /// Argon2 PHC hash of the password, when one was set (`login` checks it).
    pub password_hash: Option<String>,
    /// Current API key, when keys were registered.
    pub api_key: Option<String>,
    /// Its secret, sealed with the master key; only the API process can open it.
    pub secret_key: Option<SealedSecret>,
}

/// The identity read model.
#[derive(Debug)]
pub struct Identity {
    /// Domains by id.
    pub domains: Table<Uuid, DomainRow>,
    /// Accounts by id (deleted accounts are removed).
    pub accounts: Table<Uuid, AccountRow>,
    /// Users by id (deleted users are removed).
    pub users: Table<Uuid, UserRow>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            domains: Table::new("identity.domains"),
            accounts: Table::new("identity.accounts"),
            users: Table::new("identity.users"),
        }
    }
}

impl Identity {
    pub(crate) fn tables(&mut self) -> [&mut dyn PersistedTable; 3] {
        [&mut self.domains, &mut self.accounts, &mut self.users]
    }

    pub(crate) fn apply(&mut self, event: &RecordedEvent) {
        let at = event.envelope.occurred_at;
        match &*event.body {
            EventBody::Domain(DomainEvent::Create(e)) => {
                let level = e.domain.path.split('/').filter(|s| !s.is_empty()).count() as u32;
                self.domains.insert(
                    e.domain.domain_id,
                    DomainRow {
                        facts: e.domain.clone(),
                        level,
                        created: at,
                    },
                );
            }
            EventBody::Domain(DomainEvent::Update(e)) => {
                if let Some(row) = self.domains.get_mut(&e.domain.domain_id) {
                    row.facts = e.domain.clone();
                }
            }
            EventBody::Domain(DomainEvent::Delete(e)) => {
                self.domains.remove(&e.domain.domain_id);
            }
            EventBody::Account(AccountEvent::Create(e)) => {
                self.accounts.insert(
                    e.account.account_id,
                    AccountRow {
                        facts: e.account.clone(),
                        state: AccountState::Enabled,
                        created: at,
                    },
                );
            }
            EventBody::Account(AccountEvent::Update(e)) => {
                if let Some(row) = self.accounts.get_mut(&e.account.account_id) {
                    row.facts = e.account.clone();
                }
            }
            EventBody::Account(AccountEvent::Enable(e)) => {
                if let Some(row) = self.accounts.get_mut(&e.account_id) {
                    row.state = AccountState::Enabled;
                }
            }
            EventBody::Account(AccountEvent::Disable(e)) => {
                if let Some(row) = self.accounts.get_mut(&e.account_id) {
                    row.state = if e.locked {
                        AccountState::Locked
                    } else {
                        AccountState::Disabled
                    };
                }
            }
            EventBody::Account(AccountEvent::Delete(e)) => {
                self.accounts.remove(&e.account_id);
                let users: Vec<Uuid> = self
                    .users
                    .iter()
                    .filter(|(_, u)| u.facts.account_id == e.account_id)
                    .map(|(id, _)| *id)
                    .collect();
                for id in users {
                    self.users.remove(&id);
                }
            }
            EventBody::User(UserEvent::Create(e)) => {
                self.users.insert(
                    e.user.user_id,
                    UserRow {
                        facts: e.user.clone(),
                        state: AccountState::Enabled,
                        created: at,
                        password_hash: e.password_hash.clone(),
                        api_key: None,
                        secret_key: None,
                    },
                );
            }
            EventBody::User(UserEvent::Update(e)) => {
                if let Some(row) = self.users.get_mut(&e.user.user_id) {
                    row.facts = e.user.clone();
                    if e.password_hash.is_some() {
                        row.password_hash = e.password_hash.clone();
                    }
                }
            }
            EventBody::User(UserEvent::Enable(e)) => self.set_user_state(e, AccountState::Enabled),
            EventBody::User(UserEvent::Disable(e)) => {
                self.set_user_state(e, AccountState::Disabled)
            }
            EventBody::User(UserEvent::Lock(e)) => self.set_user_state(e, AccountState::Locked),
            EventBody::User(UserEvent::Delete(e)) => {
                self.users.remove(&e.user_id);
            }
            EventBody::Register(RegisterEvent::UserKey(e)) => {
                if let Some(row) = self.users.get_mut(&e.user_id) {
                    row.api_key = Some(e.api_key.clone());
                    row.secret_key = Some(e.secret_key.clone());
                }
            }
            _ => {}
        }
    }

    fn set_user_state(&mut self, user: &UserRef, state: AccountState) {
        if let Some(row) = self.users.get_mut(&user.user_id) {
            row.state = state;
        }
    }

    /// The user holding this API key. A linear scan: keys are looked up once per request, and
    /// the API keeps its own cache keyed by api key in front of this.
    pub fn user_by_api_key(&self, api_key: &str) -> Option<&UserRow> {
        self.users
            .values()
            .find(|u| u.api_key.as_deref() == Some(api_key))
    }

    /// The domain with this path (`/`, `ROOT/customers`, `/ROOT/customers/` all accepted, as
    /// `login`'s `domain` parameter is).
    pub fn domain_by_path(&self, path: &str) -> Option<&DomainRow> {
        let wanted = normalize_domain_path(path);
        self.domains
            .values()
            .find(|d| normalize_domain_path(&d.facts.path) == wanted)
    }

    /// True when `domain` is `ancestor` or lies below it.
    pub fn is_in_subtree(&self, domain: Uuid, ancestor: Uuid) -> bool {
        let mut current = Some(domain);
        // Paths are at most as deep as the table is large, so this always terminates.
        for _ in 0..=self.domains.len() {
            match current {
                Some(id) if id == ancestor => return true,
                Some(id) => current = self.domains.get(&id).and_then(|d| d.facts.parent_id),
                None => return false,
            }
        }
        false
    }

    /// The account named `name` in `domain`, if any (names are unique per domain).
    pub fn account_by_name(&self, domain: Uuid, name: &str) -> Option<&AccountRow> {
        self.accounts
            .values()
            .find(|a| a.facts.domain_id == domain && a.facts.name.eq_ignore_ascii_case(name))
    }

    /// The user named `username` in `domain`, if any (usernames are unique per domain).
    pub fn user_by_name(&self, domain: Uuid, username: &str) -> Option<&UserRow> {
        self.users
            .values()
            .find(|u| u.facts.domain_id == domain && u.facts.username == username)
    }

    /// Name of an account, for event and job views.
    pub fn account_name(&self, account: Uuid) -> Option<CompactString> {
        self.accounts.get(&account).map(|a| a.facts.name.clone())
    }
}

/// `/ROOT/a/` and `ROOT/a` and `/a` all name the same domain; `/` is ROOT.
fn normalize_domain_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    let without_root = trimmed
        .strip_prefix("ROOT")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .unwrap_or(trimmed)
        .trim_start_matches('/');
    without_root.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::normalize_domain_path;

    #[test]
    fn domain_paths_are_compared_in_every_spelling_clients_send() {
        for spelling in ["/", "", "ROOT", "/ROOT/", "ROOT/"] {
            assert_eq!(normalize_domain_path(spelling), "", "{spelling}");
        }
        for spelling in ["/ROOT/customers/acme", "customers/acme", "/customers/acme/"] {
            assert_eq!(
                normalize_domain_path(spelling),
                "customers/acme",
                "{spelling}"
            );
        }
    }
}
