package main

// The two Rollouts of /work/shared/fixtures/real-controller (rollout-host.yaml
// and rollout-subset.yaml) and the call arguments of their script-*.json,
// written as the Go values the controller would hold after decoding them.

import (
	"encoding/json"
	"sort"
)

type scenario struct {
	rollout    Rollout
	canaryHash string
	stableHash string
	// headerRoute and mirrorRoute are the SetHeaderRoute / SetMirrorRoute
	// arguments; additional goes with SetWeight 50 and its VerifyWeights.
	headerRoute SetHeaderRoute
	mirrorRoute SetMirrorRoute
	additional  []WeightDestination
}

var scenarios = map[string]func() scenario{
	"host":   hostScenario,
	"subset": subsetScenario,
}

func scenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func i32(v int32) *int32   { return &v }
func i64(v int64) *int64   { return &v }
func boolp(v bool) *bool   { return &v }
func ptrTime(v Time) *Time { return &v }

var rolloutTypeMeta = TypeMeta{Kind: "Rollout", APIVersion: "argoproj.io/v1alpha1"}

// headerRoute and mirrorRoute are the same in both scripts but for the name.
func headerRoute(name string) SetHeaderRoute {
	return SetHeaderRoute{
		Name: name,
		Match: []HeaderRoutingMatch{
			{HeaderName: "X-Canary", HeaderValue: &StringMatch{Exact: "yes"}},
			{HeaderName: "User-Agent", HeaderValue: &StringMatch{Prefix: "Mozilla/5.0 (iPhone"}},
			{HeaderName: "X-Tenant", HeaderValue: &StringMatch{Regex: "^(acme|globex)-[0-9]+$"}},
		},
	}
}

func mirrorRoute(name string) SetMirrorRoute {
	return SetMirrorRoute{
		Name:       name,
		Percentage: i32(35),
		Match: []RouteMatch{
			{
				Method: &StringMatch{Exact: "GET"},
				Path:   &StringMatch{Prefix: "/api/v1"},
				Headers: map[string]StringMatch{
					"x-debug":  {Exact: "1"},
					"x-region": {Regex: "eu-.*"},
				},
			},
			{Method: &StringMatch{Regex: "P(UT|OST)"}, Path: &StringMatch{Regex: "/orders/[0-9]+"}},
			{Headers: map[string]StringMatch{"user-agent": {Prefix: "curl/"}}},
		},
	}
}

