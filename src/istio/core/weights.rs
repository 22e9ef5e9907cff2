//! SetWeight (see docs/behaviour.md): stable = max(0, T − desired −
//! Σ additional − Σ current additional-subset weights), T = maxTrafficWeight.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::json::{self, RouteKind};
use super::managed_routes::order_routes;
use super::selection::{self, short_host};
use super::{CoreError, VirtualServiceContext};
use crate::model::WeightDestination;

/// The arguments of a SetWeight / VerifyWeight call, checked once.
#[derive(Debug, Clone, Copy)]
pub struct WeightRequest<'a> {
    pub desired: i64,
    pub additional: &'a [WeightDestination],
}

impl<'a> WeightRequest<'a> {
    /// Rejects weights outside `0..=max_weight` and repeated experiment
    /// services before any object is read.
    pub fn new(
        desired: i32,
        additional: &'a [WeightDestination],
        max_weight: i64,
    ) -> Result<Self, CoreError> {
        let desired = i64::from(desired);
        if !(0..=max_weight).contains(&desired) {
            return Err(CoreError::Argument(format!(
                "desired weight {desired} is outside 0..={max_weight} (maxTrafficWeight)"
            )));
        }
        check_additional_names(additional)?;
        let mut seen = BTreeSet::new();
        for destination in additional {
            let weight = i64::from(destination.weight);
            if !(0..=max_weight).contains(&weight) {
                return Err(CoreError::Argument(format!(
                    "additional destination '{}' has weight {weight}, outside 0..={max_weight}",
                    destination.service_name
                )));
            }
            if !destination.service_name.is_empty()
                && !seen.insert(destination.service_name.as_str())
            {
                return Err(CoreError::Argument(format!(
                    "additional destination '{}' is listed more than once",
                    destination.service_name
                )));
            }
        }
        Ok(WeightRequest {
            desired,
            additional,
        })
    }
}

/// An additional destination without a Service name but with traffic would
/// send that share nowhere (Istio has no host to route it to): refused.
/// One of weight 0 carries no traffic and stays a no-op.
pub fn check_additional_names(additional: &[WeightDestination]) -> Result<(), CoreError> {
    match additional
        .iter()
        .position(|d| d.service_name.is_empty() && d.weight != 0)
    {
        Some(i) => Err(CoreError::Argument(format!(
            "additionalDestinations[{i}] has an empty serviceName and weight {}: that share of traffic would go to no Service; name the experiment's Service or give it weight 0",
            additional[i].weight
        ))),
        None => Ok(()),
    }
}

/// Applies SetWeight to one VirtualService document; returns whether it
/// changed. Validation runs first, so an error leaves `doc` untouched.
pub fn set_weight(
    doc: &mut Value,
    ctx: &VirtualServiceContext<'_>,
    request: WeightRequest<'_>,
) -> Result<bool, CoreError> {
    // Validation selects the routes; the edit reuses that selection.
    let selection = selection::validate(doc, ctx).map_err(|e| ctx.error(e))?;
    let mut edited = doc.clone();
    let mut changed = false;
    for (kind, selected) in RouteKind::ALL.into_iter().zip(selection) {
        let Some(mut selected) = selected else {
            continue;
        };
        if kind == RouteKind::Http {
            selected.extend(managed_mirror_routes(&edited, ctx));
            let mut seen = BTreeSet::new();
            selected.retain(|i| seen.insert(*i));
        }
        let Some(routes) = json::routes_mut(&mut edited, kind) else {
            continue;
        };
        for index in selected {
            let path = format!("spec.{}[{index}]", kind.field());
            let label = selection::route_label(kind, &routes[index], index);
            changed |= reweight_route(&mut routes[index], &path, ctx, request)
                .map_err(|e| ctx.error(format!("{label}: {e}")))?;
        }
    }
    if !changed {
        return Ok(false);
    }
    if json::routes(&edited, RouteKind::Http)
        .ok()
        .flatten()
        .is_some()
    {
        order_routes(&mut edited, ctx.config).map_err(|e| ctx.error(e))?;
    }
    *doc = edited;
    Ok(true)
}

/// HTTP routes with a `mirror` whose name is a managed route: they
/// carry the canary/stable split for mirrored requests, so they follow it.
fn managed_mirror_routes(doc: &Value, ctx: &VirtualServiceContext<'_>) -> Vec<usize> {
    let Ok(Some(routes)) = json::routes(doc, RouteKind::Http) else {
        return vec![];
    };
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.get("mirror").is_some_and(|m| !m.is_null())
                && ctx.config.managed_routes.is_some()
                && ctx.config.is_managed(json::route_name(r))
        })
        .map(|(i, _)| i)
        .collect()
}

/// What happens to one destination of a selected route.
enum Fate {
    Keep,
    Weight(i64),
    Delete,
}

