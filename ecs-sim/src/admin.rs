//! The test-only admin interface under `/_sim/` (JSON in and out, no signature). See the README.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use crate::accounts::Account;
use crate::encoding::decode_pairs;
use crate::faults::FaultRules;
use crate::metadata;
use crate::model::{Instance, InstancePatch, InstanceSpec, check_admin_tags};
use crate::state::Sim;

pub struct AdminResponse {
    pub status: u16,
    pub body: Value,
}

fn ok(body: Value) -> AdminResponse {
    AdminResponse { status: 200, body }
}

fn error(status: u16, message: impl Into<String>) -> AdminResponse {
    AdminResponse {
        status,
        body: json!({ "error": message.into() }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminResponse> {
    serde_json::from_slice(body).map_err(|e| error(400, format!("invalid JSON body: {e}")))
}

/// Seeds instances (admin API and `--seed` file).
pub fn seed(sim: &Sim, specs: Vec<InstanceSpec>) -> Result<usize, String> {
    if let Some(bad) = specs
        .iter()
        .find(|s| s.instance_id.is_empty() || s.region_id.is_empty())
    {
        return Err(format!(
            "instanceId and regionId must not be empty (instance {:?})",
            bad.instance_id
        ));
    }
    for spec in &specs {
        check_admin_tags(&spec.tags)
            .map_err(|e| format!("instance {:?}: {e}", spec.instance_id))?;
    }
    let count = specs.len();
    let now = Instant::now();
    let mut state = sim.lock();
    for spec in specs {
        state.store.insert(spec, now);
    }
    Ok(count)
}

fn instance_json(instance: &Instance) -> Value {
    let mut value = serde_json::to_value(&instance.spec).expect("an instance spec serialises");
    value["released"] = json!(instance.is_released());
    value
}

pub fn handle(sim: &Sim, method: &str, path: &str, query: &str, body: &[u8]) -> AdminResponse {
    let segments: Vec<&str> = path
        .trim_start_matches("/_sim")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let result = match (method, segments.as_slice()) {
        ("GET", ["health"]) => Ok(ok(json!({ "status": "ok" }))),
        ("POST", ["instances"]) => parse::<Vec<InstanceSpec>>(body).and_then(|specs| {
            seed(sim, specs)
                .map(|count| ok(json!({ "seeded": count })))
                .map_err(|e| error(400, e))
        }),
        ("GET", ["instances", id]) => Ok(with_instance(sim, id, |i| ok(instance_json(i)))),
        ("PATCH", ["instances", id]) => parse::<InstancePatch>(body).and_then(|patch| {
            if let Some(tags) = &patch.tags {
                check_admin_tags(tags).map_err(|e| error(400, e))?;
            }
            Ok(with_instance(sim, id, |instance| {
                instance.apply(patch, Instant::now());
                ok(instance_json(instance))
            }))
        }),
        ("GET", ["instances", id, "tags"]) => Ok(with_instance(sim, id, |instance| {
            ok(json!(instance.spec.tags))
        })),
        ("PUT", ["instances", id, "tags"]) => {
            parse::<BTreeMap<String, String>>(body).and_then(|tags| {
                check_admin_tags(&tags).map_err(|e| error(400, e))?;
                Ok(with_instance(sim, id, |instance| {
                    instance.spec.tags = tags;
                    ok(json!(instance.spec.tags))
                }))
            })
        }
        ("GET", ["regions"]) => {
            let state = sim.lock();
            let mut regions = state.regions.all();
            regions.extend(state.store.seeded_regions().iter().cloned());
            Ok(ok(json!(regions)))
        }
        ("DELETE", ["instances", id]) => {
            let removed = sim.lock().store.remove(id);
            Ok(ok(json!({ "removed": removed })))
        }
        ("GET", ["calls"]) => calls(sim, query),
        ("DELETE", ["calls"]) => {
            sim.lock().calls.clear();
            Ok(ok(json!({})))
        }
        ("PUT", ["faults"]) => parse::<FaultRules>(body).and_then(|rules| {
            rules.validate().map_err(|e| error(400, e))?;
            sim.lock().faults.replace(rules.rules);
            Ok(ok(json!({})))
        }),
        ("DELETE", ["faults"]) => {
            sim.lock().faults.clear();
            Ok(ok(json!({})))
        }
        ("POST", ["accounts"]) => parse::<Account>(body).and_then(|account| {
            account.validate().map_err(|e| error(400, e))?;
            sim.lock()
                .accounts
                .insert(account.access_key_id.clone(), account);
            Ok(ok(json!({})))
        }),
        ("DELETE", ["accounts", access_key_id]) => {
            let removed = sim.lock().accounts.remove(*access_key_id).is_some();
            Ok(ok(json!({ "removed": removed })))
        }
        ("GET", ["sts", "sessions"]) => {
            let state = sim.lock();
            let now = jiff::Timestamp::now();
            let sessions: Vec<Value> = state
                .sessions
                .list()
                .into_iter()
                .map(|s| s.summary(now))
                .collect();
            Ok(ok(json!(sessions)))
        }
        ("POST", ["sts", "sessions", access_key_id, "expire"]) => {
            let expired = sim
                .lock()
                .sessions
                .expire(access_key_id, jiff::Timestamp::now());
            if expired {
                Ok(ok(json!({ "expired": true })))
            } else {
                Err(error(404, format!("no session {access_key_id}")))
            }
        }
        ("DELETE", ["sts", "sessions", access_key_id]) => {
            let removed = sim.lock().sessions.remove(access_key_id);
            Ok(ok(json!({ "removed": removed })))
        }
        ("POST", ["metadata", "rotate"]) => {
            let mut state = sim.lock();
            match state.iam.metadata_role.clone() {
                Some(role) => {
                    let access_key_id = metadata::issue(&mut state, &sim.timing, &role);
                    Ok(ok(json!({ "accessKeyId": access_key_id })))
                }
                None => Err(error(404, "no metadata role is configured")),
            }
        }
        ("POST", ["reset"]) => {
            sim.lock().reset();
            Ok(ok(json!({})))
        }
        _ => Err(error(404, format!("no admin endpoint {method} {path}"))),
    };
    result.unwrap_or_else(|e| e)
}

fn with_instance(
    sim: &Sim,
    id: &str,
    f: impl FnOnce(&mut Instance) -> AdminResponse,
) -> AdminResponse {
    let mut state = sim.lock();
    match state
        .store
        .get_mut(id, Instant::now(), sim.timing.transition)
    {
        Some(instance) => f(instance),
        None => error(404, format!("no instance {id}")),
    }
}

fn calls(sim: &Sim, query: &str) -> Result<AdminResponse, AdminResponse> {
    let pairs = decode_pairs(query).map_err(|_| error(400, "malformed query string"))?;
    let action = pairs
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.as_str());
    let state = sim.lock();
    let records = state.calls.filtered(action);
    Ok(ok(
        serde_json::to_value(records).expect("call records serialise")
    ))
}
