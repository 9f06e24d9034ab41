//! Every condition reason the controller writes, in one table: which condition it drives, how
//! soon the resource is looked at again, the event it publishes, and what a person can do about
//! it. The decision only picks a reason and says what happened; everything else comes from here,
//! and the README's tables are checked against [`Reason::ALL`] by a test.

use crate::decision::{Backoff, Pace};

/// The annotation whose change asks the controller to look at a resource now.
pub const RECHECK_ANNOTATION: &str = "ecs.alicloud.dev/recheck";

/// How a reason shows in the conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Ready=True`: the instance is observed and owned, the resource is not being deleted.
    Ready,
    /// `Reconciling=True`: the controller is making progress on its own.
    Progress,
    /// `Stalled=True`: progress needs a person.
    Stalled,
    /// The end of a deletion: the status is final and the finalizer goes.
    Final,
    /// Only on the `Released` condition, while the resource lives.
    ReleaseState,
}

/// What the event of a reason is, if it publishes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    None,
    Normal,
    Warning,
}

macro_rules! reasons {
    ($($name:ident),+ $(,)?) => {
        /// A condition reason (valid `metav1.Condition` reasons: CamelCase, no dots).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($name),+ }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name)),+ }
            }
        }
    };
}

reasons!(
    InstanceObserved,
    OwnershipRecorded,
    WaitingForInitialization,
    WaitingForStopped,
    StopRequested,
    ReleaseRequested,
    ReleaseOutcomeUnknown,
    WaitingForRelease,
    IncorrectInstanceStatus,
    IncorrectInstanceStatusInitializing,
    DependencyViolationSLBConfiguring,
    Throttled,
    Retrying,
    UnexpectedError,
    InstanceNotFound,
    InstanceNoLongerVisible,
    DuplicateInstance,
    OwnedByAnotherResource,
    DependencyViolationRouteEntry,
    InvalidParameter,
    ChargeTypeViolation,
    InstanceLockedForSecurity,
    InvalidOperationDeletionProtection,
    InvalidRegionId,
    RequestRefused,
    CredentialsRejected,
    CredentialsUnavailable,
    ReleaseNotConfirmed,
    Released,
    NotFound,
    NeverObserved,
    DuplicateRemoved,
    Orphaned,
    NotDeleting,
    Releasing,
);

/// The same sentence ends every Stalled message: how to ask for a look once the cause is fixed.
pub const RECHECK_HINT: &str = "then `kubectl annotate ecsi <name> ecs.alicloud.dev/recheck=\"$(date +%s)\" --overwrite` to re-check at once";

impl Reason {
    /// The reason of an ECS error code that the error table names; `None` for other codes.
    pub fn of_code(code: &str) -> Option<Reason> {
        Some(match code {
            "IncorrectInstanceStatus" => Reason::IncorrectInstanceStatus,
            "IncorrectInstanceStatus.Initializing" => Reason::IncorrectInstanceStatusInitializing,
            "DependencyViolation.SLBConfiguring" => Reason::DependencyViolationSLBConfiguring,
            "DependencyViolation.RouteEntry" => Reason::DependencyViolationRouteEntry,
            "InvalidParameter" => Reason::InvalidParameter,
            "ChargeTypeViolation" => Reason::ChargeTypeViolation,
            "InstanceLockedForSecurity" => Reason::InstanceLockedForSecurity,
            "InvalidOperation.DeletionProtection" => Reason::InvalidOperationDeletionProtection,
            "InvalidRegionId.NotFound" => Reason::InvalidRegionId,
            _ => return None,
        })
    }

    pub fn kind(self) -> Kind {
        use Reason::*;
        match self {
            InstanceObserved => Kind::Ready,
            OwnershipRecorded
            | WaitingForInitialization
            | WaitingForStopped
            | StopRequested
            | ReleaseRequested
            | ReleaseOutcomeUnknown
            | WaitingForRelease
            | IncorrectInstanceStatus
            | IncorrectInstanceStatusInitializing
            | DependencyViolationSLBConfiguring
            | Throttled
            | Retrying
            | UnexpectedError => Kind::Progress,
            InstanceNotFound
            | InstanceNoLongerVisible
            | DuplicateInstance
            | OwnedByAnotherResource
            | DependencyViolationRouteEntry
            | InvalidParameter
            | ChargeTypeViolation
            | InstanceLockedForSecurity
            | InvalidOperationDeletionProtection
            | InvalidRegionId
            | RequestRefused
            | CredentialsRejected
            | CredentialsUnavailable
            | ReleaseNotConfirmed => Kind::Stalled,
            Released | NotFound | NeverObserved | DuplicateRemoved | Orphaned => Kind::Final,
            NotDeleting | Releasing => Kind::ReleaseState,
        }
    }

