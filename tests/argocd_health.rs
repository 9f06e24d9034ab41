//! The Argo CD health check in `gitops/argocd/ecs.alicloud.dev/EcsInstance/` (Argo CD's
//! `resource_customizations` layout) evaluated on every case of its `health_test.yaml`, the way
//! Argo CD runs it: the object as the global `obj`, numbers as floats (Argo CD's Lua has no
//! integers), only the base, string, table and math libraries.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use mlua::{Lua, LuaOptions, StdLib, Table};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: HealthStatus,
    input_path: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct HealthStatus {
    status: String,
    message: String,
}

fn check_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gitops/argocd/ecs.alicloud.dev/EcsInstance")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<mlua::Value> {
    Ok(match value {
        Value::Null => mlua::Value::Nil,
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Number(n) => mlua::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Array(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
        Value::Object(map) => {
            let table = lua.create_table()?;
            for (key, item) in map {
                table.raw_set(key.as_str(), to_lua(lua, item)?)?;
            }
            mlua::Value::Table(table)
        }
    })
}

/// Runs health.lua on one object in a fresh Lua state.
fn evaluate(script: &str, object: &Value) -> mlua::Result<HealthStatus> {
    let lua = Lua::new_with(
        StdLib::STRING | StdLib::TABLE | StdLib::MATH,
        LuaOptions::default(),
    )?;
    lua.globals().set("obj", to_lua(&lua, object)?)?;
    let result: Table = lua.load(script).set_name("health.lua").eval()?;
    Ok(HealthStatus {
        status: result.get("status")?,
        message: result.get("message")?,
    })
}

#[test]
fn every_case_of_health_test_yaml_gets_its_status_and_message() {
    let dir = check_dir();
    let script = read(&dir.join("health.lua"));
    let cases: HealthTests = serde_saphyr::from_str(&read(&dir.join("health_test.yaml")))
        .expect("parse health_test.yaml");
    assert!(!cases.tests.is_empty(), "health_test.yaml has no tests");

    let mut failures = Vec::new();
    for case in &cases.tests {
        let object: Value = serde_saphyr::from_str(&read(&dir.join(&case.input_path)))
            .unwrap_or_else(|e| panic!("parse {}: {e}", case.input_path));
        match evaluate(&script, &object) {
            Ok(actual) if actual == case.health_status => {}
            Ok(actual) => failures.push(format!(
                "{}: expected {:?}, got {actual:?}",
                case.input_path, case.health_status
            )),
            Err(e) => failures.push(format!("{}: health.lua failed: {e}", case.input_path)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.tests.len(),
        failures.join("\n")
    );

    let statuses: BTreeSet<&str> = cases
        .tests
        .iter()
        .map(|c| c.health_status.status.as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["Degraded", "Healthy", "Progressing"]),
        "every status the check can give is tested"
    );
}

#[test]
fn every_testdata_file_is_a_case_and_every_case_has_its_file() {
    let dir = check_dir();
    let cases: HealthTests = serde_saphyr::from_str(&read(&dir.join("health_test.yaml")))
        .expect("parse health_test.yaml");
    let referenced: BTreeSet<String> = cases.tests.iter().map(|c| c.input_path.clone()).collect();
    assert_eq!(
        referenced.len(),
        cases.tests.len(),
        "an inputPath is used twice"
    );
    let present: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
        .expect("read testdata/")
        .map(|entry| {
            format!(
                "testdata/{}",
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
            )
        })
        .collect();
    assert_eq!(referenced, present);
}
