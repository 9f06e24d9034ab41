//! The deletion flow of SPEC §3 (and the observation loop of §4) as one pure function: from the
//! resource, what was observed of the instance and — on a second call — the result of the cloud
//! call it asked for, to the next step, the status to write and the events to publish.
//!
//! Every step is derived again from observed state, so a controller restarted at any point
//! carries on where it stopped: the only memory is what the status already records (a release
//! request) and whether a stop was asked for moments ago.

use ecs_client::{
    DeleteInstance, EcsError, ErrorClass, Instance, InstanceStatus, RequestId, StopInstance,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, READY, RECONCILING, RELEASED, STALLED};
use crate::resource::{
    DeletionPolicy, EcsInstance, EcsInstanceStatus, LastError, ObservedInstance, ReleaseRecord,
    StopPolicy, StoppedMode,
};

/// What the controller saw of the instance this pass.
#[derive(Debug, Clone)]
pub enum Observation {
    /// Not looked at: the resource is being orphaned, which needs no cloud call.
    Skipped,
    /// No usable credentials, so nothing was asked of ECS.
    CredentialsUnavailable(String),
    /// `DescribeInstances` failed.
    Failed(EcsError),
    /// `DescribeInstances` does not list the instance.
    Absent,
    Present(Instance),
}

/// A call to ECS the decision asks the shell to make.
#[derive(Debug, Clone, PartialEq)]
pub enum CloudCall {
    Stop(StopInstance),
    Delete(DeleteInstance),
}

impl CloudCall {
    pub fn action(&self) -> &'static str {
        match self {
            CloudCall::Stop(_) => "StopInstance",
            CloudCall::Delete(_) => "DeleteInstance",
        }
    }
}

pub struct Input<'a> {
    pub resource: &'a EcsInstance,
    pub observation: &'a Observation,
    /// A `StopInstance` for this resource was accepted moments ago: do not send another while
    /// `DescribeInstances` may still show the instance `Running`.
    pub stop_recently_requested: bool,
    /// The outcome of the call the first decision asked for (`None` on the first call).
    pub call_result: Option<&'a Result<RequestId, EcsError>>,
    pub now: Timestamp,
    /// `status.instance.observedAt` is refreshed when the observation changes or is this old,
    /// so steady resyncs do not rewrite the status every time.
    pub observed_at_refresh: SignedDuration,
    /// An accepted release whose instance is still listed after this long needs a person.
    pub release_timeout: SignedDuration,
}

/// How soon to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The instance is changing state: poll fast.
    Transition,
    /// Waiting for someone else to stop a running instance.
    Waiting,
    /// Nothing in flight: slow, jittered resync.
    Steady,
    /// A person must act: slow recheck (at once on a spec or Secret change).
    Recheck,
    /// Retry with this resource's exponential backoff.
    Backoff(Backoff),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Transient failures and state conflicts.
    Normal,
    /// The account's API quota is exhausted.
    Throttled,
    /// Unknown errors: retried, but slowly.
    Slow,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The instance is gone or orphaned: the status is final; remove the finalizer.
    RemoveFinalizer,
    Requeue(Pace),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub action: &'static str,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Set only on the first call: the shell makes this call and decides again with its result.
    pub call: Option<CloudCall>,
    /// The complete status to write (written only if it differs from the current one).
    pub status: EcsInstanceStatus,
    pub events: Vec<EventSpec>,
    pub next: Next,
}

pub fn is_deleting(resource: &EcsInstance) -> bool {
    resource.metadata.deletion_timestamp.is_some()
}

/// Orphaning needs neither credentials nor a look at the instance.
pub fn is_orphaning(resource: &EcsInstance) -> bool {
    is_deleting(resource) && resource.spec.deletion_policy == DeletionPolicy::Orphan
}

pub fn decide(input: &Input) -> Decision {
    let mut draft = Draft::new(input);
    let deleting = is_deleting(input.resource);
    if is_orphaning(input.resource) {
        return draft.orphan();
    }
    match input.observation {
        Observation::Skipped => draft.progress(
            "Pending",
            "Waiting for the first observation",
            Pace::Transition,
        ),
        Observation::CredentialsUnavailable(reason) => draft.credentials_unavailable(reason),
        Observation::Failed(error) => draft.failed(error),
        Observation::Absent if deleting => draft.gone(),
        Observation::Absent => draft.instance_not_found(),
        Observation::Present(instance) => {
            draft.observed(instance);
            if !deleting {
                return draft.ready(instance);
            }
            match release_step(input, instance) {
                Step::Wait {
                    reason,
                    message,
                    pace,
                } => draft.progress(reason, &message, pace),
                Step::Blocked { reason, message } => draft.blocked(reason, message),
                Step::Call(call) => match input.call_result {
                    None => draft.call(call),
                    Some(Ok(request_id)) => draft.call_succeeded(&call, request_id),
                    Some(Err(error)) => draft.failed(error),
                },
            }
        }
    }
}

