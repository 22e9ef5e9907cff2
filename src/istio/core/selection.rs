//! Which routes SetWeight edits and the checks that run before any change
//! (see "Route selection" and "Destination validation" in docs/behaviour.md).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::VirtualServiceContext;
use super::json::{self, RouteKind};
use crate::istio::config::{RouterConfig, TcpRouteRef, TlsRouteRef};

/// Indices of the HTTP routes named by `names`, de-duplicated (a route
/// selected twice must not lose a destination twice). With no names, the
/// route is inferred: the single route that is not a managed route, else the
/// only route, else the first unnamed one, else nothing.
pub fn select_http(
    routes: &[Value],
    names: &[String],
    config: &RouterConfig,
) -> Result<Vec<usize>, String> {
    if names.is_empty() {
        // A route that delegates is never edited, so never inferred.
        let candidates: Vec<usize> = (0..routes.len())
            .filter(|&i| delegate(&routes[i]).is_none())
            .collect();
        let unmanaged: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !config.is_managed(json::route_name(&routes[i])))
            .collect();
        let inferred = if unmanaged.len() == 1 {
            Some(unmanaged[0])
        } else if candidates.len() == 1 {
            Some(candidates[0])
        } else {
            candidates
                .into_iter()
                .find(|&i| json::route_name(&routes[i]).is_empty())
        };
        return Ok(inferred.into_iter().collect());
    }
    // The first route of each name, found in one pass over the routes.
    let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        first_of.entry(json::route_name(route)).or_insert(i);
    }
    let mut selected = Vec::new();
    let mut seen = HashSet::new();
    for name in names {
        let index = *first_of.get(name.as_str()).ok_or_else(|| {
            format!(
                "HTTP Route '{name}' is not found in the defined Virtual Service ({})",
                existing_names(routes)
            )
        })?;
        if let Some(target) = delegate(&routes[index]) {
            return Err(format!(
                "HTTP route '{name}' delegates to {target}; the plugin never edits a delegating route: configure the delegate VirtualService in virtualService.name instead and name its routes"
            ));
        }
        if seen.insert(index) {
            selected.push(index);
        }
    }
    Ok(selected)
}

/// `routes in this VirtualService: a, b` (distinct names in order, at most
/// a few dozen), or `this VirtualService has no named HTTP routes`.
fn existing_names(routes: &[Value]) -> String {
    const SHOWN: usize = 30;
    let mut seen = HashSet::new();
    let names: Vec<&str> = routes
        .iter()
        .map(json::route_name)
        .filter(|name| !name.is_empty() && seen.insert(*name))
        .collect();
    match names.len() {
        0 => "this VirtualService has no named HTTP routes".to_string(),
        n if n <= SHOWN => format!("routes in this VirtualService: {}", names.join(", ")),
        n => format!(
            "routes in this VirtualService: {}, and {} more",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
    }
}

/// `delegate VirtualService <ns/>name` when the route delegates (Istio's
/// `delegate: {name, namespace}`), `None` otherwise.
pub fn delegate(route: &Value) -> Option<String> {
    let target = route.get("delegate").filter(|d| !d.is_null())?;
    let name = target.get("name").and_then(Value::as_str).unwrap_or("");
    Some(
        match target
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
        {
            "" => format!("delegate VirtualService '{name}'"),
            namespace => format!("delegate VirtualService {namespace}/{name}"),
        },
    )
}

/// The single port of a TLS/TCP route's match blocks (0 where absent), or
/// `None` when the blocks disagree, and the union of their SNI hosts.
fn port_and_sni_hosts(
    route: &Value,
    path: &str,
) -> Result<(Option<i64>, BTreeSet<String>), String> {
    let blocks = match route.get("match") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(blocks)) => blocks.as_slice(),
        Some(other) => {
            return Err(format!(
                "{path}.match is {}, not a list",
                json::type_name(other)
            ));
        }
    };
    let mut ports = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for (i, block) in blocks.iter().enumerate() {
        let port = match block.get("port") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("{path}.match[{i}].port is {n}, not an integer"))?,
            Some(other) => {
                return Err(format!(
                    "{path}.match[{i}].port is {}, not a number",
                    json::type_name(other)
                ));
            }
        };
        ports.insert(port);
        match block.get("sniHosts") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (j, host) in list.iter().enumerate() {
                    let host = host.as_str().ok_or_else(|| {
                        format!("{path}.match[{i}].sniHosts[{j}] is not a string")
                    })?;
                    hosts.insert(host.to_string());
                }
            }
            Some(other) => {
                return Err(format!(
                    "{path}.match[{i}].sniHosts is {}, not a list",
                    json::type_name(other)
                ));
            }
        }
    }
    if ports.is_empty() {
        ports.insert(0);
    }
    let port = (ports.len() == 1).then(|| ports.into_iter().next().unwrap_or(0));
    Ok((port, hosts))
}

