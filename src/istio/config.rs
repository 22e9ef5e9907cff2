//! The plugin's configuration (see "Configuration" in docs/behaviour.md):
//! the value under
//! `spec.strategy.canary.trafficRouting.plugins["<plugin name>"]`, shaped like
//! the built-in's `trafficRouting.istio`, plus what the router reads from the
//! rest of the Rollout. Unknown keys are rejected so a typo cannot silently
//! disable a feature.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use crate::model::{self, Rollout};

/// Default key under `trafficRouting.plugins`.
pub const DEFAULT_PLUGIN_NAME: &str = "argoproj-labs/istio";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PluginConfig {
    pub virtual_service: Option<VirtualServiceRef>,
    pub virtual_services: Option<Vec<VirtualServiceRef>>,
    pub destination_rule: Option<DestinationRuleRef>,
    /// Header and mirror routes take the primary route's `match` and request
    /// options (default `true`); `false` builds them as the built-in does.
    pub inherit_primary_route: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceRef {
    /// `name`, `name.namespace` or `name.namespace.cluster.local`.
    pub name: String,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub tls_routes: Vec<TlsRouteRef>,
    #[serde(default)]
    pub tcp_routes: Vec<TcpRouteRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TlsRouteRef {
    pub port: i64,
    pub sni_hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TcpRouteRef {
    pub port: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleRef {
    pub name: String,
    pub canary_subset_name: String,
    pub stable_subset_name: String,
    #[serde(default)]
    pub additional_subset_names: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("rollout {rollout} has no canary strategy with trafficRouting")]
    NoTrafficRouting { rollout: String },
    #[error(
        "rollout {rollout} has no configuration for plugin \"{plugin}\" under spec.strategy.canary.trafficRouting.plugins"
    )]
    MissingPluginConfig { rollout: String, plugin: String },
    #[error("rollout {rollout}: invalid configuration of plugin \"{plugin}\": {detail}")]
    Invalid {
        rollout: String,
        plugin: String,
        detail: String,
    },
}

/// Everything a call needs to know about the Rollout, resolved once.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub rollout_name: String,
    pub namespace: String,
    pub canary_service: String,
    pub stable_service: String,
    pub virtual_services: Vec<VirtualServiceRef>,
    pub destination_rule: Option<DestinationRuleRef>,
    /// `Some` when `trafficRouting.managedRoutes` is present (even empty).
    pub managed_routes: Option<Vec<String>>,
    /// The same names as a set, so membership is not a scan per route.
    managed_set: HashSet<String>,
    /// `maxTrafficWeight`, default 100 (see "SetWeight" in docs/behaviour.md).
    pub max_weight: i64,
    /// `inheritPrimaryRoute`, default `true` (see "SetHeaderRoute" in
    /// docs/behaviour.md).
    pub inherit_primary_route: bool,
}