enum Step {
    Wait {
        reason: &'static str,
        message: String,
        pace: Pace,
    },
    /// A person must look; nothing to call.
    Blocked {
        reason: &'static str,
        message: String,
    },
    Call(CloudCall),
}

/// SPEC §3 steps 3–5 for an instance that is still listed.
fn release_step(input: &Input, instance: &Instance) -> Step {
    let spec = &input.resource.spec;
    let id = &instance.instance_id;
    if let Some(request_id) = release_request_id(input.resource) {
        let requested_at = input
            .resource
            .status
            .as_ref()
            .and_then(|s| s.release.as_ref()?.requested_at.clone());
        if requested_at.is_some_and(|at| input.now.duration_since(at.0) > input.release_timeout) {
            // ECS accepted the release but still lists the instance: polling fast forever would
            // hide that, and asking again could release nothing new. A person should look.
            return Step::Blocked {
                reason: "ReleaseNotConfirmed",
                message: format!(
                    "DeleteInstance was accepted (RequestId {request_id}) over {} ago, but instance {id} is still listed as {}; check it in the ECS console, or set deletionPolicy to Orphan to remove this resource",
                    friendly(input.release_timeout),
                    instance.status.as_str()
                ),
            };
        }
        return Step::Wait {
            reason: "WaitingForRelease",
            message: format!(
                "DeleteInstance accepted (RequestId {request_id}); waiting for instance {id} to disappear"
            ),
            pace: Pace::Transition,
        };
    }
    let delete = |force: bool| {
        Step::Call(CloudCall::Delete(DeleteInstance {
            instance_id: id.clone(),
            force,
            force_stop: None,
            terminate_subscription: spec.on_delete.terminate_subscription,
            dry_run: false,
        }))
    };
    match &instance.status {
        InstanceStatus::Pending | InstanceStatus::Starting => Step::Wait {
            reason: "WaitingForInitialization",
            message: format!(
                "Instance {id} is {}; it can be released once it is created",
                instance.status.as_str()
            ),
            pace: Pace::Transition,
        },
        InstanceStatus::Running | InstanceStatus::Stopping if spec.on_delete.force => delete(true),
        InstanceStatus::Running
            if spec.on_delete.stop != StopPolicy::Wait && !input.stop_recently_requested =>
        {
            Step::Call(CloudCall::Stop(StopInstance {
                instance_id: id.clone(),
                force_stop: spec.on_delete.stop == StopPolicy::ForceStop,
                stopped_mode: spec.on_delete.stopped_mode.map(|mode| match mode {
                    StoppedMode::KeepCharging => ecs_client::StoppedMode::KeepCharging,
                    StoppedMode::StopCharging => ecs_client::StoppedMode::StopCharging,
                }),
                dry_run: false,
            }))
        }
        InstanceStatus::Stopped => delete(spec.on_delete.force),
        status => {
            let stopping = *status == InstanceStatus::Stopping || input.stop_recently_requested;
            let who = match spec.on_delete.stop {
                StopPolicy::Wait => {
                    " (onDelete.stop is Wait: stop it, or set onDelete.stop to Stop)"
                }
                StopPolicy::Stop | StopPolicy::ForceStop => "",
            };
            Step::Wait {
                reason: "WaitingForStopped",
                message: format!(
                    "Instance {id} is {}; waiting for Stopped before DeleteInstance{who}",
                    status.as_str()
                ),
                pace: if stopping {
                    Pace::Transition
                } else {
                    Pace::Waiting
                },
            }
        }
    }
}

/// `10m`, `90s`: how long, for a message.
fn friendly(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 && seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

fn release_request_id(resource: &EcsInstance) -> Option<&str> {
    resource
        .status
        .as_ref()?
        .release
        .as_ref()?
        .request_id
        .as_deref()
}

/// What the release condition says while the resource lives.
fn not_released_reason(deleting: bool) -> (&'static str, &'static str) {
    if deleting {
        ("Releasing", "The instance has not been released yet")
    } else {
        (
            "NotDeleting",
            "The instance is released when this resource is deleted",
        )
    }
}

/// Builds the decision: the current status with this pass's changes.
struct Draft<'a> {
    input: &'a Input<'a>,
    status: EcsInstanceStatus,
    now: Time,
    generation: Option<i64>,
    deleting: bool,
}

impl<'a> Draft<'a> {
    fn new(input: &'a Input<'a>) -> Self {
        let generation = input.resource.metadata.generation;
        let mut status = input.resource.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        Draft {
            input,
            status,
            now: Time(input.now),
            generation,
            deleting: is_deleting(input.resource),
        }
    }

