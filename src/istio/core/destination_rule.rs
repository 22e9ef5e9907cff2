//! UpdateHash (see docs/behaviour.md): the DestinationRule's canary and stable subsets select
//! the ReplicaSets by pod-template-hash; experiment subsets come and go.

use serde_json::{Map, Value, json};

use super::json::type_name;
use super::{BUILT_IN_MANAGED_BY_ANNOTATION, CoreError, POD_TEMPLATE_HASH_LABEL};
use crate::istio::config::DestinationRuleRef;
use crate::model::ReplicaSetInfo;
use crate::model::{Rollout, WeightDestination};

/// What UpdateHash does to the canary or the stable subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsetSwitch<'a> {
    /// Point it at this hash (an empty hash removes the label).
    To(&'a str),
    /// Leave it as it is: the ReplicaSet it would move to is not ready.
    Hold,
}

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
    update_destination_rule_holding(
        doc,
        object,
        reference,
        SubsetSwitch::To(canary_hash),
        SubsetSwitch::To(stable_hash),
        additional,
    )
}

/// [`update_destination_rule`], with the canary and stable subsets each
/// switched or held. The canary and stable subsets must exist.
pub fn update_destination_rule_holding(
    doc: &mut Value,
    object: &str,
    reference: &DestinationRuleRef,
    canary: SubsetSwitch<'_>,
    stable: SubsetSwitch<'_>,
    additional: &[WeightDestination],
) -> Result<bool, CoreError> {
    let error = |message: String| CoreError::object(object, message);
    check_subsets(doc, object, reference)?;
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
            switched(canary)
        } else if name == reference.stable_subset_name {
            switched(stable)
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

/// The label edit for a canary or stable subset; `None` when held.
fn switched(switch: SubsetSwitch<'_>) -> Option<HashLabel<'_>> {
    match switch {
        SubsetSwitch::To(hash) => Some(HashLabel::of_rollout(hash)),
        SubsetSwitch::Hold => None,
    }
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

/// The names of a DestinationRule's subsets, in order.
fn subset_names(doc: &Value) -> Result<Vec<&str>, String> {
    match doc.pointer("/spec/subsets") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, subset)| match subset.get("name") {
                Some(Value::String(name)) => Ok(name.as_str()),
                None | Some(Value::Null) => Ok(""),
                Some(other) => Err(format!(
                    "spec.subsets[{i}].name is {}, not a string",
                    type_name(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!("spec.subsets is {}, not a list", type_name(other))),
    }
}

/// The configured canary and stable subsets must exist in the
/// DestinationRule: Istio answers 503 for traffic sent to a subset it does
/// not know. The error names the DestinationRule (`object`) and the subsets
/// it has.
pub fn check_subsets(
    doc: &Value,
    object: &str,
    reference: &DestinationRuleRef,
) -> Result<(), CoreError> {
    let names = subset_names(doc).map_err(|e| CoreError::object(object, e))?;
    let missing: Vec<String> = [
        ("canarySubsetName", &reference.canary_subset_name),
        ("stableSubsetName", &reference.stable_subset_name),
    ]
    .into_iter()
    .filter(|(_, name)| !names.contains(&name.as_str()))
    .map(|(field, name)| format!("'{name}' (destinationRule.{field})"))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let present: Vec<&str> = names.into_iter().filter(|n| !n.is_empty()).collect();
    let present = if present.is_empty() {
        "it has no subsets".to_string()
    } else {
        format!("its subsets: {}", present.join(", "))
    };
    Err(CoreError::object(
        object,
        format!(
            "no subset {}; {present}. Istio would answer 503 for the traffic sent there: add the subset or fix the name",
            missing.join(" and no subset ")
        ),
    ))
}

/// Which subset a hold is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Canary,
    Stable,
}

/// A subset switch UpdateHash holds back: the ReplicaSet it would send the
/// subset's traffic to is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub role: Role,
    pub subset: String,
    pub hash: String,
    pub replica_set: String,
    pub spec_replicas: Option<i32>,
    pub available_replicas: i32,
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "holding subset '{}' on its current pods: ReplicaSet {} (hash {}) ",
            self.subset, self.replica_set, self.hash
        )?;
        match self.spec_replicas {
            Some(replicas) if replicas > 0 => write!(
                f,
                "has {} of {replicas} replicas available",
                self.available_replicas
            ),
            _ => write!(f, "has not been scaled up yet (0 replicas)"),
        }
    }
}

