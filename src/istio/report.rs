//! The Events the router reports on a Rollout after a change, worded in one
//! place. Reasons are CamelCase like the controller's own
//! (`TrafficWeightUpdated`), and distinct from them: the controller reports
//! what it asked for, the plugin what it wrote and where.

use crate::cluster::{Cluster, EventType, ObjectKey, RolloutEvent};
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};

/// SetWeight changed weights in a VirtualService.
pub const WEIGHTS_UPDATED: &str = "VirtualServiceWeightsUpdated";
pub const HEADER_ROUTE_ADDED: &str = "HeaderRouteAdded";
pub const HEADER_ROUTE_REMOVED: &str = "HeaderRouteRemoved";
pub const MIRROR_ROUTE_ADDED: &str = "MirrorRouteAdded";
pub const MIRROR_ROUTE_REMOVED: &str = "MirrorRouteRemoved";
pub const MANAGED_ROUTES_REMOVED: &str = "ManagedRoutesRemoved";
/// UpdateHash pointed the DestinationRule's subsets at new ReplicaSets.
pub const SUBSETS_SWITCHED: &str = "DestinationRuleSubsetsSwitched";
/// UpdateHash held a subset switch back (a ReplicaSet it moves traffic to
/// is not ready).
pub const SUBSET_SWITCH_HELD: &str = "DestinationRuleSubsetSwitchHeld";

/// What one call changed (or held), before it is worded.
pub enum Change<'a> {
    Weights {
        canary: i32,
        additional: &'a [WeightDestination],
    },
    HeaderRoute(&'a SetHeaderRoute),
    MirrorRoute(&'a SetMirrorRoute),
    ManagedRoutesRemoved,
    SubsetsSwitched {
        canary_subset: &'a str,
        canary_hash: &'a str,
        stable_subset: &'a str,
        stable_hash: &'a str,
    },
    SwitchHeld {
        why: String,
    },
}

/// Reports `change` on the Rollout when `written` objects (of `objects`)
/// changed; a hold is reported regardless. Never fails.
pub async fn report<C: Cluster>(
    cluster: &C,
    rollout: &Rollout,
    objects: &[&ObjectKey],
    written: usize,
    change: Change<'_>,
) {
    if written == 0 && !matches!(change, Change::SwitchHeld { .. }) {
        return;
    }
    let mut where_ = objects
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if written < objects.len() && written > 0 {
        where_ = format!("{written} of {where_}");
    }
    let (event_type, reason, action, message) = match change {
        Change::Weights { canary, additional } => {
            let mut weights = format!("canary {canary}");
            for destination in additional.iter().filter(|d| !d.service_name.is_empty()) {
                weights.push_str(&format!(
                    ", {} {}",
                    destination.service_name, destination.weight
                ));
            }
            (
                EventType::Normal,
                WEIGHTS_UPDATED,
                "SetWeight",
                format!("Weights set to {weights} (stable: the rest) in {where_}"),
            )
        }
        Change::HeaderRoute(route) if route.matches.is_empty() => (
            EventType::Normal,
            HEADER_ROUTE_REMOVED,
            "SetHeaderRoute",
            format!("Header route '{}' removed from {where_}", route.name),
        ),
        Change::HeaderRoute(route) => (
            EventType::Normal,
            HEADER_ROUTE_ADDED,
            "SetHeaderRoute",
            format!("Header route '{}' set in {where_}", route.name),
        ),
        Change::MirrorRoute(route) if route.matches.is_empty() => (
            EventType::Normal,
            MIRROR_ROUTE_REMOVED,
            "SetMirrorRoute",
            format!("Mirror route '{}' removed from {where_}", route.name),
        ),
        Change::MirrorRoute(route) => (
            EventType::Normal,
            MIRROR_ROUTE_ADDED,
            "SetMirrorRoute",
            format!(
                "Mirror route '{}' set in {where_} ({}% mirrored to the canary)",
                route.name,
                route.percentage.unwrap_or(100)
            ),
        ),
        Change::ManagedRoutesRemoved => (
            EventType::Normal,
            MANAGED_ROUTES_REMOVED,
            "RemoveManagedRoutes",
            format!("Managed routes removed from {where_}"),
        ),
        Change::SubsetsSwitched {
            canary_subset,
            canary_hash,
            stable_subset,
            stable_hash,
        } => (
            EventType::Normal,
            SUBSETS_SWITCHED,
            "UpdateHash",
            format!(
                "Subsets of {where_} point at pod-template-hash {canary_subset}={}, {stable_subset}={}",
                or_none(canary_hash),
                or_none(stable_hash)
            ),
        ),
        Change::SwitchHeld { why } => (
            EventType::Warning,
            SUBSET_SWITCH_HELD,
            "UpdateHash",
            format!("Subset switch of {where_} held: {why}"),
        ),
    };
    let event = RolloutEvent {
        namespace: rollout.metadata.namespace.clone(),
        rollout: rollout.metadata.name.clone(),
        uid: rollout.metadata.uid.clone(),
        event_type,
        reason,
        action,
        message,
    };
    cluster.events(vec![event]).await;
}

fn or_none(hash: &str) -> &str {
    if hash.is_empty() { "(none)" } else { hash }
}
