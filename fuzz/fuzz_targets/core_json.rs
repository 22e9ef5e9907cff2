//! The core's JSON inputs: a Rollout, the call's arguments and the
//! VirtualService and DestinationRule documents, through every edit.
//! Input: `{"rollout": …, "virtualService": …, "destinationRule": …,
//! "weight": n, "additional": […]}`.
#![no_main]

use istio_router::istio::DEFAULT_PLUGIN_NAME;
use istio_router::istio::config::RouterConfig;
use istio_router::istio::core::{self, CanaryTarget, VirtualServiceContext, WeightRequest};
use istio_router::model::{Rollout, WeightDestination};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Ok(rollout) = Rollout::from_json(input.remove("rollout").unwrap_or_default()) else {
        return;
    };
    let Ok(config) = RouterConfig::from_rollout(&rollout, DEFAULT_PLUGIN_NAME) else {
        return;
    };
    let additional: Vec<WeightDestination> = input
        .remove("additional")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let weight = input
        .get("weight")
        .and_then(Value::as_i64)
        .and_then(|w| i32::try_from(w).ok())
        .unwrap_or(0);
    let vs = input.remove("virtualService").unwrap_or_default();
    let target = CanaryTarget {
        host: config.canary_service.clone(),
        subset: None,
    };
    for reference in &config.virtual_services {
        let ctx = VirtualServiceContext {
            object: "VirtualService fuzz",
            config: &config,
            reference,
        };
        if let Ok(request) = WeightRequest::new(weight, &additional, config.max_weight) {
            let _ = core::set_weight(&mut vs.clone(), &ctx, request);
        }
        for step in rollout
            .canary()
            .map(|c| c.steps.as_slice())
            .unwrap_or_default()
        {
            if let Some(route) = &step.set_header_route {
                let _ = core::set_header_route(&mut vs.clone(), &ctx, route, &target);
            }
            if let Some(route) = &step.set_mirror_route {
                let _ = core::set_mirror_route(&mut vs.clone(), &ctx, route, &target);
            }
        }
        let _ = core::remove_managed_routes(&mut vs.clone(), &ctx, &rollout);
    }
    if let (Some(reference), Some(mut dr)) =
        (&config.destination_rule, input.remove("destinationRule"))
    {
        let _ = core::update_destination_rule(
            &mut dr,
            "DestinationRule fuzz",
            reference,
            "canary",
            "stable",
            &additional,
        );
    }
});