/// The subsets UpdateHash would point at a new hash: `(role, subset,
/// hash)` for the canary and stable subsets whose label differs from a
/// non-empty target hash.
fn pending_switches<'a>(
    doc: &Value,
    reference: &'a DestinationRuleRef,
    canary_hash: &'a str,
    stable_hash: &'a str,
) -> Vec<(Role, &'a str, &'a str)> {
    let current = |subset: &str| {
        doc.pointer("/spec/subsets")
            .and_then(Value::as_array)
            .and_then(|list| {
                list.iter()
                    .find(|s| s.get("name").and_then(Value::as_str) == Some(subset))
            })
            .and_then(|s| s.pointer("/labels/rollouts-pod-template-hash"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    [
        (
            Role::Canary,
            reference.canary_subset_name.as_str(),
            canary_hash,
        ),
        (
            Role::Stable,
            reference.stable_subset_name.as_str(),
            stable_hash,
        ),
    ]
    .into_iter()
    .filter(|(_, subset, hash)| !hash.is_empty() && current(subset).as_deref() != Some(*hash))
    .collect()
}

/// Whether UpdateHash needs the ReplicaSets at all: only when it would move
/// the canary or stable subset to another hash.
pub fn switches_pending(
    doc: &Value,
    reference: &DestinationRuleRef,
    canary_hash: &str,
    stable_hash: &str,
) -> bool {
    !pending_switches(doc, reference, canary_hash, stable_hash).is_empty()
}

/// The switches to hold back. A switch is held only while a ReplicaSet it
/// moves traffic to exists and none with that hash is ready (every
/// desired replica available, and at least one desired): a ReplicaSet not
/// yet scaled up is not ready. A subset that keeps its hash never waits,
/// so a degraded stable ReplicaSet does not hold the canary subset. The
/// canary subset is never held while the Rollout is aborted or dynamically
/// rolling back to stable (its weight is going to 0).
pub fn switch_holds(
    doc: &Value,
    reference: &DestinationRuleRef,
    rollout: &Rollout,
    canary_hash: &str,
    stable_hash: &str,
    replica_sets: &[ReplicaSetInfo],
) -> Vec<Hold> {
    let abort_or_rollback =
        rollout.status.abort || rolling_back_to_stable(rollout, stable_hash, replica_sets);
    let ready = |rs: &ReplicaSetInfo| {
        rs.spec_replicas
            .is_some_and(|replicas| replicas > 0 && rs.available_replicas >= replicas)
    };
    let mut holds = Vec::new();
    for (role, subset, hash) in pending_switches(doc, reference, canary_hash, stable_hash) {
        if role == Role::Canary && abort_or_rollback {
            continue;
        }
        let candidates: Vec<&ReplicaSetInfo> = replica_sets
            .iter()
            .filter(|rs| rs.pod_template_hash == hash)
            .collect();
        if candidates.is_empty() || candidates.iter().any(|rs| ready(rs)) {
            continue;
        }
        // The one closest to serving names the hold.
        let Some(rs) = candidates
            .into_iter()
            .max_by_key(|rs| (rs.spec_replicas.unwrap_or(0), rs.available_replicas))
        else {
            continue;
        };
        holds.push(Hold {
            role,
            subset: subset.to_string(),
            hash: hash.to_string(),
            replica_set: rs.name.clone(),
            spec_replicas: rs.spec_replicas,
            available_replicas: rs.available_replicas,
        });
    }
    holds
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> DestinationRuleRef {
        DestinationRuleRef {
            name: "dr".into(),
            canary_subset_name: "canary".into(),
            stable_subset_name: "stable".into(),
            additional_subset_names: None,
        }
    }

    fn dr(canary: &str, stable: &str) -> Value {
        json!({"spec": {"subsets": [
            {"name": "canary", "labels": {POD_TEMPLATE_HASH_LABEL: canary}},
            {"name": "stable", "labels": {POD_TEMPLATE_HASH_LABEL: stable}},
        ]}})
    }

    fn rs(name: &str, hash: &str, replicas: i32, available: i32) -> ReplicaSetInfo {
        ReplicaSetInfo {
            name: name.into(),
            pod_template_hash: hash.into(),
            spec_replicas: Some(replicas),
            available_replicas: available,
        }
    }

    fn rollout(aborted: bool) -> Rollout {
        Rollout::from_json(json!({
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"strategy": {"canary": {}}},
            "status": {"abort": aborted},
        }))
        .unwrap()
    }

    #[test]
    fn a_hold_names_the_replica_set_and_its_availability() {
        // Both subsets on s1; the canary moves to c1.
        let holds_for = |sets: &[ReplicaSetInfo]| {
            switch_holds(
                &dr("s1", "s1"),
                &reference(),
                &rollout(false),
                "c1",
                "s1",
                sets,
            )
        };
        let holds = holds_for(&[rs("r-c1", "c1", 3, 1), rs("r-s1", "s1", 3, 3)]);
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].role, Role::Canary);
        assert_eq!(
            holds[0].to_string(),
            "holding subset 'canary' on its current pods: ReplicaSet r-c1 (hash c1) has 1 of 3 replicas available"
        );
        let holds = holds_for(&[rs("r-c1", "c1", 0, 0), rs("r-s1", "s1", 3, 3)]);
        assert_eq!(
            holds[0].to_string(),
            "holding subset 'canary' on its current pods: ReplicaSet r-c1 (hash c1) has not been scaled up yet (0 replicas)"
        );
    }

    #[test]
    fn only_a_replica_set_a_switch_moves_to_is_waited_on() {
        // The stable ReplicaSet is degraded, but the stable subset keeps its hash.
        let sets = [rs("r-c1", "c1", 1, 1), rs("r-s1", "s1", 3, 0)];
        let no_holds = switch_holds(
            &dr("s1", "s1"),
            &reference(),
            &rollout(false),
            "c1",
            "s1",
            &sets,
        );
        assert_eq!(no_holds, vec![]);
        // Nothing moves: the ReplicaSets are not even needed.
        assert!(!switches_pending(&dr("c1", "s1"), &reference(), "c1", "s1"));
        // Aborted: the canary is not held.
        let sets = [rs("r-c1", "c1", 3, 0)];
        assert_eq!(
            switch_holds(
                &dr("s1", "s1"),
                &reference(),
                &rollout(true),
                "c1",
                "s1",
                &sets
            ),
            vec![]
        );
        // A ReplicaSet the plugin cannot see is not waited on.
        assert_eq!(
            switch_holds(
                &dr("s1", "s1"),
                &reference(),
                &rollout(false),
                "c9",
                "s1",
                &sets
            ),
            vec![]
        );
    }

    #[test]
    fn a_held_subset_keeps_its_label_and_the_other_moves() {
        let mut doc = dr("s0", "s0");
        let changed = update_destination_rule_holding(
            &mut doc,
            "DestinationRule ns/dr",
            &reference(),
            SubsetSwitch::Hold,
            SubsetSwitch::To("s1"),
            &[],
        )
        .unwrap();
        assert!(changed);
        assert_eq!(doc, dr("s0", "s1"));
    }

    #[test]
    fn a_missing_subset_is_an_error_naming_the_subsets_there_are() {
        let doc = json!({"spec": {"subsets": [{"name": "stable"}, {"name": "v1"}]}});
        assert_eq!(
            check_subsets(&doc, "DestinationRule ns/dr", &reference())
                .unwrap_err()
                .to_string(),
            "DestinationRule ns/dr: no subset 'canary' (destinationRule.canarySubsetName); its subsets: stable, v1. Istio would answer 503 for the traffic sent there: add the subset or fix the name"
        );
    }
}
