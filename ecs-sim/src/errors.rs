//! The ECS error catalogue: codes, HTTP statuses and messages as the real service returns them.
//!
//! Sources (see shared/reference/ecs-openapi.md): §1.2 (DeleteInstance table), §1.3 (gateway
//! errors) and §2.1 (StopInstance). Where the tables disagree the choice is noted at the
//! constructor.

/// An error answer: HTTP status, ECS `Code` and `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl EcsError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        EcsError {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    // --- gateway (common) errors, §1.3 ---

    /// A missing common parameter of the gateway (`Action`, `AccessKeyId`, `Timestamp`, ...):
    /// the `Missing{Name}` form of §1.3.
    pub fn missing_common(name: &str) -> Self {
        Self::new(
            400,
            &format!("Missing{name}"),
            format!("{name} is mandatory for this action."),
        )
    }

    /// A missing parameter of the operation itself (`InstanceId`, `RegionId`).
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// A parameter whose value cannot be used (generic gateway form of §1.3).
    pub fn invalid_parameter(name: &str) -> Self {
        Self::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid."),
        )
    }

    pub fn api_not_found() -> Self {
        Self::new(
            404,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    }

    pub fn invalid_version() -> Self {
        Self::new(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        )
    }

    /// §1.3 lists 404 and 400 for this code; 404 is the first table's value and is used here.
    pub fn access_key_not_found() -> Self {
        Self::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    }

    pub fn security_token_missing() -> Self {
        Self::missing_common("SecurityToken")
    }

    pub fn security_token_mismatch() -> Self {
        Self::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    }

    pub fn timestamp_format() -> Self {
        Self::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    }

    pub fn timestamp_expired() -> Self {
        Self::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        )
    }

    pub fn nonce_used() -> Self {
        Self::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        )
    }

    /// 400, not the 403 of older ECS tables: the legacy Python SDK only compares the echoed
    /// string to sign when the status is 400, which shows what the gateway sends.
    pub fn signature_mismatch(server_string_to_sign: &str) -> Self {
        Self::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{server_string_to_sign}"
            ),
        )
    }

    pub fn incomplete_signature() -> Self {
        Self::new(
            400,
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards.",
        )
    }

    pub fn invalid_signature_method() -> Self {
        Self::new(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        )
    }

    pub fn throttling_user() -> Self {
        Self::new(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
    }

    /// The gateway's wording (§1.3); the DeleteInstance table has a shorter variant.
    pub fn internal_error() -> Self {
        Self::new(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }

    pub fn service_unavailable() -> Self {
        Self::new(
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )
    }

    /// Not in the reference: a request body above the simulator's limit.
    pub fn body_too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "The request body is too large.",
        )
    }

    // --- operation errors, §1.2 / §2.1 / §2.2 ---

    pub fn invalid_instance_id() -> Self {
        Self::new(
            400,
            "InvalidParameter",
            "The input parameter InstanceId is invalid.",
        )
    }

    pub fn instance_not_found() -> Self {
        Self::new(
            404,
            "InvalidInstanceId.NotFound",
            "The specified InstanceId does not exist.",
        )
    }

    pub fn incorrect_status() -> Self {
        Self::new(
            403,
            "IncorrectInstanceStatus",
            "The current status of the resource does not support this operation.",
        )
    }

    pub fn initializing() -> Self {
        Self::new(
            403,
            "IncorrectInstanceStatus.Initializing",
            "The specified instance status does not support this operation.",
        )
    }

    pub fn locked_for_security() -> Self {
        Self::new(
            403,
            "InstanceLockedForSecurity",
            "The specified operation is denied as your instance is locked for security reasons.",
        )
    }

    pub fn charge_type_violation() -> Self {
        Self::new(
            403,
            "ChargeTypeViolation",
            "The operation is not permitted due to charge type of the instance.",
        )
    }

    /// The literal-message row of §1.2 (the other row is a `%s` template).
    pub fn deletion_protection() -> Self {
        Self::new(
            403,
            "InvalidOperation.DeletionProtection",
            "The operation is not allowed due to deletion protection.",
        )
    }

    pub fn route_entry() -> Self {
        Self::new(
            400,
            "DependencyViolation.RouteEntry",
            "Specified instance is used by route entry.",
        )
    }

    pub fn slb_configuring() -> Self {
        Self::new(
            400,
            "DependencyViolation.SLBConfiguring",
            "Specified operation is denied as your instance is using by another product.",
        )
    }

    pub fn expired_or_in_arrears() -> Self {
        Self::new(
            403,
            "InstanceExpiredOrInArrears",
            "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).",
        )
    }

    pub fn dry_run_passed() -> Self {
        Self::new(
            400,
            "DryRunOperation",
            "Request validation has been passed with DryRun flag set.",
        )
    }

    pub fn invalid_status_filter() -> Self {
        Self::new(
            404,
            "InvalidStatus.NotFound",
            "The specified Status is not found",
        )
    }

    /// Not documented for DescribeInstances; sibling operations use this code and message.
    pub fn too_many_instance_ids() -> Self {
        Self::new(
            400,
            "InstanceIdLimitExceeded",
            "The amount of InstanceId specified exceeds limit 100.",
        )
    }
}
