//! The one stand-in of the tier: no kubelet runs here, so pods the real
//! ReplicaSet controller creates are never started. This loop does what a
//! kubelet reports once a pod's containers are up: it marks each pod
//! Running and Ready through the pod status subresource. Everything that
//! follows (ReplicaSet availability, the controller's waits) is real.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinHandle;

pub struct ReadinessStandIn {
    task: JoinHandle<()>,
}

impl ReadinessStandIn {
    pub fn start(client: Client) -> ReadinessStandIn {
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let mut ip = 0u32;
            loop {
                let held = held_namespaces(&client).await;
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for pod in list.items {
                        if pod.metadata.deletion_timestamp.is_some()
                            || is_ready(&pod)
                            || pod
                                .metadata
                                .namespace
                                .as_ref()
                                .is_some_and(|ns| held.contains(ns))
                        {
                            continue;
                        }
                        ip = ip.wrapping_add(1);
                        let _ = mark_ready(&client, &pod, ip).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        ReadinessStandIn { task }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// A scenario holds its pods back (a slow-starting application) with a
/// ConfigMap of this name in its namespace whose `hold` is `"true"`: while
/// it says so, no pod of that namespace becomes Ready.
const HOLD_CONFIGMAP: &str = "e2e-readiness";

async fn held_namespaces(client: &Client) -> HashSet<String> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("metadata.name={HOLD_CONFIGMAP}"));
    match api.list(&params).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|cm| {
                cm.data
                    .as_ref()
                    .and_then(|d| d.get("hold"))
                    .is_some_and(|v| v == "true")
            })
            .filter_map(|cm| cm.metadata.namespace)
            .collect(),
        Err(_) => HashSet::new(),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn mark_ready(client: &Client, pod: &Pod, ip: u32) -> Result<(), kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let containers: Vec<_> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().collect())
        .unwrap_or_default();
    let container_statuses: Vec<_> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}}
            })
        })
        .collect();
    let address = format!("10.244.{}.{}", (ip >> 8) & 0xff, ip & 0xff);
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let status = json!({
        "status": {
            "phase": "Running",
            "podIP": address,
            "podIPs": [{"ip": address}],
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                condition("PodScheduled"),
                condition("Initialized"),
                condition("ContainersReady"),
                condition("Ready"),
            ],
            "containerStatuses": container_statuses,
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(|_| ())
}
