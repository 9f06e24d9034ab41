//! The [`Cluster`] seam on kube's client: status writes by server-side apply (conditional on a
//! resourceVersion when asked), finalizer JSON patches, Secrets, and events through kube-runtime's
//! `Recorder`.
//!
//! Finalizer patches are JSON patches with a `test` of the finalizer list, of our entry's index,
//! or of the resourceVersion, so a concurrent change makes them fail instead of overwriting it
//! (crossplane does the same).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::ObjectRef,
    },
};
use serde_json::json;
use tracing::warn;

use super::seams::{Cluster, Error, SecretRead};
use crate::{
    decision::EventSpec,
    reasons::Reason,
    resource::{EcsInstance, EcsInstanceStatus, FINALIZER, SECRET_IN_USE_FINALIZER},
};

/// The field manager of the controller's status writes.
pub const MANAGER: &str = "ecs-instance-controller";

/// The gist of the last note of a reason, the recorder its events fold into, and when it was
/// last used.
type NoteRecorder = (String, Recorder, Instant);

/// How long a recorder is kept after its last event: kube's `Recorder` starts a new event rather
/// than extend a series after 6 minutes, so an older one folds nothing any more.
const RECORDER_KEPT: Duration = Duration::from_secs(6 * 60);

pub struct KubeCluster {
    client: Client,
    reporter: Reporter,
    /// kube's `Recorder` folds the events of one (object, reason, action) into a series that
    /// keeps the first note, which would hide a later, different error of the same reason. So a
    /// note whose gist differs from the last one of its reason gets a recorder (an Event) of its
    /// own, and repeats of it still fold into that one's series. Only warnings repeat (a pass
    /// that fails again); each recorder (a client and a cache of whole Events, kilobytes) is
    /// dropped once it can fold nothing more.
    recorders: Mutex<Recorders>,
}

#[derive(Default)]
struct Recorders {
    by_reason: HashMap<(ObjectRef<EcsInstance>, Reason), NoteRecorder>,
    swept: Option<Instant>,
}

impl KubeCluster {
    pub fn new(client: Client) -> Self {
        KubeCluster {
            client,
            reporter: Reporter {
                controller: MANAGER.into(),
                instance: std::env::var("POD_NAME").ok(),
            },
            recorders: Mutex::default(),
        }
    }

    fn api(&self, resource: &EcsInstance) -> Api<EcsInstance> {
        Api::namespaced(
            self.client.clone(),
            &resource.namespace().unwrap_or_default(),
        )
    }

    fn recorder_for(
        &self,
        object: &ObjectRef<EcsInstance>,
        reason: Reason,
        note: &str,
    ) -> Recorder {
        let gist = gist(note);
        let now = Instant::now();
        let mut recorders = self.recorders.lock().expect("recorders lock");
        if recorders
            .swept
            .is_none_or(|swept| now.duration_since(swept) > RECORDER_KEPT / 6)
        {
            recorders.swept = Some(now);
            recorders
                .by_reason
                .retain(|_, (_, _, used)| now.duration_since(*used) < RECORDER_KEPT);
        }
        match recorders.by_reason.get_mut(&(object.clone(), reason)) {
            Some((last, recorder, used)) if *last == gist => {
                *used = now;
                recorder.clone()
            }
            _ => {
                let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
                recorders
                    .by_reason
                    .insert((object.clone(), reason), (gist, recorder.clone(), now));
                recorder
            }
        }
    }

    async fn emit(
        &self,
        recorder: &Recorder,
        resource: &EcsInstance,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &resource.object_ref(&())).await {
            warn!(%error, reason, "could not publish event");
        }
    }

    async fn apply_status(
        &self,
        resource: &EcsInstance,
        status: &EcsInstanceStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, kube::Error> {
        let mut patch = json!({
            "apiVersion": EcsInstance::api_version(&()),
            "kind": EcsInstance::kind(&()),
            "status": status,
        });
        if let Some(version) = resource_version {
            // Server-side apply honours a resourceVersion in the applied object as a
            // precondition: 409 Conflict if the object changed since.
            patch["metadata"] = json!({ "resourceVersion": version });
        }
        let written = self
            .api(resource)
            .patch_status(
                &resource.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(written.resource_version())
    }

    async fn json_patch<R>(
        &self,
        api: &Api<R>,
        name: &str,
        operations: serde_json::Value,
    ) -> Result<(), Error>
    where
        R: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let patch: json_patch::Patch =
            serde_json::from_value(operations).expect("the operations are a valid JSON patch");
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(|error| conflict_or(error, name))?;
        Ok(())
    }
}

/// A 409, or a 422 from a failed JSON patch `test`, is a change since the read.
fn conflict_or(error: kube::Error, what: &str) -> Error {
    match &error {
        kube::Error::Api(status) if status.code == 409 || status.code == 422 => {
            Error::Conflict(what.to_string())
        }
        _ => Error::Kube(error),
    }
}

impl Cluster for KubeCluster {
    async fn write_status(
        &self,
        resource: &EcsInstance,
        status: &EcsInstanceStatus,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let name = resource.name_any();
        let refused = match self.apply_status(resource, status, resource_version).await {
            Ok(version) => return Ok(version),
            Err(kube::Error::Api(refused)) if refused.code == 409 => {
                return Err(Error::Conflict(name));
            }
            // The API server refused the content (too large, invalid): write the essentials so
            // the resource never keeps a stale, healthy-looking status, and say so.
            Err(kube::Error::Api(refused)) if matches!(refused.code, 400 | 413 | 422) => refused,
            Err(error) => return Err(error.into()),
        };
        let note = format!(
            "The API server refused the status update ({}: {}); wrote a shortened status instead",
            refused.code,
            ecs_client::clean_text(&refused.message, 300)
        );
        warn!(resource = %ObjectRef::from_obj(resource), "{note}");
        let version = self
            .apply_status(resource, &shortened(status), resource_version)
            .await
            .map_err(|error| conflict_or(error, &name))?;
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        self.emit(
            &recorder,
            resource,
            EventType::Warning,
            "StatusWriteRefused",
            "Observe",
            &note,
        )
        .await;
        Ok(version)
    }

