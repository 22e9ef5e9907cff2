//! Call arguments, shaped as in `pkg/apis/rollouts/v1alpha1` (JSON names).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::null_as_default;

/// An extra destination of a running experiment (`additionalDestinations`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WeightDestination {
    pub weight: i32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod_template_hash: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StringMatch {
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub exact: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub prefix: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub regex: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderRoutingMatch {
    pub header_name: String,
    pub header_value: Option<StringMatch>,
}

/// `setHeaderRoute`: a step that routes matching requests to the canary.
/// A missing, null or empty `match` all mean "remove the route" (gob drops
/// empty slices, so the three cannot be told apart on the wire anyway).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetHeaderRoute {
    pub name: String,
    #[serde(
        rename = "match",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub matches: Vec<HeaderRoutingMatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub headers: BTreeMap<String, StringMatch>,
}

/// `setMirrorRoute`: a step that mirrors matching requests to the canary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetMirrorRoute {
    pub name: String,
    #[serde(
        rename = "match",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub matches: Vec<RouteMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<i32>,
}
