//! What this process remembers of each resource between passes, for moments the status may not
//! show yet: one entry per object, so forgetting an object is one removal. Checked against the
//! UID, so a resource recreated under the same name starts afresh.

use std::{collections::HashMap, sync::Mutex};

use jiff::Timestamp;
use kube::{ResourceExt, runtime::reflector::ObjectRef};

use crate::resource::{EcsInstance, ReleaseRecord};

#[derive(Default, Clone)]
pub struct ObjectState {
    uid: Option<String>,
    /// When a `StopInstance` was last accepted.
    pub stop_requested_at: Option<Timestamp>,
    /// An accepted `DeleteInstance`, kept until the finalizer is gone: if the status write that
    /// records it fails, the next pass still knows, and never sends a second one.
    pub accepted_release: Option<ReleaseRecord>,
    /// Consecutive failed passes, for the backoff.
    pub failures: u32,
}

#[derive(Default)]
pub struct Objects(Mutex<HashMap<ObjectRef<EcsInstance>, ObjectState>>);

impl Objects {
    /// A copy of the state of `resource` (fresh for a new UID).
    pub fn get(&self, resource: &EcsInstance) -> ObjectState {
        let objects = self.0.lock().expect("objects lock");
        objects
            .get(&ObjectRef::from_obj(resource))
            .filter(|state| state.uid == resource.uid())
            .cloned()
            .unwrap_or_default()
    }

    /// Changes the state of `resource` (starting afresh for a new UID).
    pub fn update<T>(
        &self,
        resource: &EcsInstance,
        change: impl FnOnce(&mut ObjectState) -> T,
    ) -> T {
        let mut objects = self.0.lock().expect("objects lock");
        let state = objects.entry(ObjectRef::from_obj(resource)).or_default();
        if state.uid != resource.uid() {
            *state = ObjectState {
                uid: resource.uid(),
                ..Default::default()
            };
        }
        change(state)
    }

    pub fn remove(&self, object: &ObjectRef<EcsInstance>) {
        self.0.lock().expect("objects lock").remove(object);
    }

    pub fn known(&self) -> Vec<ObjectRef<EcsInstance>> {
        self.0
            .lock()
            .expect("objects lock")
            .keys()
            .cloned()
            .collect()
    }
}
