//! The command table: every command's name, sync/async nature, roles, parameters and response
//! fields, from which dispatch, authorization, parameter checks and `listApis` all read, so they
//! can never disagree.

use std::future::Future;
use std::pin::Pin;

use crate::call::Call;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::response::Reply;

/// How CloudStack runs a command (spec/commands.md); clients hard-code or cache it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answers at once.
    Sync,
    /// Answers `jobid`; the result comes from `queryAsyncJobResult`.
    Async,
    /// Answers `id` and `jobid`.
    AsyncCreate,
}

/// Who may call a command: a set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// Root admins only.
    pub const ADMIN: Roles = Roles(1);
    /// Root and domain admins.
    pub const ADMINS: Roles = Roles(1 | 2);
    /// Everyone.
    pub const ALL: Roles = Roles(1 | 2 | 4);

    /// True when `role` is in the set.
    pub fn admits(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

/// A caller's role, from their account's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Account type 1.
    RootAdmin,
    /// Account type 2.
    DomainAdmin,
    /// Account type 0.
    User,
}

impl Role {
    fn bit(self) -> u8 {
        match self {
            Role::RootAdmin => 1,
            Role::DomainAdmin => 2,
            Role::User => 4,
        }
    }
}

/// A parameter's type as `listApis` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// `true` / anything else.
    Boolean,
    /// A date (list filters).
    Date,
    /// 32-bit integer.
    Integer,
    /// 64-bit integer.
    Long,
    /// 16-bit integer.
    Short,
    /// Comma-separated values.
    List,
    /// `name[N].key=value`.
    Map,
    /// Text.
    String,
    /// An entity id.
    Uuid,
}

impl ParamType {
    /// The name `listApis` uses.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Boolean => "boolean",
            ParamType::Date => "date",
            ParamType::Integer => "integer",
            ParamType::Long => "long",
            ParamType::Short => "short",
            ParamType::List => "list",
            ParamType::Map => "map",
            ParamType::String => "string",
            ParamType::Uuid => "uuid",
        }
    }
}

/// One parameter of a command.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Lowercase name, as CloudStack declares it.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// The call fails with 431 without it.
    pub required: bool,
    /// What it means (shown by `listApis` and `cmk`).
    pub description: &'static str,
    /// Longest accepted value.
    pub length: u32,
}

/// An optional parameter.
pub const fn param(name: &'static str, ty: ParamType, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: false,
        description,
        length: 255,
    }
}

/// A required parameter.
pub const fn required(name: &'static str, ty: ParamType, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        required: true,
        description,
        length: 255,
    }
}

/// One field of a command's response object (for `listApis`).
#[derive(Debug, Clone, Copy)]
pub struct ResponseField {
    /// Field name.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Its type.
    pub ty: &'static str,
}

/// A response field.
pub const fn field(
    name: &'static str,
    ty: &'static str,
    description: &'static str,
) -> ResponseField {
    ResponseField {
        name,
        description,
        ty,
    }
}

/// Which standard parameters a list command inherits from CloudStack's base classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherits {
    /// None.
    Nothing,
    /// `keyword`, `page`, `pagesize` (BaseListCmd).
    Paging,
    /// Paging plus `account`, `domainid`, `listall`, `isrecursive`, `projectid`
    /// (BaseListProjectAndAccountResourcesCmd).
    PagingAndScope,
}

const PAGING: &[ParamSpec] = &[
    param("keyword", ParamType::String, "List by keyword"),
    param("page", ParamType::Integer, "The page to return, from 1"),
    param(
        "pagesize",
        ParamType::Integer,
        "Items per page (at most default.page.size; -1 without page: all)",
    ),
];

const SCOPE: &[ParamSpec] = &[
    param(
        "account",
        ParamType::String,
        "List resources of this account; must be used with domainid",
    ),
    param("domainid", ParamType::Uuid, "List resources of this domain"),
    param(
        "listall",
        ParamType::Boolean,
        "true: list every resource the caller may see, not only their own",
    ),
    param(
        "isrecursive",
        ParamType::Boolean,
        "true: include subdomains of domainid",
    ),
    param(
        "projectid",
        ParamType::Uuid,
        "List resources of this project (projects are not supported: always empty)",
    ),
];

/// The future a handler returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// A command's implementation: checks, decides, appends, answers.
pub type Handler = for<'a> fn(&'a Ctx, &'a Call) -> HandlerFuture<'a>;

/// Everything about one command.
pub struct CommandSpec {
    /// Name, matched exactly.
    pub name: &'static str,
    /// Sync, async or async-create.
    pub kind: Kind,
    /// Who may call it.
    pub roles: Roles,
    /// What it does.
    pub description: &'static str,
    /// Its own parameters.
    pub params: &'static [ParamSpec],
    /// Standard parameters it inherits.
    pub inherits: Inherits,
    /// The fields of its response object.
    pub response: &'static [ResponseField],
    /// Related commands, comma-separated (`listApis`).
    pub related: &'static str,
    /// Only offered when the server runs on the manual clock.
    pub manual_clock_only: bool,
    /// Its implementation.
    pub handler: Handler,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl CommandSpec {
    /// Every parameter, inherited ones included.
    pub fn all_params(&self) -> impl Iterator<Item = &'static ParamSpec> {
        let inherited: &[&[ParamSpec]] = match self.inherits {
            Inherits::Nothing => &[],
            Inherits::Paging => &[PAGING],
            Inherits::PagingAndScope => &[PAGING, SCOPE],
        };
        self.params
            .iter()
            .chain(inherited.iter().flat_map(|group| group.iter()))
    }

    /// True for async and async-create commands.
    pub fn is_async(&self) -> bool {
        self.kind != Kind::Sync
    }
}

/// Every command, from each command family's module.
pub fn commands() -> impl Iterator<Item = &'static CommandSpec> {
    use crate::commands::*;
    [
        accounts::COMMANDS,
        alert_sinks::COMMANDS,
        alerts::COMMANDS,
        catalog::COMMANDS,
        clock::COMMANDS,
        configuration::COMMANDS,
        discovery::COMMANDS,
        domains::COMMANDS,
        events::COMMANDS,
        firewall_rules::COMMANDS,
        infrastructure::COMMANDS,
        jobs::COMMANDS,
        keypairs::COMMANDS,
        limits::COMMANDS,
        load_balancers::COMMANDS,
        nat_rules::COMMANDS,
        networks::COMMANDS,
        nics::COMMANDS,
        public_ips::COMMANDS,
        quota::COMMANDS,
        routers::COMMANDS,
        security_groups::COMMANDS,
        session::COMMANDS,
        snapshots::COMMANDS,
        tags::COMMANDS,
        templates::COMMANDS,
        usage::COMMANDS,
        usage_thresholds::COMMANDS,
        users::COMMANDS,
        vms::COMMANDS,
        volumes::COMMANDS,
        vpcs::COMMANDS,
        vpn::COMMANDS,
    ]
    .into_iter()
    .flat_map(|family| family.iter())
}

/// The command with this exact name.
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    commands().find(|c| c.name == name)
}

/// Makes a [`Handler`] out of an `async fn(&Ctx, &Call) -> Result<Reply, ApiError>`.
#[macro_export]
macro_rules! handler {
    ($f:path) => {{
        fn boxed<'a>(
            ctx: &'a $crate::context::Ctx,
            call: &'a $crate::call::Call,
        ) -> $crate::registry::HandlerFuture<'a> {
            Box::pin($f(ctx, call))
        }
        boxed as $crate::registry::Handler
    }};
}
