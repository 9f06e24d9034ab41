//! The ECS error catalogue: codes, HTTP statuses and messages as the real service returns them.
//!
//! Sources: docs/ecs-reference.md §1 (DeleteInstance table), §2 (gateway errors) and §3
//! (StopInstance). Where the tables disagree the choice is noted at the constructor.
//!
//! Tag and region errors: the error tables of the ECS API pages TagResources, UntagResources and
//! ListTagResources (current English pages, TagResources changed 2025-04-10; the older copies in
//! the repository `AlibabaCloudDocs/ecs`, `intl.en-US/API Reference/Tags/*.md`, agree on codes,
//! statuses and messages), and DescribeInstanceStatus / DescribeInstances
//! (docs/ecs-reference.md §3, §4).
//! Codes those pages do not define for a case are marked UNCONFIRMED at the constructor.
//!
//! STS (AssumeRole, AssumeRoleWithOIDC) and temporary-credential errors: docs/ecs-reference.md
//! §10, with its sources (the STS error table, the AssumeRole page, the STS error-code page for
//! `AuthenticationFail.*`, the ACK RRSA page, the gateway's `InvalidSecurityToken.*` table).

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

    // --- gateway (common) errors, docs/ecs-reference.md §2 ---

    /// A missing common parameter of the gateway (`Action`, `AccessKeyId`, `Timestamp`, ...):
    /// the `Missing{Name}` form of docs/ecs-reference.md §2.
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

    /// A parameter whose value cannot be used (generic gateway form of docs/ecs-reference.md §2).
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

    /// docs/ecs-reference.md §2 lists 404 and 400 for this code; 404 (the first table's) is
    /// used here.
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

    /// An `STS.` key whose token has expired (docs/ecs-reference.md §10; 400 as in the gateway
    /// table there, some product tables list 403).
    pub fn security_token_expired() -> Self {
        Self::new(
            400,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        )
    }

    /// A token the simulator never issued (docs/ecs-reference.md §10).
    pub fn security_token_malformed() -> Self {
        Self::new(
            400,
            "InvalidSecurityToken.Malformed",
            "Specified SecurityToken is malformed.",
        )
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

    /// The gateway's wording (docs/ecs-reference.md §2); the DeleteInstance table has a shorter
    /// variant.
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

    /// Gateway table (docs/ecs-reference.md §2). Fault injection only (the simulator has no RAM
    /// model).
    pub fn forbidden_ram() -> Self {
        Self::new(
            403,
            "Forbidden.RAM",
            "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
        )
    }

    /// Gateway table (docs/ecs-reference.md §2). Fault injection only.
    pub fn throttling() -> Self {
        Self::new(
            400,
            "Throttling",
            "Request was denied due to request throttling.",
        )
    }

    /// Gateway table (docs/ecs-reference.md §2); its 400 status is UNCONFIRMED for ECS. Fault
    /// injection only.
    pub fn throttling_api() -> Self {
        Self::new(
            400,
            "Throttling.Api",
            "Request was denied due to api flow control.",
        )
    }

    /// Not in docs/ecs-reference.md: a request body above the simulator's limit.
    pub fn body_too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "The request body is too large.",
        )
    }

    // --- operation errors, docs/ecs-reference.md §1 / §3 ---

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

    /// The literal-message row of docs/ecs-reference.md §1 (the other row is a `%s` template).
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

    // --- regions (DescribeInstanceStatus and Tag*Resources tables, docs/ecs-reference.md §4) ---

    pub fn region_not_found() -> Self {
        Self::new(
            404,
            "InvalidRegionId.NotFound",
            "The specified RegionId does not exist.",
        )
    }

    // --- tags: TagResources, UntagResources, ListTagResources tables, docs/ecs-reference.md §4 ---

    /// The tag pages' own missing-parameter form (404, not the gateway's 400 `MissingParameter`):
    /// `MissingParameter.RegionId`, `.ResourceType`, `.ResourceIds`, `.Tags`.
    pub fn tag_missing(action: &str, code_suffix: &str, param_in_message: &str) -> Self {
        Self::new(
            404,
            &format!("MissingParameter.{code_suffix}"),
            tag_message(
                action,
                &format!("The parameter - {param_in_message} should not be null"),
            ),
        )
    }

    pub fn too_many_resource_ids(action: &str) -> Self {
        Self::new(
            400,
            "NumberExceed.ResourceIds",
            tag_message(
                action,
                "The ResourceIds parameter's number is exceed , Valid : 50",
            ),
        )
    }

    pub fn too_many_tags(action: &str) -> Self {
        Self::new(
            400,
            "NumberExceed.Tags",
            tag_message(action, "The Tags parameter's number is exceed , Valid : 20"),
        )
    }

    pub fn duplicate_tag_key() -> Self {
        Self::new(
            400,
            "Duplicate.TagKey",
            "The Tag.N.Key contain duplicate key.",
        )
    }

    /// TagResources (2025 table): keys of one request that differ only in letter case.
    pub fn tag_key_case_duplicate() -> Self {
        Self::new(
            403,
            "TagKey.Duplication",
            "The TagKey has duplication with others, case-insensitive.",
        )
    }

    pub fn invalid_tag_key() -> Self {
        Self::new(
            400,
            "InvalidTagKey.Malformed",
            "The specified Tag.n.Key is not valid.",
        )
    }

    pub fn invalid_tag_value() -> Self {
        Self::new(
            400,
            "InvalidTagValue.Malformed",
            "The specified Tag.n.Value is not valid.",
        )
    }

    /// A `Tag.N.Value` without its `Tag.N.Key` (DescribeInstances, whose table lists this code),
    /// or a `Tag.N.Key` without a value in TagResources (whose current page says the value "cannot
    /// be null"; that this case answers this code is UNCONFIRMED).
    pub fn tag_mismatch() -> Self {
        Self::new(
            400,
            "InvalidTag.Mismatch",
            "The specified Tag.n.Key and Tag.n.Value are not match.",
        )
    }

    /// DescribeInstances with more than 20 `Tag.N` (its table lists the code; the message is the
    /// tag pages' one).
    pub fn invalid_tag_count() -> Self {
        Self::new(
            400,
            "InvalidTagCount",
            "The specified tags are beyond the permitted range.",
        )
    }

    pub fn resource_not_found() -> Self {
        Self::new(
            404,
            "InvalidResourceId.NotFound",
            "The specified ResourceIds are not found in our records.",
        )
    }

    pub fn resource_type_not_found() -> Self {
        Self::new(
            404,
            "InvalidResourceType.NotFound",
            "The ResourceType provided does not exist in our records.",
        )
    }

    /// A resource would carry more than 20 tags. The table's description of this code is "the
    /// maximum number of tags on resource is exceeded"; `QuotaExceed.Tags` (403, `%s`) is the
    /// other candidate in the table and was not chosen.
    pub fn tag_quota_exceeded() -> Self {
        Self::new(
            400,
            "OperationDenied.QuotaExceed",
            "The quota of tags on resource is beyond permitted range.",
        )
    }

    /// UntagResources with `All=true` and `TagKey.N`.
    pub fn untag_all_conflict() -> Self {
        Self::new(
            403,
            "Param.Conflict",
            "The specified all is true, but the specified TagKey.N is not empty.",
        )
    }

    /// ListTagResources with neither `ResourceId.N` nor `Tag.N`.
    pub fn tags_and_resources_empty() -> Self {
        Self::new(
            403,
            "BothEmpty.TagsAndResources",
            "The specified Tags and ResourcesIds are not allow to both empty.",
        )
    }

    pub fn invalid_list_next_token() -> Self {
        Self::new(
            403,
            "Invalid.NextToken",
            "The specified NextToken is not valid.",
        )
    }

    /// ListTagResources `TagFilter.N` (fuzzy search) is not modelled; the simulator refuses it
    /// with the table's code for a bad `TagFilter` rather than ignoring the filter.
    pub fn tag_filter_unsupported() -> Self {
        Self::new(
            403,
            "InvalidTagFilter.Malformed",
            "The specified TagFilter is not valid.",
        )
    }

    /// ListTagResources with `Tag.N.Value` but no `Tag.N.Key`: the page's parameter description
    /// names this code; its HTTP status and message are not documented (UNCONFIRMED: 400 and the
    /// gateway's invalid-parameter wording).
    pub fn list_tag_value_without_key() -> Self {
        Self::new(
            400,
            "InvalidParameter.TagValue",
            "The specified parameter \"Tag.N.Value\" is not valid.",
        )
    }
}