/// Indices of the TLS routes selected by `wanted`, de-duplicated.
pub fn select_tls(routes: &[Value], wanted: &[TlsRouteRef]) -> Result<Vec<usize>, String> {
    if wanted.is_empty() {
        return Ok(first_route(routes));
    }
    // Each route's (port, SNI hosts) read once; a route whose blocks
    // disagree on the port matches nothing.
    let mut by_key: HashMap<(i64, Vec<String>), Vec<usize>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let (port, hosts) = port_and_sni_hosts(route, &format!("spec.tls[{i}]"))?;
        if let Some(port) = port {
            by_key
                .entry((port, hosts.into_iter().collect()))
                .or_default()
                .push(i);
        }
    }
    let existing = || {
        let mut keys: Vec<String> = by_key
            .keys()
            .map(|(port, hosts)| format!("port {port} sniHosts [{}]", hosts.join(", ")))
            .collect();
        keys.sort();
        keys
    };
    select_by_key(
        wanted,
        RouteKind::Tls,
        |entry| {
            let hosts: BTreeSet<&String> = entry.sni_hosts.iter().collect();
            // The route must carry exactly the wanted hosts (as a set).
            if hosts.len() != entry.sni_hosts.len() {
                return None;
            }
            by_key.get(&(entry.port, hosts.into_iter().cloned().collect()))
        },
        existing,
    )
}

/// Indices of the TCP routes selected by `wanted`, de-duplicated.
pub fn select_tcp(routes: &[Value], wanted: &[TcpRouteRef]) -> Result<Vec<usize>, String> {
    if wanted.is_empty() {
        return Ok(first_route(routes));
    }
    let mut by_port: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        if let (Some(port), _) = port_and_sni_hosts(route, &format!("spec.tcp[{i}]"))? {
            by_port.entry(port).or_default().push(i);
        }
    }
    let existing = || {
        let mut ports: Vec<i64> = by_port.keys().copied().collect();
        ports.sort_unstable();
        ports.iter().map(|port| format!("port {port}")).collect()
    };
    select_by_key(
        wanted,
        RouteKind::Tcp,
        |entry| by_port.get(&entry.port),
        existing,
    )
}

/// With no route configured, the first route (if any).
fn first_route(routes: &[Value]) -> Vec<usize> {
    if routes.is_empty() { vec![] } else { vec![0] }
}