func hostScenario() scenario {
	const canaryHash, stableHash = "6b9d7c8f5", "7c4b9d6f8d"
	ro := Rollout{
		TypeMeta: rolloutTypeMeta,
		ObjectMeta: ObjectMeta{
			Name:              "rollouts-demo",
			Namespace:         "demo",
			UID:               "5f0c3b7e-8a44-4e0e-9a59-3f1f4f6f2c11",
			Generation:        7,
			ResourceVersion:   "184467",
			CreationTimestamp: at("2025-01-10T08:00:00Z"),
			Labels:            map[string]string{"app": "rollouts-demo", "team": "web"},
			Annotations: map[string]string{
				"rollout.argoproj.io/revision":                                   "3",
				"notifications.argoproj.io/subscribe.on-rollout-completed.slack": "deployments",
			},
			ManagedFields: []ManagedFieldsEntry{{
				Manager:    "kubectl-client-side-apply",
				Operation:  "Update",
				APIVersion: "argoproj.io/v1alpha1",
				Time:       ptrTime(at("2025-01-10T08:00:00Z")),
				FieldsType: "FieldsV1",
				FieldsV1:   &FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)},
			}},
		},
		Spec: RolloutSpec{
			Replicas:                i32(4),
			RevisionHistoryLimit:    i32(3),
			ProgressDeadlineSeconds: i32(600),
			Selector:                &LabelSelector{MatchLabels: map[string]string{"app": "rollouts-demo"}},
			Template: PodTemplateSpec{
				ObjectMeta: ObjectMeta{
					Labels:      map[string]string{"app": "rollouts-demo", "version": "v2"},
					Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
				},
				Spec: PodSpec{
					ServiceAccountName:            "rollouts-demo",
					TerminationGracePeriodSeconds: i64(30),
					Containers: []Container{{
						Name:            "rollouts-demo",
						Image:           "argoproj/rollouts-demo:blue",
						ImagePullPolicy: "IfNotPresent",
						Args:            []string{"--listen-addr", ":8080"},
						Ports:           []ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}},
						Env: []EnvVar{
							{Name: "LOG_LEVEL", Value: "debug"},
							{Name: "POD_NAME", ValueFrom: &EnvVarSource{FieldRef: &ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "DB_PASSWORD", ValueFrom: &EnvVarSource{SecretKeyRef: &SecretKeySelector{
								LocalObjectReference: LocalObjectReference{Name: "demo-db"},
								Key:                  "password",
								Optional:             boolp(true),
							}}},
						},
						Resources: ResourceRequirements{
							Requests: ResourceList{"cpu": {Format: "DecimalSI"}, "memory": {Format: "BinarySI"}},
							Limits: ResourceList{
								"cpu":               {Format: "DecimalSI"},
								"memory":            {Format: "BinarySI"},
								"ephemeral-storage": {Format: "BinarySI"},
							},
						},
						ReadinessProbe: &Probe{
							ProbeHandler:        ProbeHandler{HTTPGet: &HTTPGetAction{Path: "/healthz", Port: intOrStrValue("http"), Scheme: "HTTP"}},
							InitialDelaySeconds: 5,
							PeriodSeconds:       10,
							TimeoutSeconds:      2,
							SuccessThreshold:    1,
							FailureThreshold:    3,
						},
						LivenessProbe: &Probe{
							ProbeHandler:     ProbeHandler{TCPSocket: &TCPSocketAction{Port: *intOrInt(8080)}},
							PeriodSeconds:    20,
							FailureThreshold: 3,
						},
						VolumeMounts: []VolumeMount{{Name: "config", MountPath: "/etc/demo", ReadOnly: true}},
					}},
					Volumes: []Volume{{
						Name:         "config",
						VolumeSource: VolumeSource{ConfigMap: &ConfigMapVolumeSource{LocalObjectReference: LocalObjectReference{Name: "rollouts-demo-config"}}},
					}},
				},
			},
			Strategy: RolloutStrategy{Canary: &CanaryStrategy{
				CanaryService:  "rollouts-demo-canary",
				StableService:  "rollouts-demo-stable",
				MaxSurge:       intOrStr("25%"),
				MaxUnavailable: intOrInt(0),
				TrafficRouting: &RolloutTrafficRouting{
					ManagedRoutes: []MangedRoutes{{Name: "header-route-1"}, {Name: "mirror-route-1"}},
					Plugins: map[string]json.RawMessage{
						"argoproj-labs/istio": json.RawMessage(`{"virtualService":{"name":"rollout-vsvc","routes":["primary"]}}`),
					},
				},
				Steps: []CanaryStep{
					{SetWeight: i32(20)},
					{SetHeaderRoute: &SetHeaderRoute{
						Name:  "header-route-1",
						Match: []HeaderRoutingMatch{{HeaderName: "X-Canary", HeaderValue: &StringMatch{Exact: "yes"}}},
					}},
					{SetMirrorRoute: &SetMirrorRoute{
						Name:       "mirror-route-1",
						Percentage: i32(35),
						Match:      []RouteMatch{{Method: &StringMatch{Exact: "GET"}, Path: &StringMatch{Prefix: "/api"}}},
					}},
					{Pause: &RolloutPause{Duration: intOrStr("30s")}},
					{SetWeight: i32(50)},
					{Pause: &RolloutPause{}},
				},
			}},
		},
		Status: RolloutStatus{
			Phase:              "Paused",
			Message:            "CanaryPauseStep",
			ObservedGeneration: "7",
			CurrentPodHash:     canaryHash,
			CurrentStepHash:    "5f8d6f9c7b",
			CurrentStepIndex:   i32(1),
			StableRS:           stableHash,
			Replicas:           5,
			UpdatedReplicas:    1,
			ReadyReplicas:      5,
			AvailableReplicas:  5,
			Selector:           "app=rollouts-demo",
			Canary: CanaryStatus{Weights: &TrafficWeights{
				Canary: WeightDestination{Weight: 20, ServiceName: "rollouts-demo-canary", PodTemplateHash: canaryHash},
				Stable: WeightDestination{Weight: 80, ServiceName: "rollouts-demo-stable", PodTemplateHash: stableHash},
			}},
			PauseConditions: []PauseCondition{{Reason: "CanaryPauseStep", StartTime: at("2025-01-10T09:12:30Z")}},
			Conditions: []RolloutCondition{
				condition("Available", "True", "2025-01-10T08:01:12Z", "2025-01-10T08:01:12Z", "AvailableReason", "Rollout has minimum availability"),
				condition("Progressing", "True", "2025-01-10T09:12:30Z", "2025-01-10T09:10:02Z", "RolloutPaused", "Rollout is paused"),
				condition("Paused", "True", "2025-01-10T09:12:30Z", "2025-01-10T09:12:30Z", "RolloutPaused", "Rollout is paused"),
			},
		},
	}
	return scenario{
		rollout:     ro,
		canaryHash:  canaryHash,
		stableHash:  stableHash,
		headerRoute: headerRoute("header-route-1"),
		mirrorRoute: mirrorRoute("mirror-route-1"),
		additional: []WeightDestination{
			{ServiceName: "rollouts-demo-preview", PodTemplateHash: "5d4c3b2a1", Weight: 10},
			{ServiceName: "rollouts-demo-exp", PodTemplateHash: "8e7f6a5b4", Weight: 5},
		},
	}
}

