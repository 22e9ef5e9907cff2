//! UpdateHash (see docs/behaviour.md): the DestinationRule's canary and stable subsets select
//! the ReplicaSets by pod-template-hash; experiment subsets come and go.

use serde_json::{Map, Value, json};

use super::json::type_name;
use super::{BUILT_IN_MANAGED_BY_ANNOTATION, CoreError, POD_TEMPLATE_HASH_LABEL};
use crate::istio::config::DestinationRuleRef;
use crate::model::ReplicaSetInfo;
use crate::model::{Rollout, WeightDestination};

/// Rewrites the subsets of one DestinationRule document; returns whether it
/// changed. Subsets that are neither canary, stable, a running experiment
/// nor listed in `additionalSubsetNames` are dropped (finished experiments).
pub fn update_destination_rule(
    doc: &mut Value,
    object: &str,
    reference: &DestinationRuleRef,
    canary_hash: &str,
    stable_hash: &str,
    additional: &[WeightDestination],
) -> Result<bool, CoreError> {
    let error = |message: String| CoreError::object(object, message);
    let subsets = match doc.pointer("/spec/subsets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(other) => {
            return Err(error(format!(
                "spec.subsets is {}, not a list",
                type_name(other)
            )));
        }
    };
    let mut present = vec![false; additional.len()];
    let mut kept = Vec::with_capacity(subsets.len() + additional.len());
    for (i, mut subset) in subsets.into_iter().enumerate() {
        let Some(fields) = subset.as_object_mut() else {
            return Err(error(format!(
                "spec.subsets[{i}] is {}, not an object",
                type_name(&subset)
            )));
        };
        let name = match fields.get("name") {
            Some(Value::String(name)) => name.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => {
                return Err(error(format!(
                    "spec.subsets[{i}].name is {}, not a string",
                    type_name(other)
                )));
            }
        };
        let label = if name == reference.canary_subset_name {
            Some(HashLabel::of_rollout(canary_hash))
        } else if name == reference.stable_subset_name {
            Some(HashLabel::of_rollout(stable_hash))
        } else if let Some(k) = additional.iter().position(|d| d.service_name == name) {
            // An experiment subset is present whatever its hash: no
            // duplicate subset when the hash is not known yet.
            present[k] = true;
            Some(HashLabel::Set(additional[k].pod_template_hash.as_str()))
        } else if reference
            .additional_subset_names
            .as_ref()
            .is_some_and(|names| names.contains(&name))
        {
            None
        } else {
            continue;
        };
        if let Some(label) = label {
            label
                .apply(fields)
                .map_err(|e| error(format!("spec.subsets[{i}].{e}")))?;
        }
        kept.push(subset);
    }
    for (destination, _) in additional
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
    {
        kept.push(json!({
            "name": destination.service_name,
            "labels": {POD_TEMPLATE_HASH_LABEL: destination.pod_template_hash},
        }));
    }

    let mut edited = doc.clone();
    let Some(root) = edited.as_object_mut() else {
        return Err(error(format!(
            "the object is {}, not an object",
            type_name(doc)
        )));
    };
    // Never the built-in's managed-by annotation: the controller's own
    // DestinationRule controller strips the hash labels from every
    // DestinationRule that carries it without being referenced by a
    // `trafficRouting.istio` block, which undoes this very edit (see
    // docs/behaviour.md, "UpdateHash"). One left by the built-in router is
    // removed, so switching to the plugin does not trigger that clean-up.
    if let Some(annotations) = root
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(BUILT_IN_MANAGED_BY_ANNOTATION);
    }
    let spec = object_field(root, "spec").map_err(error)?;
    // A DestinationRule without subsets keeps having none (nothing to pin).
    if spec.contains_key("subsets") || !kept.is_empty() {
        spec.insert("subsets".into(), Value::Array(kept));
    }

    let changed = edited != *doc;
    *doc = edited;
    Ok(changed)
}

/// What UpdateHash does to a subset's pod-template-hash label.
enum HashLabel<'a> {
    Set(&'a str),
    Remove,
}

impl<'a> HashLabel<'a> {
    /// Canary and stable subsets lose the label when the hash is empty, as
    /// in the built-in. Experiment subsets always get it, even empty: a
    /// subset whose ReplicaSet is not known yet selects no pods (rather than
    /// every pod of the host), and a repeated call changes nothing.
    fn of_rollout(hash: &'a str) -> Self {
        if hash.is_empty() {
            HashLabel::Remove
        } else {
            HashLabel::Set(hash)
        }
    }

    /// Edits `subset`, creating `labels` when absent or null.
    fn apply(self, subset: &mut Map<String, Value>) -> Result<(), String> {
        match self {
            HashLabel::Remove => {
                if let Some(Value::Object(labels)) = subset.get_mut("labels") {
                    labels.shift_remove(POD_TEMPLATE_HASH_LABEL);
                }
            }
            HashLabel::Set(hash) => {
                object_field(subset, "labels")?.insert(POD_TEMPLATE_HASH_LABEL.into(), json!(hash));
            }
        }
        Ok(())
    }
}

/// `map[key]` as an object, created when absent or null.
fn object_field<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, String> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if slot.is_null() {
        *slot = json!({});
    }
    let found = type_name(slot);
    slot.as_object_mut()
        .ok_or_else(|| format!("{key} is {found}, not an object"))
}

/// The switch delay: refuses to point a subset at a ReplicaSet that is not fully
/// available yet. Skips the canary ReplicaSet when the rollout is aborted or
/// dynamically rolling back to stable.
pub fn check_switch_delay(
    rollout: &Rollout,
    canary_hash: &str,
    stable_hash: &str,
    replica_sets: &[ReplicaSetInfo],
) -> Result<(), CoreError> {
    let abort_or_rollback =
        rollout.status.abort || rolling_back_to_stable(rollout, stable_hash, replica_sets);
    for rs in replica_sets {
        if rs.spec_replicas == Some(0) {
            continue;
        }
        let hash = rs.pod_template_hash.as_str();
        if hash.is_empty() || (hash != canary_hash && hash != stable_hash) {
            continue;
        }
        if abort_or_rollback && hash == canary_hash {
            continue;
        }
        let available = rs.spec_replicas.is_some_and(|replicas| {
            replicas != 0 && rs.available_replicas != 0 && replicas <= rs.available_replicas
        });
        if !available {
            return Err(CoreError::SwitchDelayed {
                replica_set: rs.name.clone(),
            });
        }
    }
    Ok(())
}

/// Fully promoted, dynamicStableScale, and the stable ReplicaSet is not yet
/// back to full size while the weights still point at an older canary.
fn rolling_back_to_stable(
    rollout: &Rollout,
    stable_hash: &str,
    replica_sets: &[ReplicaSetInfo],
) -> bool {
    let status = &rollout.status;
    let Some(canary) = rollout.canary() else {
        return false;
    };
    if status.stable_rs != status.current_pod_hash
        || !canary.dynamic_stable_scale
        || canary.traffic_routing.is_none()
    {
        return false;
    }
    let Some(weights) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) else {
        return false;
    };
    let Some(stable_rs) = replica_sets
        .iter()
        .find(|rs| rs.pod_template_hash == stable_hash)
    else {
        return false;
    };
    weights.canary.pod_template_hash != stable_rs.pod_template_hash
        && stable_rs.available_replicas < rollout.spec.replicas.unwrap_or(1)
}
