//! The Istio router: resolves the Rollout's configuration, reads the
//! objects through the cluster port, runs the pure core and writes back.

use std::time::SystemTime;

use serde_json::Value;

use super::config::{RouterConfig, VirtualServiceRef, virtual_service_location};
use super::core::{self, CanaryTarget, CoreError, VirtualServiceContext, WeightRequest};
use super::edit::{
    Confirm, Freshness, IfMissing, RetryPolicy, edit_all, read, read_and_edit, retrying,
};
use super::report::{Change, report};
use super::{IstioError, UnknownApiVersion};
use crate::cluster::{Cluster, ClusterError, ObjectKey, Resource};
use crate::model::{Rollout, SetHeaderRoute, SetMirrorRoute, WeightDestination};
use crate::router::{TrafficRouter, Verification};

pub struct IstioRouter<C> {
    cluster: C,
    plugin_name: String,
    virtual_services: &'static Resource,
    destination_rules: &'static Resource,
    retry: RetryPolicy,
}

/// One configured VirtualService of a call: what the core needs to edit it.
struct VirtualService<'a> {
    /// `VirtualService ns/name`, for error messages.
    label: String,
    config: &'a RouterConfig,
    reference: &'a VirtualServiceRef,
}

impl VirtualService<'_> {
    fn context(&self) -> VirtualServiceContext<'_> {
        VirtualServiceContext {
            object: &self.label,
            config: self.config,
            reference: self.reference,
        }
    }
}

impl<C: Cluster> IstioRouter<C> {
    /// A router reading its configuration from `plugins[plugin_name]`.
    pub fn new(cluster: C, plugin_name: impl Into<String>) -> Self {
        IstioRouter {
            cluster,
            plugin_name: plugin_name.into(),
            virtual_services: &super::VIRTUAL_SERVICES[0],
            destination_rules: &super::DESTINATION_RULES[0],
            retry: RetryPolicy::default(),
        }
    }

    /// The `networking.istio.io` version to read and write (one of
    /// [`super::API_VERSIONS`]).
    pub fn with_api_version(mut self, api_version: &str) -> Result<Self, UnknownApiVersion> {
        self.virtual_services = super::virtual_service(api_version)?;
        self.destination_rules = super::destination_rule(api_version)?;
        Ok(self)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    fn config(&self, rollout: &Rollout) -> Result<RouterConfig, IstioError> {
        Ok(RouterConfig::from_rollout(rollout, &self.plugin_name)?)
    }

    /// The configured VirtualServices, each with its key.
    fn virtual_services<'a>(
        &self,
        config: &'a RouterConfig,
    ) -> Vec<(ObjectKey, VirtualService<'a>)> {
        config
            .virtual_services
            .iter()
            .map(|reference| {
                let (namespace, name) =
                    virtual_service_location(&reference.name, &config.namespace);
                let key = ObjectKey::new(self.virtual_services, namespace, name);
                let vs = VirtualService {
                    label: key.to_string(),
                    config,
                    reference,
                };
                (key, vs)
            })
            .collect()
    }