impl RouterConfig {
    pub fn from_rollout(rollout: &Rollout, plugin: &str) -> Result<Self, ConfigError> {
        let rollout_key = rollout.key();
        let invalid = |detail: String| ConfigError::Invalid {
            rollout: rollout_key.clone(),
            plugin: plugin.to_string(),
            detail,
        };
        let canary = rollout
            .canary()
            .ok_or_else(|| ConfigError::NoTrafficRouting {
                rollout: rollout_key.clone(),
            })?;
        let routing =
            canary
                .traffic_routing
                .as_ref()
                .ok_or_else(|| ConfigError::NoTrafficRouting {
                    rollout: rollout_key.clone(),
                })?;
        let raw = routing
            .plugins
            .get(plugin)
            .ok_or_else(|| ConfigError::MissingPluginConfig {
                rollout: rollout_key.clone(),
                plugin: plugin.to_string(),
            })?;
        let config: PluginConfig = model::from_value(raw.clone(), "configuration")
            .map_err(|e| invalid(format!("{}: {}", e.path, e.message)))?;

        let virtual_services = match (config.virtual_service, config.virtual_services) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(
                    "either virtualService or virtualServices must be configured, not both and not neither".into(),
                ));
            }
            (Some(single), None) => vec![single],
            (None, Some(list)) => list,
        };
        if let Some(vs) = virtual_services.iter().find(|vs| vs.name.is_empty()) {
            return Err(invalid(format!(
                "a virtualService entry has an empty name (routes {:?})",
                vs.routes
            )));
        }
        if let Some(dr) = &config.destination_rule {
            for (field, value) in [
                ("name", &dr.name),
                ("canarySubsetName", &dr.canary_subset_name),
                ("stableSubsetName", &dr.stable_subset_name),
            ] {
                if value.is_empty() {
                    return Err(invalid(format!(
                        "destinationRule.{field} must not be empty"
                    )));
                }
            }
        }
        let max_weight = i64::from(routing.max_traffic_weight.unwrap_or(100));
        if max_weight <= 0 {
            return Err(invalid(format!(
                "trafficRouting.maxTrafficWeight must be positive, got {max_weight}"
            )));
        }
        let (stable_service, canary_service) = resolve_services(rollout);
        Ok(RouterConfig {
            rollout_name: rollout.metadata.name.clone(),
            namespace: rollout.metadata.namespace.clone(),
            canary_service,
            stable_service,
            virtual_services,
            destination_rule: config.destination_rule,
            managed_set: routing
                .managed_routes
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect(),
            managed_routes: routing
                .managed_routes
                .as_ref()
                .map(|routes| routes.iter().map(|r| r.name.clone()).collect()),
            max_weight,
            inherit_primary_route: config.inherit_primary_route.unwrap_or(true),
        })
    }

    pub fn is_managed(&self, route_name: &str) -> bool {
        self.managed_set.contains(route_name)
    }
}

/// `(stable, canary)` services, ping-pong aware (see "Configuration" in
/// docs/behaviour.md).
fn resolve_services(rollout: &Rollout) -> (String, String) {
    let Some(canary) = rollout.canary() else {
        return (String::new(), String::new());
    };
    match &canary.ping_pong {
        Some(pp) if canary.stable_service.is_empty() && canary.canary_service.is_empty() => {
            let stable_is_ping = rollout
                .status
                .canary
                .as_ref()
                .is_some_and(|c| c.stable_ping_pong == "ping");
            if stable_is_ping {
                (pp.ping_service.clone(), pp.pong_service.clone())
            } else {
                (pp.pong_service.clone(), pp.ping_service.clone())
            }
        }
        _ => (canary.stable_service.clone(), canary.canary_service.clone()),
    }
}

/// Resolves a VirtualService reference to `(namespace, name)`: a trailing
/// `.cluster.local` is dropped, the last dot-separated part is the namespace.
pub fn virtual_service_location(reference: &str, rollout_namespace: &str) -> (String, String) {
    let trimmed = reference
        .strip_suffix(".cluster.local")
        .unwrap_or(reference);
    match trimmed.rsplit_once('.') {
        Some((name, namespace)) if !namespace.is_empty() => {
            (namespace.to_string(), name.to_string())
        }
        Some((name, _)) => (rollout_namespace.to_string(), name.to_string()),
        None => (rollout_namespace.to_string(), trimmed.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_service_names_resolve_like_the_builtin() {
        let cases = [
            ("virtualservice", ("ro-ns", "virtualservice")),
            ("virtualservice.istio", ("istio", "virtualservice")),
            (
                "virtualservice.example.istio",
                ("istio", "virtualservice.example"),
            ),
            ("my.virtual.service.istio", ("istio", "my.virtual.service")),
            ("test.namespace.cluster.local", ("namespace", "test")),
            ("a.ns.svc.cluster.local", ("svc", "a.ns")),
        ];
        for (reference, (ns, name)) in cases {
            assert_eq!(
                virtual_service_location(reference, "ro-ns"),
                (ns.to_string(), name.to_string()),
                "{reference}"
            );
        }
    }
}