/// STS errors, docs/ecs-reference.md §10 (AssumeRole table; STS error-code page for the 401
/// `AuthenticationFail.*` codes).
impl EcsError {
    pub fn role_arn_invalid() -> Self {
        Self::new(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        )
    }

    pub fn role_session_name_invalid() -> Self {
        Self::new(
            400,
            "InvalidParameter.RoleSessionName",
            "The parameter RoleSessionName is wrongly formed.",
        )
    }

    /// Below 900, above the role's MaxSessionDuration, or not an integer. The documented message
    /// still names the old 1-hour maximum.
    pub fn duration_seconds_invalid() -> Self {
        Self::new(
            400,
            "InvalidParameter.DurationSeconds",
            "The Min/Max value of DurationSeconds is 15min/1hr.",
        )
    }

    pub fn policy_grammar() -> Self {
        Self::new(
            400,
            "InvalidParameter.PolicyGrammar",
            "The parameter Policy has not passed grammar check.",
        )
    }

    /// AssumeRole by a caller the role's trust policy does not name, or without the required
    /// `ExternalId`.
    pub fn sts_no_permission() -> Self {
        Self::new(
            403,
            "NoPermission",
            "You are not authorized to do this action. You should be authorized by RAM.",
        )
    }

    /// AssumeRole's table wording.
    pub fn role_not_found() -> Self {
        Self::new(404, "EntityNotExist.Role", "The specified Role not exists.")
    }