    /// Edits every configured VirtualService with `edit`.
    async fn edit_virtual_services<F>(
        &self,
        config: &RouterConfig,
        if_missing: IfMissing,
        edit: F,
    ) -> Result<usize, IstioError>
    where
        F: Fn(&mut Value, &VirtualServiceContext<'_>) -> Result<bool, CoreError>,
    {
        let targets = self.virtual_services(config);
        edit_all(
            &self.cluster,
            &targets,
            if_missing,
            &self.retry,
            |vs, doc| edit(doc, &vs.context()),
        )
        .await
    }

    /// Header and mirror routes: edits every configured VirtualService with
    /// `edit`, given where the route sends traffic.
    async fn edit_canary_route<F>(
        &self,
        rollout: &Rollout,
        change: Change<'_>,
        edit: F,
    ) -> Result<(), IstioError>
    where
        F: Fn(&mut Value, &VirtualServiceContext<'_>, &CanaryTarget) -> Result<bool, CoreError>,
    {
        let config = self.config(rollout)?;
        let target = self.canary_target(&config).await?;
        let written = self
            .edit_virtual_services(&config, IfMissing::Fail, |doc, ctx| edit(doc, ctx, &target))
            .await?;
        self.report(rollout, &config, written, change).await;
        Ok(())
    }

    /// Reports a change to the configured VirtualServices on the Rollout.
    async fn report(
        &self,
        rollout: &Rollout,
        config: &RouterConfig,
        written: usize,
        change: Change<'_>,
    ) {
        if written == 0 {
            // Nothing changed (the steady state): nothing to report.
            return;
        }
        let targets = self.virtual_services(config);
        let keys: Vec<&ObjectKey> = targets.iter().map(|(key, _)| key).collect();
        report(&self.cluster, rollout, &keys, written, change).await;
    }

    fn destination_rule_key(&self, config: &RouterConfig) -> Option<ObjectKey> {
        config
            .destination_rule
            .as_ref()
            .map(|dr| ObjectKey::new(self.destination_rules, &config.namespace, &dr.name))
    }

    /// SetWeight's and VerifyWeight's check of the DestinationRule: the
    /// canary and stable subsets it is configured with must exist. A
    /// missing DestinationRule is UpdateHash's error (the controller calls
    /// it first), not repeated here.
    async fn check_destination_rule(&self, config: &RouterConfig) -> Result<(), IstioError> {
        let (Some(reference), Some(key)) =
            (&config.destination_rule, self.destination_rule_key(config))
        else {
            return Ok(());
        };
        let doc = match read(&self.cluster, &key, Freshness::Cached, &self.retry).await {
            Ok(doc) => doc,
            Err(IstioError::Cluster {
                error: ClusterError::NotFound(_),
                ..
            }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if core::check_subsets(&doc, &key.to_string(), reference).is_ok() {
            return Ok(());
        }
        // Confirmed on a fresh read, so a lagging cache never fails a call.
        let doc = read(&self.cluster, &key, Freshness::Latest, &self.retry).await?;
        Ok(core::check_subsets(&doc, &key.to_string(), reference)?)
    }

    /// Where header and mirror routes point: the DestinationRule's host and
    /// canary subset, else the canary Service (see "SetHeaderRoute" in
    /// docs/behaviour.md).
    async fn canary_target(&self, config: &RouterConfig) -> Result<CanaryTarget, IstioError> {
        let Some(key) = self.destination_rule_key(config) else {
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
    type Error = IstioError;

    async fn init_plugin(&self) -> Result<(), IstioError> {
        self.cluster.init().await.map_err(IstioError::Init)
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
    ) -> Result<(), IstioError> {
        let config = self.config(rollout)?;
        core::check_additional_names(additional)?;
        let (Some(reference), Some(key)) =
            (&config.destination_rule, self.destination_rule_key(&config))
        else {
            // Host-based split: nothing to label, and no holds either.
            return Ok(());
        };
        let label = key.to_string();
        // Holds need the ReplicaSets, listed only when a subset would move.
        let mut current = read(&self.cluster, &key, Freshness::Cached, &self.retry).await?;
        if core::check_subsets(&current, &label, reference).is_err() {
            // Confirmed on a fresh read, so a lagging cache never fails a call.
            current = read(&self.cluster, &key, Freshness::Latest, &self.retry).await?;
            core::check_subsets(&current, &label, reference)?;
        }
        let holds = if core::switches_pending(&current, reference, canary_hash, stable_hash) {
            let replica_sets = retrying(&self.retry, || {
                self.cluster
                    .list_replica_sets(&config.namespace, &config.rollout_name)
            })
            .await
            .map_err(|error| IstioError::Cluster {
                context: format!("listing the ReplicaSets of rollout {}", rollout.key()),
                error,
            })?;
            core::switch_holds(
                &current,
                reference,
                rollout,
                canary_hash,
                stable_hash,
                &replica_sets,
            )
        } else {
            Vec::new()
        };
        let switch = |role: core::Role, hash| {
            if holds.iter().any(|hold| hold.role == role) {
                core::SubsetSwitch::Hold
            } else {
                core::SubsetSwitch::To(hash)
            }
        };
        let (canary, stable) = (
            switch(core::Role::Canary, canary_hash),
            switch(core::Role::Stable, stable_hash),
        );
        for hold in &holds {
            tracing::warn!(object = %key, "{hold}");
            let why = hold.to_string();
            report(
                &self.cluster,
                rollout,
                &[&key],
                0,
                Change::SwitchHeld { why },
            )
            .await;
        }
        let written = edit_all(
            &self.cluster,
            &[(key.clone(), ())],
            IfMissing::Fail,
            &self.retry,
            |(), doc| {
                core::update_destination_rule_holding(
                    doc, &label, reference, canary, stable, additional,
                )
            },
        )
        .await?;
        let shown = |switch| match switch {
            core::SubsetSwitch::Hold => "(held)",
            core::SubsetSwitch::To(hash) => hash,
        };
        let change = Change::SubsetsSwitched {
            canary_subset: &reference.canary_subset_name,
            canary_hash: shown(canary),
            stable_subset: &reference.stable_subset_name,
            stable_hash: shown(stable),
        };
        report(&self.cluster, rollout, &[&key], written, change).await;
        Ok(())
    }

    async fn set_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> Result<(), IstioError> {
        let config = self.config(rollout)?;
        let request = WeightRequest::new(desired_weight, additional, config.max_weight)?;
        self.check_destination_rule(&config).await?;
        let written = self
            .edit_virtual_services(&config, IfMissing::Fail, |doc, ctx| {
                core::set_weight(doc, ctx, request)
            })
            .await?;
        let change = Change::Weights {
            canary: desired_weight,
            additional,
        };
        self.report(rollout, &config, written, change).await;
        Ok(())
    }

    async fn set_header_route(
        &self,
        rollout: &Rollout,
        route: &SetHeaderRoute,
    ) -> Result<(), IstioError> {
        let change = Change::HeaderRoute(route);
        self.edit_canary_route(rollout, change, |doc, ctx, target| {
            core::set_header_route(doc, ctx, route, target)
        })
        .await
    }

    async fn set_mirror_route(
        &self,
        rollout: &Rollout,
        route: &SetMirrorRoute,
    ) -> Result<(), IstioError> {
        let change = Change::MirrorRoute(route);
        self.edit_canary_route(rollout, change, |doc, ctx, target| {
            core::set_mirror_route(doc, ctx, route, target)
        })
        .await
    }

    /// Verified when SetWeight with these arguments would change nothing.
    async fn verify_weight(
        &self,
        rollout: &Rollout,
        desired_weight: i32,
        additional: &[WeightDestination],
    ) -> Result<Verification, IstioError> {
        let config = self.config(rollout)?;
        let request = WeightRequest::new(desired_weight, additional, config.max_weight)?;
        self.check_destination_rule(&config).await?;
        for (key, vs) in self.virtual_services(&config) {
            let ctx = vs.context();
            let (_, would_change) = read_and_edit(
                &self.cluster,
                &key,
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

    async fn remove_managed_routes(&self, rollout: &Rollout) -> Result<(), IstioError> {
        let config = self.config(rollout)?;
        let written = self
            .edit_virtual_services(&config, IfMissing::Skip, |doc, ctx| {
                core::remove_managed_routes(doc, ctx, rollout)
            })
            .await?;
        self.report(rollout, &config, written, Change::ManagedRoutesRemoved)
            .await;
        Ok(())
    }

    /// This router never asks the controller to delay a weight change.
    async fn get_weight_update_deadline(
        &self,
        _rollout: &Rollout,
    ) -> Result<Option<SystemTime>, IstioError> {
        Ok(None)
    }

    async fn clear_weight_update_deadline(&self, _rollout: &Rollout) -> Result<(), IstioError> {
        Ok(())
    }
}