/// For each wanted entry, the routes `lookup` finds for it (in route order),
/// de-duplicated; an entry that finds none is an error listing what the
/// routes there match (`existing`).
fn select_by_key<'m, T>(
    wanted: &[T],
    kind: RouteKind,
    lookup: impl Fn(&T) -> Option<&'m Vec<usize>>,
    existing: impl FnOnce() -> Vec<String>,
) -> Result<Vec<usize>, String> {
    let mut selected = Vec::new();
    let mut seen = HashSet::new();
    for entry in wanted {
        let Some(found) = lookup(entry).filter(|found| !found.is_empty()) else {
            let existing = existing();
            let existing = if existing.is_empty() {
                format!("no {} route has a single port", kind.label())
            } else {
                format!(
                    "{} routes in this VirtualService match {}",
                    kind.label(),
                    existing.join("; ")
                )
            };
            return Err(format!(
                "No matching {} routes found in the defined Virtual Service ({existing})",
                kind.label()
            ));
        };
        selected.extend(found.iter().copied().filter(|i| seen.insert(*i)));
    }
    Ok(selected)
}

/// The routes SetWeight edits per kind, in the order of [`RouteKind::ALL`]
/// (HTTP, TLS, TCP); `None` for a kind the VirtualService does not have.
pub type Selection = [Option<Vec<usize>>; 3];

/// The routes of `kind` that SetWeight edits, from the configuration only
/// (no mirror routes); `None` when the VirtualService has no such routes.
pub fn configured_selection(
    doc: &Value,
    kind: RouteKind,
    ctx: &VirtualServiceContext<'_>,
) -> Result<Option<Vec<usize>>, String> {
    let Some(routes) = json::routes(doc, kind)? else {
        return Ok(None);
    };
    json::check_route_objects(routes, kind)?;
    let reference = ctx.reference;
    let selected = match kind {
        RouteKind::Http => select_http(routes, &reference.routes, ctx.config)?,
        RouteKind::Tls => select_tls(routes, &reference.tls_routes)?,
        RouteKind::Tcp => select_tcp(routes, &reference.tcp_routes)?,
    };
    Ok(Some(selected))
}

/// A destination's host up to the first dot: `stable.ns.svc.cluster.local`
/// is `stable`; an empty host or one starting with a dot is "".
pub fn short_host(host: &str) -> &str {
    host.split('.').next().unwrap_or("")
}

/// Every selected route must carry the canary and the stable
/// destination, and an omitted route list must not be ambiguous.
pub fn validate(doc: &Value, ctx: &VirtualServiceContext<'_>) -> Result<Selection, String> {
    let config = ctx.config;
    let mut selection = Selection::default();
    for (slot, kind) in selection.iter_mut().zip(RouteKind::ALL) {
        let Some(selected) = configured_selection(doc, kind, ctx)? else {
            continue;
        };
        let routes = json::routes(doc, kind)?.map(Vec::as_slice).unwrap_or(&[]);
        for &index in &selected {
            let path = format!("spec.{}[{index}]", kind.field());
            let route_label = route_label(kind, &routes[index], index);
            let destinations = destinations(&routes[index], &path)?;
            let mut hosts = Vec::new();
            let mut subsets = Vec::new();
            for (i, destination) in destinations.iter().enumerate() {
                let dpath = format!("{path}.route[{i}]");
                hosts.push(json::string_at(
                    destination,
                    "/destination/host",
                    &format!("{dpath}.destination.host"),
                )?);
                subsets.push(json::string_at(
                    destination,
                    "/destination/subset",
                    &format!("{dpath}.destination.subset"),
                )?);
            }
            let missing = match &config.destination_rule {
                Some(dr) => [
                    (
                        "Canary DestinationRule subset",
                        &dr.canary_subset_name,
                        subsets.contains(&dr.canary_subset_name.as_str()),
                    ),
                    (
                        "Stable DestinationRule subset",
                        &dr.stable_subset_name,
                        subsets.contains(&dr.stable_subset_name.as_str()),
                    ),
                ],
                None => {
                    let has =
                        |svc: &str| !svc.is_empty() && hosts.iter().any(|h| short_host(h) == svc);
                    [
                        (
                            "Canary Service",
                            &config.canary_service,
                            has(&config.canary_service),
                        ),
                        (
                            "Stable Service",
                            &config.stable_service,
                            has(&config.stable_service),
                        ),
                    ]
                }
            };
            if let Some((what, name, _)) = missing.iter().find(|(_, _, present)| !present) {
                let (label, mut present) = if config.destination_rule.is_some() {
                    ("subsets in this route", subsets)
                } else {
                    ("destination hosts in this route", hosts)
                };
                present.retain(|p| !p.is_empty());
                present.dedup();
                let present = if present.is_empty() {
                    format!("no {label}")
                } else {
                    format!("{label}: {}", present.join(", "))
                };
                return Err(format!(
                    "{route_label}: {what} '{name}' not found in route ({present})"
                ));
            }
        }
        let reference = ctx.reference;
        let ambiguous = match kind {
            RouteKind::Http => {
                reference.routes.is_empty()
                    && routes
                        .iter()
                        .filter(|r| {
                            delegate(r).is_none() && !config.is_managed(json::route_name(r))
                        })
                        .count()
                        > 1
            }
            RouteKind::Tls => reference.tls_routes.is_empty() && routes.len() > 1,
            RouteKind::Tcp => reference.tcp_routes.is_empty() && routes.len() > 1,
        };
        if ambiguous {
            let (field, key) = match kind {
                RouteKind::Http => ("http", "routes"),
                RouteKind::Tls => ("tls", "tlsRoutes"),
                RouteKind::Tcp => ("tcp", "tcpRoutes"),
            };
            return Err(format!(
                "spec.{field}[] should be set in VirtualService and it must have exactly one route when omitting spec.strategy.canary.trafficRouting.plugins[].virtualService.{key}"
            ));
        }
        *slot = Some(selected);
    }
    Ok(selection)
}