    async fn add_finalizer(&self, resource: &EcsInstance) -> Result<(), Error> {
        let operations = if resource.finalizers().is_empty() {
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
            ])
        } else {
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": resource.finalizers() },
                { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
            ])
        };
        self.json_patch(&self.api(resource), &resource.name_any(), operations)
            .await
    }

    async fn remove_finalizer(
        &self,
        resource: &EcsInstance,
        resource_version: Option<&str>,
    ) -> Result<(), Error> {
        let Some(index) = resource.finalizers().iter().position(|f| f == FINALIZER) else {
            return Ok(());
        };
        let path = format!("/metadata/finalizers/{index}");
        let mut operations = vec![
            json!({ "op": "test", "path": path, "value": FINALIZER }),
            json!({ "op": "remove", "path": path }),
        ];
        if let Some(version) = resource_version {
            operations.insert(
                0,
                json!({ "op": "test", "path": "/metadata/resourceVersion", "value": version }),
            );
        }
        self.json_patch(&self.api(resource), &resource.name_any(), operations.into())
            .await
    }

    async fn read_secret(&self, namespace: &str, name: &str) -> Result<Option<SecretRead>, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = secrets.get_opt(name).await? else {
            return Ok(None);
        };
        Ok(Some(SecretRead {
            protected: secret
                .finalizers()
                .iter()
                .any(|f| f == SECRET_IN_USE_FINALIZER),
            deleting: secret.metadata.deletion_timestamp.is_some(),
            data: secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0))
                .collect::<BTreeMap<_, _>>(),
        }))
    }

    async fn protect_secret(
        &self,
        namespace: &str,
        name: &str,
        protect: bool,
    ) -> Result<(), Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = secrets.get_metadata_opt(name).await? else {
            return Ok(());
        };
        let finalizers = secret.finalizers();
        let index = finalizers.iter().position(|f| f == SECRET_IN_USE_FINALIZER);
        let operations = match (protect, index) {
            (true, Some(_)) | (false, None) => return Ok(()),
            // No finalizer can be added once the Secret is being deleted.
            (true, None) if secret.metadata.deletion_timestamp.is_some() => return Ok(()),
            (true, None) if finalizers.is_empty() => json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [SECRET_IN_USE_FINALIZER] },
            ]),
            (true, None) => json!([
                { "op": "test", "path": "/metadata/finalizers", "value": finalizers },
                { "op": "add", "path": "/metadata/finalizers/-", "value": SECRET_IN_USE_FINALIZER },
            ]),
            (false, Some(index)) => {
                let path = format!("/metadata/finalizers/{index}");
                json!([
                    { "op": "test", "path": path, "value": SECRET_IN_USE_FINALIZER },
                    { "op": "remove", "path": path },
                ])
            }
        };
        self.json_patch(&secrets, name, operations).await
    }

    async fn publish(&self, resource: &EcsInstance, event: &EventSpec) {
        let object = ObjectRef::from_obj(resource);
        let type_ = if event.is_warning() {
            EventType::Warning
        } else {
            EventType::Normal
        };
        // A Normal event tells of a step, which happens once: nothing to fold it into.
        let recorder = if event.is_warning() {
            self.recorder_for(&object, event.reason, &event.note)
        } else {
            Recorder::new(self.client.clone(), self.reporter.clone())
        };
        self.emit(
            &recorder,
            resource,
            type_,
            event.reason.as_str(),
            event.action,
            &event.note,
        )
        .await;
    }

    fn forget(&self, object: &ObjectRef<EcsInstance>) {
        self.recorders
            .lock()
            .expect("recorders lock")
            .by_reason
            .retain(|(o, _), _| o != object);
    }
}

/// A note without its RequestIds and numbers: two errors with the same gist are the same error.
fn gist(note: &str) -> String {
    let mut words = Vec::new();
    let mut after_request_id = false;
    for word in note.split_whitespace() {
        if std::mem::take(&mut after_request_id) {
            continue;
        }
        if word.trim_start_matches('(').starts_with("RequestId") {
            after_request_id = true;
            continue;
        }
        if !word.chars().any(|c| c.is_ascii_digit()) {
            words.push(word);
        }
    }
    words.join(" ")
}

/// The status without `lastError` and with short condition messages: what must survive.
fn shortened(status: &EcsInstanceStatus) -> EcsInstanceStatus {
    let mut short = status.clone();
    short.last_error = None;
    for condition in &mut short.conditions {
        condition.message = ecs_client::clean_text(&condition.message, 256);
    }
    short
}

/// Event notes are limited to 1 kB.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gist_ignores_request_ids_and_numbers() {
        assert_eq!(
            gist("DeleteInstance failed: ServiceUnavailable: busy (RequestId A1-B2, HTTP 503)"),
            gist("DeleteInstance failed: ServiceUnavailable: busy (RequestId C3-D4, HTTP 503)")
        );
        assert_ne!(
            gist("DeleteInstance failed: ServiceUnavailable: busy"),
            gist("DeleteInstance failed: InternalError: oops")
        );
    }
}
