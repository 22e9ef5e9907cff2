//go:build tools

// Package tools pins modules the end-to-end tier reads files from rather than
// compiles: istio.io/api ships Istio's CRDs with their structural schemas in
// kubernetes/customresourcedefinitions.gen.yaml.
package tools

import _ "istio.io/api/networking/v1alpha3"
