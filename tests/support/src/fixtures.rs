//! Fixtures: a host-split Rollout and its VirtualService, ready-made call
//! arguments, and the recorded controller bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gobwire::Interface;
use istio_router::transport::netrpc::gob::split_message;

use crate::go_args::*;

/// A host-split Rollout `ns/name` using VirtualService `<name>-vsvc`.
pub fn rollout(namespace: &str, name: &str) -> Rollout {
    let config = format!(r#"{{"virtualService":{{"name":"{name}-vsvc","routes":["primary"]}}}}"#);
    Rollout {
        type_meta: TypeMeta {
            kind: "Rollout".into(),
            api_version: "argoproj.io/v1alpha1".into(),
        },
        object_meta: ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..ObjectMeta::default()
        },
        spec: RolloutSpec {
            strategy: RolloutStrategy {
                canary: Some(CanaryStrategy {
                    canary_service: format!("{name}-canary"),
                    stable_service: format!("{name}-stable"),
                    traffic_routing: Some(RolloutTrafficRouting {
                        plugins: BTreeMap::from([(
                            "argoproj-labs/istio".to_string(),
                            config.into_bytes(),
                        )]),
                        ..RolloutTrafficRouting::default()
                    }),
                    ..CanaryStrategy::default()
                }),
            },
            ..RolloutSpec::default()
        },
        ..Rollout::default()
    }
}

/// The VirtualService [`rollout`] points at, all traffic on stable.
pub fn virtual_service(namespace: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": format!("{name}-vsvc"), "namespace": namespace},
        "spec": {
            "hosts": [format!("{name}.example.com")],
            "http": [{
                "name": "primary",
                "route": [
                    {"destination": {"host": format!("{name}-stable")}, "weight": 100},
                    {"destination": {"host": format!("{name}-canary")}, "weight": 0}
                ]
            }]
        }
    })
}

pub fn set_weight_args(namespace: &str, name: &str, weight: i32) -> Option<Interface> {
    Some(
        Interface::new(
            "SetWeightAndVerifyWeightArgs",
            &SetWeightAndVerifyWeightArgs {
                rollout: rollout(namespace, name),
                desired_weight: weight,
                additional_destinations: Vec::new(),
            },
        )
        .unwrap(),
    )
}

pub fn remove_managed_routes_args(namespace: &str, name: &str) -> Option<Interface> {
    Some(
        Interface::new(
            "RemoveManagedRoutesArgs",
            &RemoveManagedRoutesArgs {
                rollout: rollout(namespace, name),
            },
        )
        .unwrap(),
    )
}

/// The recorded controller bytes: `tests/fixtures/real-controller` of the
/// plugin crate (see its README.md for what they are and how to record
/// them again).
pub fn fixtures() -> PathBuf {
    crate::plugin_crate_dir().join("tests/fixtures/real-controller")
}

/// Splits a recorded gob byte stream into its message bodies.
pub fn gob_messages(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (start, len) = split_message(&bytes[pos..])
            .map_err(|e| format!("framing at byte {pos}: {e}"))?
            .ok_or_else(|| format!("a truncated message at byte {pos}"))?;
        out.push(&bytes[pos + start..pos + start + len]);
        pos += start + len;
    }
    Ok(out)
}
