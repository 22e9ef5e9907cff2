//! The Istio router: resolves the Rollout's configuration, reads the
//! objects through the cluster port, runs the pure core and writes back.

use std::time::SystemTime;

use serde_json::Value;

use super::edit::{
    Confirm, Freshness, IfMissing, RetryPolicy, edit_all, read, read_and_edit, retrying,
};
use super::{RouterError, TrafficRouter, Verification};
use crate::cluster::{Cluster, IstioKind, ObjectKey};
use crate::config::{RouterConfig, virtual_service_location};
use crate::core::{self, CanaryTarget, CoreError, VirtualServiceContext, WeightRequest};
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};

pub struct IstioRouter<C> {
    cluster: C,
    plugin_name: String,
    retry: RetryPolicy,
}

/// The VirtualServices of one call with their error labels.
struct VirtualServices {
    keys: Vec<ObjectKey>,
    labels: Vec<String>,
}

impl<C: Cluster> IstioRouter<C> {
    /// A router reading its configuration from `plugins[plugin_name]`.
    pub fn new(cluster: C, plugin_name: impl Into<String>) -> Self {
        IstioRouter {
            cluster,
            plugin_name: plugin_name.into(),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    fn config(&self, rollout: &Rollout) -> Result<RouterConfig, RouterError> {
        Ok(RouterConfig::from_rollout(rollout, &self.plugin_name)?)
    }

    fn virtual_services(config: &RouterConfig) -> VirtualServices {
        let keys: Vec<ObjectKey> = config
            .virtual_services
            .iter()
            .map(|vs| {
                let (namespace, name) = virtual_service_location(&vs.name, &config.namespace);
                ObjectKey::new(IstioKind::VirtualService, namespace, name)
            })
            .collect();
        let labels = keys.iter().map(ToString::to_string).collect();
        VirtualServices { keys, labels }
    }

    /// Edits every configured VirtualService with `edit`.
    async fn edit_virtual_services<F>(
        &self,
        config: &RouterConfig,
        if_missing: IfMissing,
        edit: F,
    ) -> Result<usize, RouterError>
    where
        F: Fn(&mut Value, &VirtualServiceContext<'_>) -> Result<bool, CoreError>,
    {
        let vss = Self::virtual_services(config);
        edit_all(
            &self.cluster,
            &vss.keys,
            if_missing,
            &self.retry,
            |i, doc| {
                let ctx = VirtualServiceContext {
                    object: &vss.labels[i],
                    config,
                    reference: &config.virtual_services[i],
                };
                edit(doc, &ctx)
            },
        )
        .await
    }

    fn destination_rule_key(config: &RouterConfig) -> Option<ObjectKey> {
        config
            .destination_rule
            .as_ref()
            .map(|dr| ObjectKey::new(IstioKind::DestinationRule, &config.namespace, &dr.name))
    }

    /// Where header and mirror routes point: the DestinationRule's host and
    /// canary subset, else the canary Service (§7 step 2).
    async fn canary_target(&self, config: &RouterConfig) -> Result<CanaryTarget, RouterError> {
        let Some(key) = Self::destination_rule_key(config) else {
            return Ok(CanaryTarget {
                host: config.canary_service.clone(),
                subset: None,
            });
        };
        let dr = read(&self.cluster, &key, Freshness::Cached, &self.retry).await?;
        let host = dr
            .pointer("/spec/host")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(CanaryTarget {
            host: if host.is_empty() {
                config.canary_service.clone()
            } else {
                host.to_string()
            },
            subset: config
                .destination_rule
                .as_ref()
                .map(|dr| dr.canary_subset_name.clone()),
        })
    }
}

impl<C: Cluster> TrafficRouter for IstioRouter<C> {
    async fn init_plugin(&self) -> Result<(), RouterError> {
        self.cluster
            .init()
            .await
            .map_err(|e| RouterError::Init(format!("cannot connect to Kubernetes: {e}")))
    }

    fn router_type(&self) -> &'static str {
        "Istio"
    }

    async fn update_hash(
        &self,
        rollout: &Rollout,
        canary_hash: &str,
        stable_hash: &str,
        additional: &[WeightDestination],
    ) -> Result<(), RouterError> {
        let config = self.config(rollout)?;
        let (Some(reference), Some(key)) = (
            &config.destination_rule,
            Self::destination_rule_key(&config),
        ) else {
            // Host-based split: nothing to label (Q16: no delay check either).
            return Ok(());
        };
        let services_named = rollout
            .canary()
            .is_some_and(|c| !c.canary_service.is_empty() || !c.stable_service.is_empty());
        if !services_named {
            let replica_sets = retrying(&self.retry, || {
                self.cluster
                    .list_replica_sets(&config.namespace, &config.rollout_name)
            })
            .await
            .map_err(|source| RouterError::Cluster {
                context: format!("listing the ReplicaSets of rollout {}", rollout.key()),
                source,
            })?;
            core::check_switch_delay(rollout, canary_hash, stable_hash, &replica_sets)?;
        }
        let label = key.to_string();
        edit_all(
            &self.cluster,
            std::slice::from_ref(&key),
            IfMissing::Fail,
            &self.retry,
            |_, doc| {
                core::update_destination_rule(
                    doc,
                    &label,
                    reference,
                    &config.rollout_name,
                    canary_hash,
                    stable_hash,
                    additional,
                )
            },
        )
        .await?;
        Ok(())
    }

    async fn set_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> Result<(), RouterError> {
        let config = self.config(rollout)?;
        let request = WeightRequest::new(desired_weight, additional, config.max_weight)?;
        self.edit_virtual_services(&config, IfMissing::Fail, |doc, ctx| {
            core::set_weight(doc, ctx, request)
        })
        .await?;
        Ok(())
    }

    async fn set_header_route(
        &self,
        rollout: &Rollout,
        route: &SetHeaderRoute,
    ) -> Result<(), RouterError> {
        let config = self.config(rollout)?;
        let target = self.canary_target(&config).await?;
        self.edit_virtual_services(&config, IfMissing::Fail, |doc, ctx| {
            core::set_header_route(doc, ctx, route, &target)
        })
        .await?;
        Ok(())
    }

    async fn set_mirror_route(
        &self,
        rollout: &Rollout,
        route: &SetMirrorRoute,
    ) -> Result<(), RouterError> {
        let config = self.config(rollout)?;
        let target = self.canary_target(&config).await?;
        self.edit_virtual_services(&config, IfMissing::Fail, |doc, ctx| {
            core::set_mirror_route(doc, ctx, route, &target)
        })
        .await?;
        Ok(())
    }

    /// Verified when SetWeight with these arguments would change nothing (D2).
    async fn verify_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> Result<Verification, RouterError> {
        let config = self.config(rollout)?;
        let request = WeightRequest::new(desired_weight, additional, config.max_weight)?;
        let vss = Self::virtual_services(&config);
        for (i, key) in vss.keys.iter().enumerate() {
            let ctx = VirtualServiceContext {
                object: &vss.labels[i],
                config: &config,
                reference: &config.virtual_services[i],
            };
            let (_, would_change) = read_and_edit(
                &self.cluster,
                key,
                &self.retry,
                Confirm::ErrorsAndChanges,
                |doc| core::set_weight(doc, &ctx, request),
            )
            .await?;
            if would_change {
                tracing::info!(object = %key, "weights not yet as desired");
                return Ok(Verification::NotVerified);
            }
        }
        Ok(Verification::Verified)
    }

    async fn remove_managed_routes(&self, rollout: &Rollout) -> Result<(), RouterError> {
        let config = self.config(rollout)?;
        self.edit_virtual_services(&config, IfMissing::Skip, |doc, ctx| {
            core::remove_managed_routes(doc, ctx, rollout)
        })
        .await?;
        Ok(())
    }

    async fn get_weight_update_deadline(
        &self,
        _rollout: &Rollout,
    ) -> Result<Option<SystemTime>, RouterError> {
        Ok(None)
    }

    async fn clear_weight_update_deadline(&self, _rollout: &Rollout) -> Result<(), RouterError> {
        Ok(())
    }
}
