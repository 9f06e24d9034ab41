//! What this process remembers of each resource between passes, for moments the status may not
//! show yet: one entry per object, so forgetting an object is one removal. Checked against the
//! UID, so a resource recreated under the same name starts afresh.

use std::{collections::HashMap, sync::Mutex};

use jiff::Timestamp;
use kube::{Resource, ResourceExt, runtime::reflector::ObjectRef};

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

impl ObjectState {
    fn is_empty(&self) -> bool {
        self.stop_requested_at.is_none() && self.accepted_release.is_none() && self.failures == 0
    }
}

/// Under which reference a resource (as the pass or as the cache sees it) is remembered.
fn key<R: Resource<DynamicType = ()>>(resource: &R) -> ObjectRef<EcsInstance> {
    ObjectRef::<R>::from_obj(resource).into_kind_unchecked(())
}

#[derive(Default)]
pub struct Objects(Mutex<HashMap<ObjectRef<EcsInstance>, ObjectState>>);

impl Objects {
    /// A copy of the state of `resource` (fresh for a new UID).
    pub fn get(&self, resource: &EcsInstance) -> ObjectState {
        let objects = self.0.lock().expect("objects lock");
        objects
            .get(&key(resource))
            .filter(|state| state.uid == resource.uid())
            .cloned()
            .unwrap_or_default()
    }

    /// Changes the state of `resource` (starting afresh for a new UID). A state back to
    /// nothing worth remembering is dropped: most resources, Ready, keep no entry at all.
    pub fn update<R: Resource<DynamicType = ()>, T>(
        &self,
        resource: &R,
        change: impl FnOnce(&mut ObjectState) -> T,
    ) -> T {
        let mut objects = self.0.lock().expect("objects lock");
        let key = key(resource);
        let state = objects.entry(key.clone()).or_default();
        if state.uid != resource.uid() {
            *state = ObjectState {
                uid: resource.uid(),
                ..Default::default()
            };
        }
        let result = change(state);
        if state.is_empty() {
            objects.remove(&key);
        }
        result
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
