// Command argocd-normalize runs Argo CD's own managedFieldsManagers
// normalization (github.com/argoproj/argo-cd/v3/util/argo/managedfields,
// what `ignoreDifferences: [{managedFieldsManagers: [...]}]` calls) on a
// live object and its desired manifest, both JSON files, and prints
// whether their specs then compare equal, with both normalized specs.
//
// Usage: argocd-normalize LIVE.json DESIRED.json MANAGER...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"

	"github.com/argoproj/argo-cd/v3/util/argo/managedfields"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func load(path string) (*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func run(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: argocd-normalize LIVE.json DESIRED.json MANAGER")
	}
	live, err := load(args[0])
	if err != nil {
		return err
	}
	desired, err := load(args[1])
	if err != nil {
		return err
	}
	// nil: the schema deduced from the objects, in which every list is
	// atomic, as Istio's CRDs declare no list types for these fields.
	l, d, err := managedfields.Normalize(live, desired, args[2:], nil)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"inSync":      reflect.DeepEqual(l.Object["spec"], d.Object["spec"]),
		"liveSpec":    l.Object["spec"],
		"desiredSpec": d.Object["spec"],
	})
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-normalize:", err)
		os.Exit(1)
	}
}
