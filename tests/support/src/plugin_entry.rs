//! A plugin entry of `argo-rollouts-config` as the controller reads it
//! (`PluginItem` in argo-rollouts' `utils/plugin/types/types.go`, v1.10.2):
//! any other key is an error, as it would be a key the controller ignores.

use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginItem {
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default, rename = "headersFrom")]
    pub headers_from: Vec<HeadersFrom>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeadersFrom {
    #[serde(rename = "secretRef")]
    pub secret_ref: SecretRef,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
}
