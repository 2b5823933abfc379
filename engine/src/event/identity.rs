//! Domains (`DOMAIN.*`), accounts (`ACCOUNT.*`), users (`USER.*`) and credentials
//! (`REGISTER.USER.KEY`, `REGISTER.SSH.KEYPAIR`).
//!
//! Passwords appear only as salted slow hashes and API secret keys only sealed with the master
//! key: an exported log never holds a secret in clear.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::common::SealedSecret;

/// What every DOMAIN.* event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainFacts {
    /// The domain's id.
    pub domain_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Parent domain (`None` for ROOT).
    pub parent_id: Option<Uuid>,
    /// Full path, such as `/ROOT/customers/acme`.
    pub path: String,
    /// DNS domain for guests of its accounts.
    pub network_domain: Option<CompactString>,
}

/// DOMAIN.CREATE / DOMAIN.UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainLifecycle {
    /// The domain (after the change, for an update).
    pub domain: DomainFacts,
}

/// DOMAIN.DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainDeleted {
    /// The domain.
    pub domain: DomainFacts,
    /// `cleanup=true`: its accounts and subdomains were deleted with it.
    pub cleanup: bool,
}

/// CloudStack account types (`accounttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountType {
    /// 0: a normal user account.
    User,
    /// 1: root admin.
    RootAdmin,
    /// 2: domain admin.
    DomainAdmin,
    /// 4: read-only admin.
    ReadOnlyAdmin,
    /// 5: a project's account.
    Project,
}

impl AccountType {
    /// CloudStack's number for the type.
    pub fn code(self) -> u8 {
        match self {
            AccountType::User => 0,
            AccountType::RootAdmin => 1,
            AccountType::DomainAdmin => 2,
            AccountType::ReadOnlyAdmin => 4,
            AccountType::Project => 5,
        }
    }
}

/// What ACCOUNT.CREATE and ACCOUNT.UPDATE carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountFacts {
    /// The account's id.
    pub account_id: Uuid,
    /// Its name (unique within its domain).
    pub name: CompactString,
    /// Its type.
    pub account_type: AccountType,
    /// Its domain.
    pub domain_id: Uuid,
    /// DNS domain for its guests.
    pub network_domain: Option<CompactString>,
}

/// ACCOUNT.CREATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreated {
    /// The account.
    pub account: AccountFacts,
}

/// ACCOUNT.UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUpdated {
    /// The account after the change.
    pub account: AccountFacts,
    /// Its name before, when renamed.
    pub previous_name: Option<CompactString>,
}

/// Names an account: ACCOUNT.ENABLE, ACCOUNT.DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRef {
    /// The account.
    pub account_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its domain.
    pub domain_id: Uuid,
}

/// ACCOUNT.DISABLE: disabled (its VMs stop) or, with `locked`, only locked out of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDisabled {
    /// The account.
    pub account_id: Uuid,
    /// Its name.
    pub name: CompactString,
    /// Its domain.
    pub domain_id: Uuid,
    /// `lock=true`: locked rather than disabled.
    pub locked: bool,
    /// Why, when the system did it (quota enforcement).
    pub reason: Option<String>,
}

/// ACCOUNT.MARK.DEFAULT.ZONE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDefaultZone {
    /// The account.
    pub account_id: Uuid,
    /// Its domain.
    pub domain_id: Uuid,
    /// Its default zone from now on.
    pub zone_id: Uuid,
}

/// What every USER.* event that describes a user carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFacts {
    /// The user's id.
    pub user_id: Uuid,
    /// Login name (unique within the domain).
    pub username: CompactString,
    /// Account it belongs to.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// First name.
    pub first_name: CompactString,
    /// Last name.
    pub last_name: CompactString,
    /// E-mail address.
    pub email: Option<CompactString>,
    /// Preferred IANA time zone.
    pub timezone: Option<CompactString>,
}

/// USER.CREATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The user.
    pub user: UserFacts,
    /// Salted slow hash of the password in PHC string form (argon2); never the password.
    pub password_hash: Option<String>,
}

/// USER.UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The user after the change.
    pub user: UserFacts,
    /// New password hash, when the password changed.
    pub password_hash: Option<String>,
}

/// Names a user: USER.DELETE / ENABLE / DISABLE / LOCK / LOGIN / LOGOUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    /// The user.
    pub user_id: Uuid,
    /// Login name.
    pub username: CompactString,
    /// Account it belongs to.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
}

/// REGISTER.USER.KEY: a new API key pair for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeysRegistered {
    /// The user.
    pub user_id: Uuid,
    /// Account it belongs to.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// The public API key.
    pub api_key: String,
    /// The secret key, sealed with the master key.
    pub secret_key: SealedSecret,
}

/// REGISTER.SSH.KEYPAIR: an SSH key pair was created or registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyPairRegistered {
    /// The key pair's id.
    pub keypair_id: Uuid,
    /// Its name (unique per account).
    pub name: CompactString,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Fingerprint of the public key.
    pub fingerprint: CompactString,
    /// The public key (the private key of a created pair is returned once, never recorded).
    pub public_key: String,
}

/// SSH.KEYPAIR.CREATE / SSH.KEYPAIR.DELETE (Ledgerstack; registering is REGISTER.SSH.KEYPAIR).
/// The private key of a created pair is returned to the caller once and never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyPairFacts {
    /// The key pair's id.
    pub keypair_id: Uuid,
    /// Its name (unique per account).
    pub name: CompactString,
    /// Owning account.
    pub account_id: Uuid,
    /// That account's domain.
    pub domain_id: Uuid,
    /// Fingerprint of the public key.
    pub fingerprint: CompactString,
    /// The public key.
    pub public_key: String,
}

/// Who a resource limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitOwner {
    /// One account.
    Account,
    /// One domain (the sum over its accounts).
    Domain,
}

/// RESOURCE.LIMIT.UPDATE (Ledgerstack): `updateResourceLimit` set a maximum. Limits are checked
/// against counts derived from the log when a resource is allocated, on the allocation stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimitChanged {
    /// CloudStack's resource type number (0 user_vm, 1 public_ip, 2 volume, 3 snapshot,
    /// 4 template, 8 cpu, 9 memory, 10 primary_storage, ...).
    pub resource_type: u8,
    /// Account or domain.
    pub owner: LimitOwner,
    /// The account's or domain's id.
    pub owner_id: Uuid,
    /// New maximum; -1 is unlimited; `None` returns to the default setting.
    pub max: Option<i64>,
}