/// `route[]` of one route.
pub fn destinations<'a>(route: &'a Value, path: &str) -> Result<&'a Vec<Value>, String> {
    match route.get("route") {
        Some(Value::Array(list)) => {
            if let Some(i) = list.iter().position(|d| !d.is_object()) {
                return Err(format!(
                    "{path}.route[{i}] is {}, not a destination object",
                    json::type_name(&list[i])
                ));
            }
            Ok(list)
        }
        None | Some(Value::Null) => Err(format!("{path} has no route[] destinations")),
        Some(other) => Err(format!(
            "{path}.route is {}, not a list",
            json::type_name(other)
        )),
    }
}

/// How errors name a route: `HTTP route 'primary'` or `TCP route spec.tcp[1]`.
pub fn route_label(kind: RouteKind, route: &Value, index: usize) -> String {
    match json::route_name(route) {
        "" => format!("{} route spec.{}[{index}]", kind.label(), kind.field()),
        name => format!("{} route '{name}'", kind.label()),
    }
}

/// The first HTTP route SetWeight would edit, chosen from the configured
/// routes only (header and mirror routes take their port from it). `Err`
/// when a configured name is
/// missing, `Ok(None)` when nothing can be inferred.
pub fn first_weighted_http_route<'a>(
    doc: &'a Value,
    ctx: &VirtualServiceContext<'_>,
) -> Result<Option<&'a Value>, String> {
    let Some(selected) = configured_selection(doc, RouteKind::Http, ctx)? else {
        return Ok(None);
    };
    let routes = json::routes(doc, RouteKind::Http)?
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    Ok(selected.first().map(|&i| &routes[i]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_missing_route_lists_at_most_thirty_names_each_once() {
        let mut routes: Vec<Value> = (0..40).map(|i| json!({"name": format!("r{i}")})).collect();
        routes.push(json!({"name": "r0"}));
        routes.push(json!({}));
        let listed = existing_names(&routes);
        assert!(
            listed.starts_with("routes in this VirtualService: r0, r1, "),
            "{listed}"
        );
        assert!(listed.ends_with("r29, and 10 more"), "{listed}");
        assert_eq!(
            existing_names(&[json!({})]),
            "this VirtualService has no named HTTP routes"
        );
    }
}
