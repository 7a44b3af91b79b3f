//! Every property the Compose spec's schema (tests/compose-spec.json, from
//! compose-spec/compose-spec) defines at the levels berth reads is in berth's
//! key tables: honoured or warned, never an "unknown key".

use std::path::Path;

use berth_compose::keys::{self, Table};
use serde_json::Value;

fn properties(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{pointer} is in the schema"))
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_spec_key_is_honoured_or_warned() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose-spec.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let levels: [(&str, Table); 13] = [
        ("/properties", keys::TOP),
        ("/definitions/service/properties", keys::SERVICE),
        ("/definitions/deployment/properties", keys::DEPLOY),
        (
            "/definitions/deployment/properties/resources/properties",
            keys::RESOURCES,
        ),
        (
            "/definitions/deployment/properties/resources/properties/limits/properties",
            keys::LIMITS,
        ),
        (
            "/definitions/deployment/properties/resources/properties/reservations/properties",
            keys::RESERVATIONS,
        ),
        (
            "/definitions/deployment/properties/placement/properties",
            keys::PLACEMENT,
        ),
        (
            "/definitions/deployment/properties/restart_policy/properties",
            keys::RESTART_POLICY,
        ),
        ("/definitions/healthcheck/properties", keys::HEALTHCHECK),
        ("/definitions/network/properties", keys::NETWORK),
        ("/definitions/volume/properties", keys::VOLUME),
        ("/definitions/config/properties", keys::CONFIG),
        ("/definitions/secret/properties", keys::SECRET),
    ];
    let mut missing = Vec::new();
    for (pointer, table) in levels {
        for key in properties(&schema, pointer) {
            if keys::handling(table, &key).is_none() {
                missing.push(format!("{pointer}: {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys of the spec berth neither honours nor warns about: {missing:#?}"
    );
}
