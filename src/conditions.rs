//! `metav1.Condition` bookkeeping: the four condition types, and `lastTransitionTime` that
//! moves only when a condition's status flips. The reasons are in [`crate::reasons`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const RELEASED: &str = "Released";

/// Sets a condition in place. `lastTransitionTime` is kept unless the status flips, so rewriting
/// the same condition never changes it (and never triggers a status write by itself).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    let status = if status { "True" } else { "False" };
    let next = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) if existing.status == next.status => {
            let since = existing.last_transition_time.clone();
            *existing = Condition {
                last_transition_time: since,
                ..next
            };
        }
        Some(existing) => *existing = next,
        None => conditions.push(next),
    }
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            READY,
            true,
            "InstanceObserved",
            "Running",
            Some(1),
            at(100),
        );
        set(
            &mut conditions,
            READY,
            true,
            "InstanceObserved",
            "Stopped",
            Some(2),
            at(200),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].message, "Stopped");
        assert_eq!(conditions[0].observed_generation, Some(2));

        set(
            &mut conditions,
            READY,
            false,
            "InstanceNotFound",
            "gone",
            Some(2),
            at(300),
        );
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(conditions[0].status, "False");
        assert!(!is_true(&conditions, READY));
    }
}