    fn set(&mut self, type_: &str, value: bool, reason: &str, message: &str) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            value,
            reason,
            message,
            self.generation,
            self.now.clone(),
        );
    }

    fn set_released_pending(&mut self) {
        let (reason, message) = not_released_reason(self.deleting);
        self.set(RELEASED, false, reason, message);
    }

    /// Ready, Reconciling and Stalled for a resource that is not where it should be. Ready
    /// carries the same reason, so `kubectl get` shows what is going on.
    fn not_ready(&mut self, stalled: bool, reason: &str, message: &str) {
        self.set(READY, false, reason, message);
        self.set(
            RECONCILING,
            !stalled,
            if stalled { "Stalled" } else { reason },
            if stalled { "" } else { message },
        );
        self.set(
            STALLED,
            stalled,
            if stalled { reason } else { "Progressing" },
            if stalled { message } else { "" },
        );
        if !conditions::is_true(&self.status.conditions, RELEASED) {
            self.set_released_pending();
        }
    }

    fn finish(self, next: Next, events: Vec<EventSpec>) -> Decision {
        Decision {
            call: None,
            status: self.status,
            events,
            next,
        }
    }

    fn orphan(mut self) -> Decision {
        let message =
            "deletionPolicy is Orphan: the instance is left as it is and the resource is removed";
        self.not_ready(false, "Orphaned", message);
        self.set(RELEASED, false, "Orphaned", message);
        let event = normal("Orphaned", "Orphan", message.to_string());
        self.finish(Next::RemoveFinalizer, vec![event])
    }

    fn progress(mut self, reason: &str, message: &str, pace: Pace) -> Decision {
        self.not_ready(false, reason, message);
        self.finish(Next::Requeue(pace), Vec::new())
    }

    fn blocked(mut self, reason: &str, message: String) -> Decision {
        self.not_ready(true, reason, &message);
        let event = warning(reason, "Release", message);
        self.finish(Next::Requeue(Pace::Recheck), vec![event])
    }

    fn credentials_unavailable(mut self, reason: &str) -> Decision {
        self.not_ready(true, "CredentialsUnavailable", reason);
        let event = warning("CredentialsUnavailable", "Observe", reason.to_string());
        self.finish(Next::Requeue(Pace::Recheck), vec![event])
    }

    fn instance_not_found(mut self) -> Decision {
        let spec = &self.input.resource.spec;
        let message = format!(
            "Instance {} does not exist in region {} (DescribeInstances does not list it for these credentials)",
            spec.instance_id, spec.region_id
        );
        self.status.instance = None;
        self.status.last_error = None;
        self.not_ready(true, "InstanceNotFound", &message);
        self.finish(Next::Requeue(Pace::Recheck), Vec::new())
    }

    /// The instance is not listed (or ECS says it does not exist) while deleting: released.
    fn gone(mut self) -> Decision {
        let id = &self.input.resource.spec.instance_id;
        let (reason, message) = match release_request_id(self.input.resource) {
            Some(request_id) => (
                "Released",
                format!("Instance {id} was released (DeleteInstance RequestId {request_id})"),
            ),
            None => (
                "NotFound",
                format!("Instance {id} no longer exists; nothing to release"),
            ),
        };
        let release = self
            .status
            .release
            .get_or_insert_with(ReleaseRecord::default);
        release.confirmed_at = Some(self.now.clone());
        self.status.last_error = None;
        self.set(RELEASED, true, reason, &message);
        self.set(READY, false, reason, &message);
        self.set(RECONCILING, false, reason, "");
        self.set(STALLED, false, reason, "");
        let event = normal("Released", "Release", message);
        self.finish(Next::RemoveFinalizer, vec![event])
    }

    fn observed(&mut self, instance: &Instance) {
        let mut observed = ObservedInstance {
            status: Some(instance.status.as_str().to_string()),
            charge_type: Some(instance.charge_type.clone()).filter(|c| !c.is_empty()),
            deletion_protection: Some(instance.deletion_protection),
            lock_reasons: instance.lock_reasons.clone(),
            zone_id: Some(instance.zone_id.clone()).filter(|z| !z.is_empty()),
            observed_at: Some(self.now.clone()),
        };
        if let Some(previous) = &self.status.instance {
            let unchanged = ObservedInstance {
                observed_at: previous.observed_at.clone(),
                ..observed.clone()
            } == *previous;
            let fresh = previous.observed_at.as_ref().is_some_and(|at| {
                self.input.now.duration_since(at.0) < self.input.observed_at_refresh
            });
            if unchanged && fresh {
                observed.observed_at = previous.observed_at.clone();
            }
        }
        self.status.instance = Some(observed);
        // A successful DescribeInstances is a successful call.
        self.status.last_error = None;
    }

    fn ready(mut self, instance: &Instance) -> Decision {
        let message = format!(
            "Instance {} is {}",
            instance.instance_id,
            instance.status.as_str()
        );
        self.set(READY, true, "InstanceObserved", &message);
        self.set(RECONCILING, false, "InstanceObserved", "");
        self.set(STALLED, false, "InstanceObserved", "");
        self.set_released_pending();
        let pace = match instance.status {
            InstanceStatus::Running | InstanceStatus::Stopped => Pace::Steady,
            _ => Pace::Transition,
        };
        self.finish(Next::Requeue(pace), Vec::new())
    }

    fn call(self, call: CloudCall) -> Decision {
        let mut decision = self.finish(Next::Requeue(Pace::Transition), Vec::new());
        decision.call = Some(call);
        decision
    }

    fn call_succeeded(mut self, call: &CloudCall, request_id: &RequestId) -> Decision {
        let id = &self.input.resource.spec.instance_id;
        let request_id = &request_id.0;
        let event = match call {
            CloudCall::Stop(stop) => {
                let how = if stop.force_stop {
                    "StopInstance (ForceStop)"
                } else {
                    "StopInstance"
                };
                let message = format!(
                    "{how} accepted for instance {id} (RequestId {request_id}); waiting for Stopped"
                );
                self.not_ready(false, "StopRequested", &message);
                normal("StopRequested", "Stop", message)
            }
            CloudCall::Delete(delete) => {
                let how = if delete.force {
                    "DeleteInstance (Force)"
                } else {
                    "DeleteInstance"
                };
                let message = format!(
                    "{how} accepted for instance {id} (RequestId {request_id}); waiting for it to disappear"
                );
                self.status.release = Some(ReleaseRecord {
                    request_id: Some(request_id.clone()),
                    requested_at: Some(self.now.clone()),
                    confirmed_at: None,
                });
                self.set(RELEASED, true, "ReleaseRequested", &message);
                self.not_ready(false, "WaitingForRelease", &message);
                normal("ReleaseRequested", "Release", message)
            }
        };
        self.finish(Next::Requeue(Pace::Transition), vec![event])
    }

    /// SPEC §3 step 6: what each ECS error means for the resource.
    fn failed(mut self, error: &EcsError) -> Decision {
        if error.class() == ErrorClass::NotFound && self.deleting {
            return self.gone();
        }
        let code_reason =
            || conditions::reason_from_code(error.code().unwrap_or("UnexpectedError"));
        let (stalled, reason, pace) = match error.class() {
            // Not deleting: DescribeInstances never answers NotFound for a missing instance (it
            // lists nothing), so this is a Stop/Delete race; look again soon.
            ErrorClass::NotFound => (false, code_reason(), Pace::Transition),
            ErrorClass::StateConflict if error.code() == Some("IncorrectInstanceStatus") => {
                (false, code_reason(), Pace::Transition)
            }
            ErrorClass::StateConflict => (false, code_reason(), Pace::Backoff(Backoff::Normal)),
            ErrorClass::Terminal => (true, code_reason(), Pace::Recheck),
            ErrorClass::Throttled => (
                false,
                "Throttled".to_string(),
                Pace::Backoff(Backoff::Throttled),
            ),
            ErrorClass::Transient => (
                false,
                "Retrying".to_string(),
                Pace::Backoff(Backoff::Normal),
            ),
            ErrorClass::CredentialsRejected => {
                (true, "CredentialsRejected".to_string(), Pace::Recheck)
            }
            ErrorClass::Unknown => (
                false,
                "UnexpectedError".to_string(),
                Pace::Backoff(Backoff::Slow),
            ),
        };
        let message = error.to_string();
        self.status.last_error = Some(LastError {
            action: error.action().to_string(),
            code: error.code().map(str::to_string),
            message: error.message().to_string(),
            request_id: error.request_id().map(str::to_string),
            http_status: error.http_status().map(i32::from),
            at: self.now.clone(),
        });
        self.not_ready(stalled, &reason, &message);
        let action = match error.action() {
            "StopInstance" => "Stop",
            "DeleteInstance" => "Release",
            _ => "Observe",
        };
        let event = warning(&reason, action, message);
        self.finish(Next::Requeue(pace), vec![event])
    }
}

fn normal(reason: &str, action: &'static str, note: String) -> EventSpec {
    EventSpec {
        warning: false,
        reason: reason.to_string(),
        action,
        note,
    }
}

fn warning(reason: &str, action: &'static str, note: String) -> EventSpec {
    EventSpec {
        warning: true,
        reason: reason.to_string(),
        action,
        note,
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
