//! Every condition reason the controller writes, in one table of rows ([`Reason::row`]): which
//! condition it drives, how soon the resource is looked at again, the event it publishes, and
//! what a person can do about it. The decision only picks a reason and says what happened; everything else comes from here,
//! and the README's tables are checked against [`Reason::ALL`] by a test.

use crate::pacing::{Backoff, Pace};

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

/// Everything a reason decides (see [`Reason::row`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub pace: Pace,
    pub event: EventKind,
    /// What the reason means, for the README's tables.
    pub meaning: &'static str,
    /// What a person can do (empty when nothing).
    pub remedy: &'static str,
}

/// What the event of a reason is, if it publishes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    None,
    Normal,
    Warning,
}

macro_rules! reasons {
    ($($name:ident $(= $wire:literal)?),+ $(,)?) => {
        /// A condition reason (valid `metav1.Condition` reasons: CamelCase, no dots).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($name),+ }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name),+];

            /// The string written to conditions and events: the variant's name, unless the row
            /// gives the one users have always seen (see `AlreadyGone`).
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => reasons!(@wire $name $($wire)?)),+ }
            }
        }
    };
    (@wire $name:ident $wire:literal) => { $wire };
    (@wire $name:ident) => { stringify!($name) };
}

reasons!(
    InstanceObserved,
    OwnershipRecorded,
    TakenOver,
    ConfirmingOwnership,
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
    InvalidDeletionPolicy,
    ReleaseNotConfirmed,
    Released,
    // The final reason of a deletion that found the instance gone, not to be confused with the
    // Stalled `InstanceNotFound` of a living resource; its string stays `NotFound`, the one users'
    // alerts and GitOps health checks already read (design.md §9).
    AlreadyGone = "NotFound",
    NeverObserved,
    DuplicateRemoved,
    Orphaned,
    ObservedOnly,
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

    /// Everything this reason decides. One arm per reason and no catch-all, so a new reason
    /// does not compile until someone chose its condition, pace, event, meaning and remedy.
    pub fn row(self) -> Row {
        use Reason::*;
        match self {
            InstanceObserved => Row {
                kind: Kind::Ready,
                pace: Pace::Steady,
                event: EventKind::None,
                meaning: "the instance is observed and tagged as owned by this resource",
                remedy: "",
            },
            OwnershipRecorded => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Normal,
                meaning: "the instance was just tagged as owned by this resource",
                remedy: "",
            },
            TakenOver => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Normal,
                meaning: "the instance was tagged for another resource UID, named by the annotation ecs.alicloud.dev/take-over-from, and no resource with that UID exists here: it is now tagged as owned by this resource",
                remedy: "",
            },
            ConfirmingOwnership => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::None,
                meaning: "another EcsInstance names (or named) the same instance, or a tag call of this resource may still land: the deletion waits until the owner tag has held for a while",
                remedy: "Nothing to do: the deletion goes ahead once the tag has held (at most a minute and a half); delete the other EcsInstance if it is a mistake",
            },
            WaitingForInitialization => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::None,
                meaning: "the instance is Pending or Starting",
                remedy: "",
            },
            WaitingForStopped => Row {
                kind: Kind::Progress,
                pace: Pace::Waiting,
                event: EventKind::None,
                meaning: "waiting for the instance to be Stopped before DeleteInstance",
                remedy: "Stop the instance, or set spec.onDelete.stop to Stop (or spec.onDelete.force to true); deletionPolicy Orphan keeps it",
            },
            StopRequested => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Normal,
                meaning: "StopInstance was accepted; waiting for Stopped",
                remedy: "",
            },
            ReleaseRequested => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Normal,
                meaning: "DeleteInstance was accepted (also the `Released` condition until the instance is gone)",
                remedy: "",
            },
            ReleaseOutcomeUnknown => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Warning,
                meaning: "DeleteInstance was sent but its outcome is unknown (timeout, connection lost, 5xx); the intent is kept in `status.release` and the instance is observed before anything else is sent",
                remedy: "Nothing to do: if the instance is still listed after --release-resend-after, DeleteInstance is sent again",
            },
            WaitingForRelease => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::None,
                meaning: "DeleteInstance was accepted (RequestId in `status.release`); waiting for the instance to disappear",
                remedy: "",
            },
            IncorrectInstanceStatus => Row {
                kind: Kind::Progress,
                pace: Pace::Transition,
                event: EventKind::Warning,
                meaning: "ECS saw the instance in another state than observed; observing again",
                remedy: "",
            },
            IncorrectInstanceStatusInitializing => Row {
                kind: Kind::Progress,
                pace: Pace::Backoff(Backoff::Normal),
                event: EventKind::Warning,
                meaning: "ECS says the instance is still being created; retrying",
                remedy: "Nothing to do: the controller retries with backoff",
            },
            DependencyViolationSLBConfiguring => Row {
                kind: Kind::Progress,
                pace: Pace::Backoff(Backoff::Normal),
                event: EventKind::Warning,
                meaning: "a load balancer is being configured; retrying",
                remedy: "Nothing to do: the controller retries with backoff",
            },
            Throttled => Row {
                kind: Kind::Progress,
                pace: Pace::Backoff(Backoff::Throttled),
                event: EventKind::Warning,
                meaning: "the account's ECS API quota is exhausted; the controller slows down",
                remedy: "Nothing to do: the controller retries with backoff",
            },
            Retrying => Row {
                kind: Kind::Progress,
                pace: Pace::Backoff(Backoff::Normal),
                event: EventKind::Warning,
                meaning: "a transient failure (5xx, timeout, connection); retrying with backoff",
                remedy: "Nothing to do: the controller retries with backoff",
            },
            UnexpectedError => Row {
                kind: Kind::Progress,
                pace: Pace::Backoff(Backoff::Slow),
                event: EventKind::Warning,
                meaning: "an ECS code the controller does not know; retried slowly, shown verbatim",
                remedy: "The controller retries slowly; look up the code in the ECS API documentation if it persists",
            },
            InstanceNotFound => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::None,
                meaning: "DescribeInstances does not list the instance (not deleting)",
                remedy: "Check spec.instanceId and spec.regionId and that the credentials belong to the instance's account",
            },
            InstanceNoLongerVisible => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "the instance was seen before, with other credentials, and is not listed now; nothing is released",
                remedy: "Restore credentials of the account that owns the instance (or fix a RAM policy that hides it); if it is really gone, set deletionPolicy to Orphan",
            },
            DuplicateInstance => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "an older EcsInstance names the same region and instance and owns it",
                remedy: "Delete this duplicate (nothing is released) or the owner; only the owner ever releases the instance",
            },
            OwnedByAnotherResource => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "the instance carries the owner tag of another EcsInstance",
                remedy: "To keep the instance, set deletionPolicy to Orphan; to take it over (this resource replaces that one after a restore or a cluster move, and it exists nowhere any more), set the annotation the message names (docs/operations.md)",
            },
            DependencyViolationRouteEntry => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "a VPC route entry points at the instance",
                remedy: "Delete the VPC route entries that point at the instance, or set deletionPolicy to Orphan",
            },
            InvalidParameter => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "ECS refused the instance ID",
                remedy: "Check spec.instanceId; to remove this resource without a release, set deletionPolicy to Orphan",
            },
            ChargeTypeViolation => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "a subscription (PrePaid) instance cannot be released this way",
                remedy: "Release the subscription in the console, or set spec.onDelete.terminateSubscription to true if it has expired; or set deletionPolicy to Orphan",
            },
            InstanceLockedForSecurity => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "the instance is locked for security reasons",
                remedy: "Resolve the security lock with Alibaba Cloud, or set deletionPolicy to Orphan",
            },
            InvalidOperationDeletionProtection => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "release protection is on",
                remedy: "Turn release protection off (ModifyInstanceAttribute DeletionProtection=false or the console), or set deletionPolicy to Orphan",
            },
            InvalidRegionId => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "ECS does not know the region in `spec.regionId`",
                remedy: "spec.regionId is immutable: recreate the resource with the right region, or set deletionPolicy to Orphan",
            },
            RequestRefused => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "ECS refused a call for another reason (the code is in the message)",
                remedy: "Fix the cause the ECS code names, or set deletionPolicy to Orphan",
            },
            CredentialsRejected => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "ECS rejected the credentials (key, signature, RAM permission)",
                remedy: "Fix the access key (or the RAM policy: DescribeInstances, StopInstance, DeleteInstance, TagResources, UntagResources)",
            },
            CredentialsUnavailable => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "the credentials Secret is missing or malformed, or there are no controller credentials",
                remedy: "Fix what the message names: the Secret in the resource's namespace (accessKeyId and accessKeySecret, and/or roleArn), the controller's credentials source, or the role's trust policy",
            },
            ReleaseNotConfirmed => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "DeleteInstance was accepted, but the instance is still listed after `--release-timeout`",
                remedy: "Check the instance in the ECS console; set deletionPolicy to Orphan to remove this resource",
            },
            Released => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Normal,
                meaning: "the instance was released; the finalizer is removed",
                remedy: "",
            },
            AlreadyGone => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Normal,
                meaning: "the instance no longer exists; the finalizer is removed",
                remedy: "",
            },
            NeverObserved => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Normal,
                meaning: "this resource never observed the instance, so it never managed it; nothing is released and the finalizer is removed",
                remedy: "",
            },
            DuplicateRemoved => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Warning,
                meaning: "a duplicate was deleted: no cloud call, the owner keeps the instance",
                remedy: "",
            },
            Orphaned => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Normal,
                meaning: "`deletionPolicy: Orphan`: the instance is left running, our tags removed",
                remedy: "",
            },
            InvalidDeletionPolicy => Row {
                kind: Kind::Stalled,
                pace: Pace::Recheck,
                event: EventKind::Warning,
                meaning: "the resource sets no deletionPolicy and its Namespace's ecs.alicloud.dev/deletion-policy annotation is not Delete, Orphan or Observe, or the Namespaces cannot be listed; nothing is changed in the cloud",
                remedy: "Set spec.deletionPolicy, or fix the Namespace's annotation (or the controller's rights on namespaces)",
            },
            ObservedOnly => Row {
                kind: Kind::Final,
                pace: Pace::Steady,
                event: EventKind::Normal,
                meaning: "`deletionPolicy: Observe` (a dry run): nothing was changed in the cloud; the message says what Delete would have done",
                remedy: "",
            },
            NotDeleting => Row {
                kind: Kind::ReleaseState,
                pace: Pace::Steady,
                event: EventKind::None,
                meaning: "`Released=False` while the resource is not being deleted",
                remedy: "",
            },
            Releasing => Row {
                kind: Kind::ReleaseState,
                pace: Pace::Steady,
                event: EventKind::None,
                meaning: "`Released=False` while a deletion has not released the instance yet",
                remedy: "",
            },
        }
    }

    pub fn kind(self) -> Kind {
        self.row().kind
    }

    /// How soon to look again (the decision may poll faster while an instance is changing).
    pub fn pace(self) -> Pace {
        self.row().pace
    }

    /// Whether the reason publishes an event, and of which type.
    pub fn event(self) -> EventKind {
        self.row().event
    }

    /// What the reason means, for the README's tables.
    pub fn meaning(self) -> &'static str {
        self.row().meaning
    }

    /// What a person can do, ending every message of a reason that needs one (empty: nothing).
    pub fn remedy(self) -> &'static str {
        self.row().remedy
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