    /// How soon to look again (the decision may poll faster while an instance is changing).
    pub fn pace(self) -> Pace {
        use Reason::*;
        match self {
            InstanceObserved => Pace::Steady,
            WaitingForStopped => Pace::Waiting,
            OwnershipRecorded
            | WaitingForInitialization
            | StopRequested
            | ReleaseRequested
            | ReleaseOutcomeUnknown
            | WaitingForRelease
            | IncorrectInstanceStatus => Pace::Transition,
            IncorrectInstanceStatusInitializing | DependencyViolationSLBConfiguring | Retrying => {
                Pace::Backoff(Backoff::Normal)
            }
            Throttled => Pace::Backoff(Backoff::Throttled),
            UnexpectedError => Pace::Backoff(Backoff::Slow),
            _ => match self.kind() {
                Kind::Stalled => Pace::Recheck,
                _ => Pace::Steady,
            },
        }
    }

    /// Whether the reason publishes an event, and of which type.
    pub fn event(self) -> EventKind {
        use Reason::*;
        match self {
            // A missing instance is a state, not an error loop (SPEC §4).
            InstanceObserved
            | InstanceNotFound
            | WaitingForInitialization
            | WaitingForStopped
            | WaitingForRelease
            | NotDeleting
            | Releasing => EventKind::None,
            OwnershipRecorded | StopRequested | ReleaseRequested | Released | NotFound
            | NeverObserved | Orphaned => EventKind::Normal,
            _ => EventKind::Warning,
        }
    }

    /// What the reason means, for the README's tables.
    pub fn meaning(self) -> &'static str {
        use Reason::*;
        match self {
            InstanceObserved => "the instance is observed and tagged as owned by this resource",
            OwnershipRecorded => "the instance was just tagged as owned by this resource",
            WaitingForInitialization => "the instance is Pending or Starting",
            WaitingForStopped => "waiting for the instance to be Stopped before DeleteInstance",
            StopRequested => "StopInstance was accepted; waiting for Stopped",
            ReleaseRequested => {
                "DeleteInstance was accepted (also the `Released` condition until the instance is gone)"
            }
            ReleaseOutcomeUnknown => {
                "DeleteInstance was sent but its outcome is unknown (timeout, connection lost, 5xx); the intent is kept in `status.release` and the instance is observed before anything else is sent"
            }
            WaitingForRelease => {
                "DeleteInstance was accepted (RequestId in `status.release`); waiting for the instance to disappear"
            }
            IncorrectInstanceStatus => {
                "ECS saw the instance in another state than observed; observing again"
            }
            IncorrectInstanceStatusInitializing => {
                "ECS says the instance is still being created; retrying"
            }
            DependencyViolationSLBConfiguring => "a load balancer is being configured; retrying",
            Throttled => "the account's ECS API quota is exhausted; the controller slows down",
            Retrying => "a transient failure (5xx, timeout, connection); retrying with backoff",
            UnexpectedError => {
                "an ECS code the controller does not know; retried slowly, shown verbatim"
            }
            InstanceNotFound => "DescribeInstances does not list the instance (not deleting)",
            InstanceNoLongerVisible => {
                "the instance was seen before, with other credentials, and is not listed now; nothing is released"
            }
            DuplicateInstance => {
                "an older EcsInstance names the same region and instance and owns it"
            }
            OwnedByAnotherResource => "the instance carries the owner tag of another EcsInstance",
            DependencyViolationRouteEntry => "a VPC route entry points at the instance",
            InvalidParameter => "ECS refused the instance ID",
            ChargeTypeViolation => "a subscription (PrePaid) instance cannot be released this way",
            InstanceLockedForSecurity => "the instance is locked for security reasons",
            InvalidOperationDeletionProtection => "release protection is on",
            InvalidRegionId => "ECS does not know the region in `spec.regionId`",
            RequestRefused => "ECS refused a call for another reason (the code is in the message)",
            CredentialsRejected => "ECS rejected the credentials (key, signature, RAM permission)",
            CredentialsUnavailable => {
                "the credentials Secret is missing or malformed, or there are no controller credentials"
            }
            ReleaseNotConfirmed => {
                "DeleteInstance was accepted, but the instance is still listed after `--release-timeout`"
            }
            Released => "the instance was released; the finalizer is removed",
            NotFound => "the instance no longer exists; the finalizer is removed",
            NeverObserved => {
                "this resource never observed the instance, so it never managed it; nothing is released and the finalizer is removed"
            }
            DuplicateRemoved => {
                "a duplicate was deleted: no cloud call, the owner keeps the instance"
            }
            Orphaned => "`deletionPolicy: Orphan`: the instance is left running, our tags removed",
            NotDeleting => "`Released=False` while the resource is not being deleted",
            Releasing => "`Released=False` while a deletion has not released the instance yet",
        }
    }

    /// What a person can do, ending every message of a reason that needs one.
    pub fn remedy(self) -> &'static str {
        use Reason::*;
        match self {
            WaitingForStopped => {
                "Stop the instance, or set spec.onDelete.stop to Stop (or spec.onDelete.force to true); deletionPolicy Orphan keeps it"
            }
            Throttled
            | Retrying
            | IncorrectInstanceStatusInitializing
            | DependencyViolationSLBConfiguring => {
                "Nothing to do: the controller retries with backoff"
            }
            ReleaseOutcomeUnknown => {
                "Nothing to do: if the instance is still listed after --release-resend-after, DeleteInstance is sent again"
            }
            UnexpectedError => {
                "The controller retries slowly; look up the code in the ECS API documentation if it persists"
            }
            InstanceNotFound => {
                "Check spec.instanceId and spec.regionId and that the credentials belong to the instance's account"
            }
            InstanceNoLongerVisible => {
                "Restore credentials of the account that owns the instance (or fix a RAM policy that hides it); if it is really gone, set deletionPolicy to Orphan"
            }
            DuplicateInstance => {
                "Delete this duplicate (nothing is released) or the owner; only the owner ever releases the instance"
            }
            OwnedByAnotherResource => {
                "If that resource no longer exists, remove the tag ecs.alicloud.dev/owner-uid from the instance; to keep the instance, set deletionPolicy to Orphan"
            }
            DependencyViolationRouteEntry => {
                "Delete the VPC route entries that point at the instance, or set deletionPolicy to Orphan"
            }
            InvalidParameter => {
                "Check spec.instanceId; to remove this resource without a release, set deletionPolicy to Orphan"
            }
            ChargeTypeViolation => {
                "Release the subscription in the console, or set spec.onDelete.terminateSubscription to true if it has expired; or set deletionPolicy to Orphan"
            }
            InstanceLockedForSecurity => {
                "Resolve the security lock with Alibaba Cloud, or set deletionPolicy to Orphan"
            }
            InvalidOperationDeletionProtection => {
                "Turn release protection off (ModifyInstanceAttribute DeletionProtection=false or the console), or set deletionPolicy to Orphan"
            }
            InvalidRegionId => {
                "spec.regionId is immutable: recreate the resource with the right region, or set deletionPolicy to Orphan"
            }
            RequestRefused => "Fix the cause the ECS code names, or set deletionPolicy to Orphan",
            CredentialsRejected => {
                "Fix the access key (or the RAM policy: DescribeInstances, StopInstance, DeleteInstance, TagResources, UntagResources)"
            }
            CredentialsUnavailable => {
                "Create the Secret with accessKeyId and accessKeySecret in the resource's namespace, or give the controller credentials"
            }
            ReleaseNotConfirmed => {
                "Check the instance in the ECS console; set deletionPolicy to Orphan to remove this resource"
            }
            _ => "",
        }
    }
}