/// Re-weights one route's destinations: weight changes and appends first,
/// then deletions from the highest index down.
fn reweight_route(
    route: &mut Value,
    path: &str,
    ctx: &VirtualServiceContext<'_>,
    request: WeightRequest<'_>,
) -> Result<bool, String> {
    let config = ctx.config;
    let (canary_subset, stable_subset, additional_subsets) = match &config.destination_rule {
        Some(dr) => (
            dr.canary_subset_name.as_str(),
            dr.stable_subset_name.as_str(),
            dr.additional_subset_names.as_deref(),
        ),
        None => ("", "", None),
    };
    let destinations = selection::destinations(route, path)?;

    let mut views = Vec::with_capacity(destinations.len());
    for (i, destination) in destinations.iter().enumerate() {
        let dpath = format!("{path}.route[{i}]");
        let host = json::string_at(
            destination,
            "/destination/host",
            &format!("{dpath}.destination.host"),
        )?;
        let subset = json::string_at(
            destination,
            "/destination/subset",
            &format!("{dpath}.destination.subset"),
        )?;
        let weight = json::weight(destination, &dpath)?;
        views.push((short_host(host).to_string(), subset.to_string(), weight));
    }

    let is_additional_subset = |subset: &str| {
        !subset.is_empty()
            && additional_subsets.is_some_and(|names| names.iter().any(|n| n == subset))
    };
    let additional_subset_weight = checked_sum(
        views
            .iter()
            .filter(|(_, subset, _)| is_additional_subset(subset))
            .map(|(_, _, w)| *w),
        || format!("{path}: the additional subsets' weights overflow"),
    )?;
    let experiments = checked_sum(
        request.additional.iter().map(|d| i64::from(d.weight)),
        || "the additional destinations' weights overflow".to_string(),
    )?;
    let stable_weight = config
        .max_weight
        .checked_sub(request.desired)
        .and_then(|w| w.checked_sub(experiments))
        .and_then(|w| w.checked_sub(additional_subset_weight))
        .ok_or_else(|| format!("{path}: the stable weight overflows"))?
        .max(0);

    let mut claimed = vec![false; request.additional.len()];
    let mut targets = Vec::with_capacity(views.len());
    for (host, subset, weight) in &views {
        let target = if host.is_empty() {
            Fate::Keep
        } else if host == &config.canary_service || (!subset.is_empty() && subset == canary_subset)
        {
            Fate::Weight(request.desired)
        } else if host == &config.stable_service || (!subset.is_empty() && subset == stable_subset)
        {
            Fate::Weight(stable_weight)
        } else if let Some(k) = (0..request.additional.len())
            .find(|&k| !claimed[k] && request.additional[k].service_name == *host)
        {
            claimed[k] = true;
            Fate::Weight(i64::from(request.additional[k].weight))
        } else if is_additional_subset(subset) {
            Fate::Keep
        } else if *weight != 0 {
            // A destination the rollout does not know with traffic: drop it.
            // One with no traffic is left alone, as the built-in does.
            Fate::Delete
        } else {
            Fate::Keep
        };
        targets.push(target);
    }

    let mut appended: Vec<&WeightDestination> = request
        .additional
        .iter()
        .zip(&claimed)
        .filter(|(d, claimed)| !**claimed && d.weight != 0)
        .map(|(d, _)| d)
        .collect();
    appended.sort_by(|a, b| a.service_name.cmp(&b.service_name));

    let Some(Value::Array(list)) = route.get_mut("route") else {
        return Err(format!("{path}.route is not a list"));
    };
    let mut changed = false;
    let mut deletions = Vec::new();
    for (i, (target, (_, _, current))) in targets.iter().zip(&views).enumerate() {
        match target {
            Fate::Weight(w) if w != current => {
                list[i]["weight"] = json!(w);
                changed = true;
            }
            Fate::Delete => deletions.push(i),
            _ => {}
        }
    }
    for destination in appended {
        list.push(json!({
            "destination": {"host": destination.service_name},
            "weight": destination.weight,
        }));
        changed = true;
    }
    for i in deletions.into_iter().rev() {
        list.remove(i);
        changed = true;
    }
    if !changed {
        return Ok(false);
    }
    let mut weights = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        weights.push(json::weight(d, &format!("{path}.route[{i}]"))?);
    }
    let total = checked_sum(weights, || {
        format!("{path}: the total weight of its destinations overflows")
    })?;
    if total <= 0 {
        return Err(format!(
            "refusing to leave {path} with a total weight of {total}: Istio rejects a route whose weights are all zero"
        ));
    }
    Ok(true)
}

/// The sum of `weights`, or the error `overflow` describes.
fn checked_sum(
    weights: impl IntoIterator<Item = i64>,
    overflow: impl FnOnce() -> String,
) -> Result<i64, String> {
    weights
        .into_iter()
        .try_fold(0i64, i64::checked_add)
        .ok_or_else(overflow)
}
