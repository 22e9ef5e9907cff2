//! Objects by kind and name on the real API server: applying manifests
//! (server-side apply, as `kubectl apply --server-side` does), reading,
//! patching; kinds are resolved through discovery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;
use tokio::sync::Mutex;

#[derive(Clone)]
pub struct Objects {
    client: Client,
    kinds: Arc<Mutex<HashMap<String, (ApiResource, ApiCapabilities)>>>,
}

impl Objects {
    pub fn new(client: Client) -> Objects {
        Objects {
            client,
            kinds: Arc::default(),
        }
    }

    /// The API resource serving `kind` (`Kind` or `Kind.group`), found by
    /// discovery; discovery runs again when a kind is new (CRDs arrive).
    pub async fn resource(&self, kind: &str) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
        let mut kinds = self.kinds.lock().await;
        if let Some(found) = kinds.get(kind) {
            return Ok(found.clone());
        }
        // A group whose CRDs were just created may answer 404 for a moment.
        let mut attempts = 0;
        let discovery = loop {
            match Discovery::new(self.client.clone()).run().await {
                Ok(discovery) => break discovery,
                Err(_) if attempts < 40 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(anyhow!(e).context("API discovery")),
            }
        };
        let (name, group) = match kind.split_once('.') {
            Some((name, group)) => (name, Some(group)),
            None => (kind, None),
        };
        for api_group in discovery.groups() {
            if group.is_some_and(|g| g != api_group.name()) {
                continue;
            }
            for (resource, capabilities) in api_group.recommended_resources() {
                if resource.kind == name {
                    kinds.insert(kind.to_string(), (resource.clone(), capabilities.clone()));
                    return Ok((resource, capabilities));
                }
            }
        }
        bail!("the API server serves no kind {kind}")
    }

    pub async fn api(&self, kind: &str, namespace: &str) -> anyhow::Result<Api<DynamicObject>> {
        let (resource, capabilities) = self.resource(kind).await?;
        Ok(match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Server-side apply of every document in a YAML text. Documents
    /// without a namespace land in `namespace` (when given).
    pub async fn apply_text(
        &self,
        text: &str,
        namespace: Option<&str>,
        manager: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let mut applied = Vec::new();
        for document in yaml_documents(text)? {
            applied.push(self.apply(document, namespace, manager).await?);
        }
        Ok(applied)
    }

    pub async fn apply_file(
        &self,
        path: &Path,
        namespace: Option<&str>,
        manager: &str,
    ) -> anyhow::Result<Vec<Value>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        self.apply_text(&text, namespace, manager)
            .await
            .with_context(|| format!("applying {}", path.display()))
    }

    pub async fn apply(
        &self,
        mut document: Value,
        namespace: Option<&str>,
        manager: &str,
    ) -> anyhow::Result<Value> {
        let (kind, name) = kind_and_name(&document)?;
        let group_kind = match document["apiVersion"].as_str() {
            Some(api_version) => match api_version.split_once('/') {
                Some((group, _)) => format!("{kind}.{group}"),
                None => kind.clone(),
            },
            None => bail!("{kind} {name} has no apiVersion"),
        };
        let (mut resource, capabilities) = self.resource(&group_kind).await?;
        // Served at the version the document is written in.
        if let Some(api_version) = document["apiVersion"].as_str() {
            resource.version = api_version
                .rsplit('/')
                .next()
                .unwrap_or(api_version)
                .to_string();
            resource.api_version = api_version.to_string();
        }
        let namespace = match capabilities.scope {
            Scope::Namespaced => {
                let ns = document["metadata"]["namespace"]
                    .as_str()
                    .map(str::to_string)
                    .or(namespace.map(str::to_string))
                    .unwrap_or_else(|| "default".to_string());
                document["metadata"]["namespace"] = Value::String(ns.clone());
                Some(ns)
            }
            Scope::Cluster => None,
        };
        if let Some(ns) = &namespace {
            self.ensure_namespace(ns).await?;
        }
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&document),
            )
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
        Ok(serde_json::to_value(applied)?)
    }

    pub async fn ensure_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let api: Api<DynamicObject> = self.api("Namespace", "").await?;
        if api.get_opt(namespace).await?.is_none() {
            let ns = serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
            });
            api.patch(
                namespace,
                &PatchParams::apply("e2e-installer"),
                &Patch::Apply(&ns),
            )
            .await
            .with_context(|| format!("creating namespace {namespace}"))?;
        }
        Ok(())
    }

    pub async fn get(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        let api = self.api(kind, namespace).await?;
        Ok(match api.get_opt(name).await? {
            Some(object) => Some(serde_json::to_value(object)?),
            None => None,
        })
    }

    pub async fn list(&self, kind: &str, namespace: &str) -> anyhow::Result<Vec<Value>> {
        let api = self.api(kind, namespace).await?;
        let list = api.list(&Default::default()).await?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(Into::into))
            .collect()
    }

    /// Events of a namespace in the core/v1 shape (`involvedObject`,
    /// `reason`, `message`), as `kubectl describe` shows them.
    pub async fn core_events(&self, namespace: &str) -> anyhow::Result<Vec<Value>> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        let list = api.list(&Default::default()).await?;
        list.items
            .into_iter()
            .map(|e| serde_json::to_value(e).map_err(Into::into))
            .collect()
    }

    pub async fn patch(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        patch: &Patch<Value>,
        manager: &str,
    ) -> anyhow::Result<Value> {
        let api = self.api(kind, namespace).await?;
        let params = PatchParams {
            field_manager: Some(manager.to_string()),
            ..Default::default()
        };
        let patched = api
            .patch(name, &params, patch)
            .await
            .with_context(|| format!("patching {kind} {namespace}/{name}"))?;
        Ok(serde_json::to_value(patched)?)
    }

    /// Waits until every CRD in the file reports `Established`.
    pub async fn wait_crds_established(&self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for document in yaml_documents(&text)? {
            let (kind, name) = kind_and_name(&document)?;
            if kind != "CustomResourceDefinition" {
                continue;
            }
            loop {
                let crd = self.get("CustomResourceDefinition", "", &name).await?;
                let established = crd
                    .as_ref()
                    .and_then(|crd| crd["status"]["conditions"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("CRD {name} not established within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // New kinds: discovery must run again.
        self.kinds.lock().await.clear();
        Ok(())
    }

    /// A token for the ServiceAccount `namespace/name` (the TokenRequest
    /// API, as the kubelet mounts one into a pod).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let api = self.api("ServiceAccount", namespace).await?;
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200}
        });
        let response: Value = api
            .create_subresource("token", name, &Default::default(), &request)
            .await
            .context("requesting a ServiceAccount token")?;
        response["status"]["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("TokenRequest returned no token: {response}"))
    }
}

/// The documents of a multi-document YAML text, as JSON (empty ones skipped).
pub fn yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| anyhow!("YAML document {}: {e}", index + 1))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

pub fn kind_and_name(document: &Value) -> anyhow::Result<(String, String)> {
    let kind = document["kind"]
        .as_str()
        .ok_or_else(|| anyhow!("a document has no kind: {document}"))?;
    let name = document["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("a {kind} has no metadata.name"))?;
    Ok((kind.to_string(), name.to_string()))
}