/// `what happened. what to do` — and for Stalled reasons how to ask for a look now.
pub fn message(reason: Reason, what: &str) -> String {
    let remedy = reason.remedy();
    let mut message = what.trim_end_matches('.').to_string();
    if !remedy.is_empty() {
        message.push_str(". ");
        message.push_str(remedy);
    }
    if reason.kind() == Kind::Stalled {
        message.push_str(", ");
        message.push_str(RECHECK_HINT);
    }
    message
}

/// The README's table of the reasons that need a person, for the test that keeps it current.
pub fn stuck_table() -> String {
    let mut table = String::from("| reason | meaning | what to do |\n|---|---|---|\n");
    for reason in Reason::ALL.iter().filter(|r| r.kind() == Kind::Stalled) {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            reason.as_str(),
            reason.meaning(),
            reason.remedy()
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_a_valid_condition_reason() {
        for reason in Reason::ALL {
            let s = reason.as_str();
            assert!(s.chars().next().unwrap().is_ascii_uppercase(), "{s}");
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
            assert!(!reason.meaning().is_empty(), "{s} has a meaning");
        }
    }

    #[test]
    fn every_stalled_reason_says_what_to_do() {
        for reason in Reason::ALL.iter().filter(|r| r.kind() == Kind::Stalled) {
            assert!(!reason.remedy().is_empty(), "{reason:?} needs a remedy");
            assert!(message(*reason, "x").contains(RECHECK_ANNOTATION));
        }
    }

    #[test]
    fn the_readme_lists_every_stuck_reason() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&stuck_table()),
            "README.md's \"When a deletion is stuck\" table is stale; it must read:\n{}",
            stuck_table()
        );
    }
}