func subsetScenario() scenario {
	const canaryHash, stableHash = "58c7b6fd4d", "9f6d5c4b7"
	ro := Rollout{
		TypeMeta: rolloutTypeMeta,
		ObjectMeta: ObjectMeta{
			Name:              "reviews",
			Namespace:         "bookinfo",
			UID:               "0b7e9d61-2f3c-4a8e-b7a2-9d2f1c3e4b55",
			Generation:        3,
			ResourceVersion:   "99120",
			CreationTimestamp: at("2025-02-01T12:00:00Z"),
			Labels:            map[string]string{"app": "reviews"},
		},
		Spec: RolloutSpec{
			Replicas: i32(3),
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Template: PodTemplateSpec{
				ObjectMeta: ObjectMeta{Labels: map[string]string{"app": "reviews"}},
				Spec: PodSpec{Containers: []Container{{
					Name:  "reviews",
					Image: "docker.io/istio/examples-bookinfo-reviews-v2:1.20.1",
					Ports: []ContainerPort{{ContainerPort: 9080, Name: "http-web"}},
					Env: []EnvVar{
						{Name: "LOG_DIR", Value: "/var/log/app"},
						{Name: "JAVA_OPTS", Value: "-Xmx256m -XX:+UseG1GC"},
					},
					Resources: ResourceRequirements{
						Requests: ResourceList{"cpu": {Format: "DecimalSI"}, "memory": {Format: "BinarySI"}},
						Limits:   ResourceList{"cpu": {Format: "DecimalSI"}, "memory": {Format: "BinarySI"}},
					},
					ReadinessProbe: &Probe{
						ProbeHandler:  ProbeHandler{HTTPGet: &HTTPGetAction{Path: "/health", Port: *intOrInt(9080)}},
						PeriodSeconds: 5,
					},
					StartupProbe: &Probe{
						ProbeHandler:     ProbeHandler{Exec: &ExecAction{Command: []string{"sh", "-c", "test -f /var/run/ready"}}},
						FailureThreshold: 30,
						PeriodSeconds:    2,
					},
				}}},
			},
			Strategy: RolloutStrategy{Canary: &CanaryStrategy{
				TrafficRouting: &RolloutTrafficRouting{
					ManagedRoutes: []MangedRoutes{{Name: "set-header-1"}, {Name: "mirror-1"}},
					Plugins: map[string]json.RawMessage{
						"argoproj-labs/istio": json.RawMessage(`{"destinationRule":{"canarySubsetName":"canary","name":"rollout-destrule","stableSubsetName":"stable"},` +
							`"virtualService":{"name":"reviews-vsvc","routes":["primary"]}}`),
					},
				},
				Steps: []CanaryStep{
					{SetWeight: i32(10)},
					{Pause: &RolloutPause{Duration: intOrStr("1m")}},
					{SetWeight: i32(30)},
					{Pause: &RolloutPause{}},
				},
			}},
		},
		Status: RolloutStatus{
			Phase:              "Progressing",
			Message:            "more replicas need to be updated",
			ObservedGeneration: "3",
			CurrentPodHash:     canaryHash,
			CurrentStepHash:    "6c9f5d7b8",
			CurrentStepIndex:   i32(0),
			StableRS:           stableHash,
			Replicas:           4,
			UpdatedReplicas:    1,
			ReadyReplicas:      3,
			AvailableReplicas:  3,
			Selector:           "app=reviews",
			Canary: CanaryStatus{Weights: &TrafficWeights{
				Canary: WeightDestination{Weight: 0, PodTemplateHash: canaryHash},
				Stable: WeightDestination{Weight: 100, PodTemplateHash: stableHash},
			}},
			Conditions: []RolloutCondition{
				condition("Progressing", "True", "2025-02-01T12:05:41Z", "2025-02-01T12:05:40Z", "ReplicaSetUpdated", `ReplicaSet "reviews-58c7b6fd4d" is progressing.`),
				condition("Available", "False", "2025-02-01T12:05:40Z", "2025-02-01T12:05:40Z", "AvailableReason", "Rollout does not have minimum availability"),
			},
		},
	}
	return scenario{
		rollout:     ro,
		canaryHash:  canaryHash,
		stableHash:  stableHash,
		headerRoute: headerRoute("set-header-1"),
		mirrorRoute: mirrorRoute("mirror-1"),
	}
}

func condition(kind, status, updated, transitioned, reason, message string) RolloutCondition {
	return RolloutCondition{
		Type:               kind,
		Status:             status,
		LastUpdateTime:     at(updated),
		LastTransitionTime: at(transitioned),
		Reason:             reason,
		Message:            message,
	}
}