    /// AssumeRoleWithOIDC: the RRSA page's wording (status UNCONFIRMED, AssumeRole's 404 used).
    pub fn oidc_role_not_found(role_arn: &str) -> Self {
        Self::new(
            404,
            "EntityNotExist.Role",
            format!("The role not exists: {role_arn}."),
        )
    }

    pub fn oidc_provider_not_found() -> Self {
        Self::new(
            401,
            "AuthenticationFail.NoPermission",
            "No such OIDC Provider registered.",
        )
    }

    /// The role's trust policy does not name the provider, or not the token's subject.
    pub fn oidc_no_permission() -> Self {
        Self::new(
            401,
            "AuthenticationFail.NoPermission",
            "There is no permission",
        )
    }

    fn oidc_invalid(message: &str) -> Self {
        Self::new(401, "AuthenticationFail.OIDCToken.Invalid", message)
    }

    pub fn oidc_token_empty() -> Self {
        Self::oidc_invalid("The OIDCToken can not empty.")
    }

    pub fn oidc_token_parts() -> Self {
        Self::oidc_invalid("The number of Jwt field should be divided into 3 parts with '.' .")
    }

    pub fn oidc_token_base64() -> Self {
        Self::oidc_invalid("Cannot decode base64 encoded response(format invalided).")
    }

    pub fn oidc_token_algorithm(alg: &str) -> Self {
        Self::oidc_invalid(&format!(
            "The algorithm {alg} that be specified in Jwt header is unknown."
        ))
    }

    /// Unparsable header or claims, and (UNCONFIRMED choice) a missing `exp`, an `nbf` or `iat`
    /// more than 60 s ahead, a token over 20,000 characters.
    pub fn oidc_token_content() -> Self {
        Self::oidc_invalid("The Jwt content is invalid that cannot be recognized.")
    }

    pub fn oidc_token_signature() -> Self {
        Self::new(
            401,
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: invalid signature.",
        )
    }

    pub fn oidc_token_expired() -> Self {
        Self::new(
            401,
            "AuthenticationFail.OIDCToken.Expired",
            "This JsonWebToken is expired.",
        )
    }

    pub fn oidc_audience() -> Self {
        Self::new(
            401,
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
            "Invalid audience.",
        )
    }

    /// The RRSA page's code and message; its 401 is UNCONFIRMED (the other
    /// `AuthenticationFail.OIDCToken.*` codes are 401).
    pub fn oidc_issuer() -> Self {
        Self::new(
            401,
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
            "The issuer in the OIDC Token doesn't match the OIDC Provider registered.",
        )
    }
}

/// The current TagResources and ListTagResources pages end these messages with a period, the
/// UntagResources page does not.
fn tag_message(action: &str, text: &str) -> String {
    if action == "UntagResources" {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}
