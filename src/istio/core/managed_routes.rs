//! Removing and ordering routes, and RemoveManagedRoutes (see "Route order
//! and removal" in docs/behaviour.md).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::json::{self, RouteKind};
use super::{CoreError, VirtualServiceContext};
use crate::istio::config::RouterConfig;
use crate::model::Rollout;

/// Removes every HTTP route whose name is `name` (an empty name removes the
/// unnamed routes, as the built-in does). Fails when `spec.http` is
/// missing. Returns whether anything was removed.
pub fn remove_route(doc: &mut Value, name: &str) -> Result<bool, String> {
    remove_routes_where(doc, |route_name| route_name == name)
}

fn remove_routes_where(doc: &mut Value, doomed: impl Fn(&str) -> bool) -> Result<bool, String> {
    let routes = json::http_routes_required(doc)?;
    json::check_route_objects(routes, RouteKind::Http)?;
    let before = routes.len();
    let Some(routes) = json::routes_mut(doc, RouteKind::Http) else {
        return Err("spec.http not found".into());
    };
    routes.retain(|route| !doomed(json::route_name(route)));
    Ok(routes.len() != before)
}

/// Where a step's route goes before the managedRoutes ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Mirror routes: before everything, so they see requests first.
    First,
    /// Header routes: after everything (managedRoutes ordering then lifts them).
    Last,
}

/// Replaces the HTTP routes named `name` by `new_routes` (in that order;
/// only removes them when it is empty), then orders by managedRoutes.
/// Returns whether the document changed; on error it is left untouched.
pub fn replace_named_route(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    name: &str,
    new_routes: Vec<Value>,
    placement: Placement,
) -> Result<bool, CoreError> {
    let mut edited = doc.clone();
    remove_route(&mut edited, name).map_err(|e| ctx.error(e))?;
    if let Some(routes) = json::routes_mut(&mut edited, RouteKind::Http) {
        match placement {
            Placement::First => {
                routes.splice(0..0, new_routes);
            }
            Placement::Last => routes.extend(new_routes),
        }
    }
    order_routes(&mut edited, ctx.config).map_err(|e| ctx.error(e))?;
    let changed = edited != *doc;
    *doc = edited;
    Ok(changed)
}

/// Puts the managed routes first, in `managedRoutes` order, then the others
/// in their current order. Each route appears exactly once, whatever the
/// names. Without `managedRoutes` the order is left alone.
pub fn order_routes(doc: &mut Value, config: &RouterConfig) -> Result<(), String> {
    let Some(managed) = &config.managed_routes else {
        return Ok(());
    };
    json::check_route_objects(json::http_routes_required(doc)?, RouteKind::Http)?;
    let Some(routes) = json::routes_mut(doc, RouteKind::Http) else {
        return Err("spec.http not found".into());
    };
    // Rank of each managed name (its first position), then one stable sort:
    // managed routes by rank, the others after them in their current order.
    let mut rank: HashMap<&str, usize> = HashMap::with_capacity(managed.len());
    for name in managed {
        let next = rank.len();
        rank.entry(name.as_str()).or_insert(next);
    }
    let mut keyed: Vec<(usize, Value)> = routes
        .drain(..)
        .map(|route| {
            let key = rank
                .get(json::route_name(&route))
                .copied()
                .unwrap_or(usize::MAX);
            (key, route)
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    routes.extend(keyed.into_iter().map(|(_, route)| route));
    Ok(())
}

/// Deletes the routes the rollout's steps created and the managed routes
/// A VirtualService without HTTP routes is left alone (the caller goes on
/// with the next one). Returns whether anything changed.
pub fn remove_managed_routes(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    rollout: &Rollout,
) -> Result<bool, CoreError> {
    if json::routes(doc, RouteKind::Http)
        .map_err(|e| ctx.error(e))?
        .is_none()
    {
        return Ok(false);
    }
    let mut doomed: BTreeSet<&str> = rollout
        .canary()
        .map(|canary| canary.steps.as_slice())
        .unwrap_or_default()
        .iter()
        .flat_map(|step| {
            let header = step.set_header_route.as_ref().map(|r| r.name.as_str());
            let mirror = step.set_mirror_route.as_ref().map(|r| r.name.as_str());
            header.into_iter().chain(mirror)
        })
        .collect();
    if let Some(managed) = &ctx.config.managed_routes {
        doomed.extend(managed.iter().map(String::as_str));
    }
    remove_routes_where(doc, |name| doomed.contains(name)).map_err(|e| ctx.error(e))
}
