//! CloudStack's error classes: the one place where a failure becomes an HTTP status, an
//! `errorcode` and a `cserrorcode` (spec/api.md "Errors").

use projections::ProjectionError;

/// A failed API call, as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {text}")]
pub struct ApiError {
    /// HTTP status and `errorcode`.
    pub code: u16,
    /// CloudStack's exception class number.
    pub cs_code: u32,
    /// `errortext`, also sent as the `X-Description` header.
    pub text: String,
}

impl ApiError {
    fn new(code: u16, cs_code: u32, text: impl Into<String>) -> Self {
        ApiError {
            code,
            cs_code,
            text: text.into(),
        }
    }

    /// 401: the signature, session or key did not check out.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            4250,
            "unable to verify user credentials and/or request signature",
        )
    }

    /// 401 with a more specific reason (expired request, disabled account).
    pub fn unauthorized_because(text: impl Into<String>) -> Self {
        Self::new(401, 4250, text)
    }

    /// 405: `login` must be POSTed.
    pub fn method_not_allowed(text: impl Into<String>) -> Self {
        Self::new(405, 9999, text)
    }

    /// 413: the body is larger than the server accepts.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, 4350, format!("request body larger than {limit} bytes"))
    }

    /// 429: the account has used its calls for this interval.
    pub fn throttled(retry_after_ms: u64) -> Self {
        Self::new(
            429,
            4545,
            format!(
                "The given user has reached his/her account api limit, please retry after {retry_after_ms} ms."
            ),
        )
    }

    /// 430: a map parameter (`name[0].key`) is malformed.
    pub fn malformed_map(text: impl Into<String>) -> Self {
        Self::new(430, 4350, text)
    }

    /// 431: a required parameter is missing.
    pub fn missing_param(command: &str, param: &str) -> Self {
        Self::new(
            431,
            4350,
            format!("Unable to execute API command {command} due to missing parameter {param}"),
        )
    }

    /// 431: a parameter has a value that cannot be used.
    pub fn invalid_param(text: impl Into<String>) -> Self {
        Self::new(431, 4350, text)
    }

    /// 432: no such command.
    pub fn unknown_command(command: &str) -> Self {
        Self::new(432, 4555, format!("Unknown API command: {command}"))
    }

    /// 432: the command exists but not for this caller's role.
    pub fn not_available(command: &str, ip: &str) -> Self {
        Self::new(
            432,
            4555,
            format!(
                "The given command '{command}' either does not exist, is not available for user, or not available from ip address '{ip}'."
            ),
        )
    }

    /// 530: something failed inside.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new(530, 4250, text)
    }

    /// 531: the caller may not see or touch this.
    pub fn permission_denied(text: impl Into<String>) -> Self {
        Self::new(531, 4365, text)
    }

    /// 532: an account resource limit would be exceeded.
    pub fn limit_exceeded(text: impl Into<String>) -> Self {
        Self::new(532, 4280, text)
    }

    /// 533: not enough capacity.
    pub fn insufficient_capacity(text: impl Into<String>) -> Self {
        Self::new(533, 4325, text)
    }

    /// 534: the resource is unavailable.
    pub fn unavailable(text: impl Into<String>) -> Self {
        Self::new(534, 4380, text)
    }

    /// 535: allocating the resource failed.
    pub fn allocation(text: impl Into<String>) -> Self {
        Self::new(535, 4370, text)
    }

    /// 536: the resource is in use.
    pub fn in_use(text: impl Into<String>) -> Self {
        Self::new(536, 4375, text)
    }

    /// 537: a network rule conflicts with an existing one.
    pub fn rule_conflict(text: impl Into<String>) -> Self {
        Self::new(537, 4250, text)
    }

    /// What a caller who is not a root admin sees of an internal error: CloudStack hides
    /// internals from them.
    pub fn for_caller(self, is_root_admin: bool) -> Self {
        if self.code == 530 && !is_root_admin {
            Self::internal(
                "Internal error executing command, please contact your system administrator",
            )
        } else {
            self
        }
    }
}

impl From<engine::store::StoreError> for ApiError {
    fn from(e: engine::store::StoreError) -> Self {
        ApiError::internal(format!("the event log refused the change: {e}"))
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        ApiError::internal(format!("the read models are unavailable: {e}"))
    }
}
