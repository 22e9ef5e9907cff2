package main

// Rollouts as the controller holds them: v1alpha1.Rollout values with a
// full pod template (ports, env from fieldRef and secretKeyRef, resources,
// probes, volumes) and a status (hashes, weights, pause conditions,
// conditions with timestamps). -record sends them to record
// tests/fixtures/real-controller (see record.go).

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }
func boolp(v bool) *bool { return &v }

func at(rfc3339 string) metav1.Time {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic(err)
	}
	return metav1.NewTime(t)
}

func intOrStr(s string) *intstr.IntOrString {
	v := intstr.FromString(s)
	return &v
}

func intOrInt(i int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(i))
	return &v
}

// podTemplate is a realistic pod template for the application app.
func podTemplate(app, image string, port int32) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": app, "version": "v2"},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(port)},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:            app,
			TerminationGracePeriodSeconds: i64(30),
			Containers: []corev1.Container{{
				Name:            app,
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"--listen-addr", fmt.Sprintf(":%d", port)},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
				Env: []corev1.EnvVar{
					{Name: "LOG_LEVEL", Value: "debug"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: app + "-db"},
						Key:                  "password",
						Optional:             boolp(true),
					}}},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("100m"),
						corev1.ResourceMemory: resource.MustParse("128Mi"),
					},
					Limits: corev1.ResourceList{
						corev1.ResourceCPU:              resource.MustParse("500m"),
						corev1.ResourceMemory:           resource.MustParse("256Mi"),
						corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
					},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
					InitialDelaySeconds: 5,
					PeriodSeconds:       10,
					TimeoutSeconds:      2,
					SuccessThreshold:    1,
					FailureThreshold:    3,
				},
				LivenessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}},
					PeriodSeconds:    20,
					FailureThreshold: 3,
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + app, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{
				Name: "config",
				VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"},
				}},
			}},
		},
	}
}

func condition(kind v1alpha1.RolloutConditionType, status corev1.ConditionStatus, updated, transitioned, reason, message string) v1alpha1.RolloutCondition {
	return v1alpha1.RolloutCondition{
		Type:               kind,
		Status:             status,
		LastUpdateTime:     at(updated),
		LastTransitionTime: at(transitioned),
		Reason:             reason,
		Message:            message,
	}
}

// enrich gives a Rollout taken from a conformance case what the controller's
// Rollout always carries and the case leaves out: identity metadata, a
// selector, a pod template and the status fields the controller maintains.
// It fills only empty fields, and none the plugin reads (labels,
// annotations, replicas, strategy, abort, promoteFull, stableRS,
// currentPodHash, currentStepIndex, canary status stay as the case has them).
func enrich(ro *v1alpha1.Rollout) {
	h := fnv.New64a()
	h.Write([]byte(ro.Namespace + "/" + ro.Name))
	sum := h.Sum64()
	if ro.UID == "" {
		ro.UID = types.UID(fmt.Sprintf("%08x-%04x-4%03x-9%03x-%012x", uint32(sum), uint16(sum>>32), sum>>48&0xfff, sum>>20&0xfff, sum&0xffffffffffff))
	}
	if ro.Generation == 0 {
		ro.Generation = 4
	}
	if ro.ResourceVersion == "" {
		ro.ResourceVersion = fmt.Sprint(100000 + sum%900000)
	}
	if ro.CreationTimestamp.IsZero() {
		ro.CreationTimestamp = at("2025-01-10T08:00:00Z")
	}
	if ro.ManagedFields == nil {
		ro.ManagedFields = []metav1.ManagedFieldsEntry{{
			Manager:    "kubectl-client-side-apply",
			Operation:  metav1.ManagedFieldsOperationUpdate,
			APIVersion: "argoproj.io/v1alpha1",
			Time:       &metav1.Time{Time: at("2025-01-10T08:00:00Z").Time},
			FieldsType: "FieldsV1",
			FieldsV1:   &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:strategy":{}}}`)},
		}}
	}
	app := ro.Name
	if app == "" {
		app = "app"
	}
	if ro.Spec.Selector == nil {
		ro.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	if ro.Spec.RevisionHistoryLimit == nil {
		ro.Spec.RevisionHistoryLimit = i32(3)
	}
	if len(ro.Spec.Template.Spec.Containers) == 0 && ro.Spec.WorkloadRef == nil {
		ro.Spec.Template = podTemplate(app, "argoproj/rollouts-demo:blue", 8080)
	}
	st := &ro.Status
	if st.Phase == "" {
		st.Phase = v1alpha1.RolloutPhasePaused
		st.Message = "CanaryPauseStep"
	}
	if st.ObservedGeneration == "" {
		st.ObservedGeneration = fmt.Sprint(ro.Generation)
	}
	if st.CurrentStepHash == "" {
		st.CurrentStepHash = "5f8d6f9c7b"
	}
	if st.Replicas == 0 {
		st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas = 5, 1, 5, 5
	}
	if st.Selector == "" {
		st.Selector = "app=" + app
	}
	if st.Conditions == nil {
		st.Conditions = []v1alpha1.RolloutCondition{
			condition(v1alpha1.RolloutAvailable, corev1.ConditionTrue, "2025-01-10T08:01:12Z", "2025-01-10T08:01:12Z", "AvailableReason", "Rollout has minimum availability"),
			condition(v1alpha1.RolloutProgressing, corev1.ConditionTrue, "2025-01-10T09:12:30Z", "2025-01-10T09:10:02Z", "RolloutPaused", "Rollout is paused"),
		}
	}
}

// scenario is one of the two Rollouts of the recorded controller sessions
// (tests/fixtures/real-controller/host and subset) with the call arguments
// of their scripts.
type scenario struct {
	rollout     v1alpha1.Rollout
	canaryHash  string
	stableHash  string
	headerRoute v1alpha1.SetHeaderRoute
	mirrorRoute v1alpha1.SetMirrorRoute
	additional  []v1alpha1.WeightDestination
}

var scenarios = map[string]func() scenario{
	"host":   hostScenario,
	"subset": subsetScenario,
}

func headerRoute(name string) v1alpha1.SetHeaderRoute {
	return v1alpha1.SetHeaderRoute{
		Name: name,
		Match: []v1alpha1.HeaderRoutingMatch{
			{HeaderName: "X-Canary", HeaderValue: &v1alpha1.StringMatch{Exact: "yes"}},
			{HeaderName: "User-Agent", HeaderValue: &v1alpha1.StringMatch{Prefix: "Mozilla/5.0 (iPhone"}},
			{HeaderName: "X-Tenant", HeaderValue: &v1alpha1.StringMatch{Regex: "^(acme|globex)-[0-9]+$"}},
		},
	}
}

func mirrorRoute(name string) v1alpha1.SetMirrorRoute {
	return v1alpha1.SetMirrorRoute{
		Name:       name,
		Percentage: i32(35),
		Match: []v1alpha1.RouteMatch{
			{
				Method: &v1alpha1.StringMatch{Exact: "GET"},
				Path:   &v1alpha1.StringMatch{Prefix: "/api/v1"},
				Headers: map[string]v1alpha1.StringMatch{
					"x-debug":  {Exact: "1"},
					"x-region": {Regex: "eu-.*"},
				},
			},
			{Method: &v1alpha1.StringMatch{Regex: "P(UT|OST)"}, Path: &v1alpha1.StringMatch{Regex: "/orders/[0-9]+"}},
			{Headers: map[string]v1alpha1.StringMatch{"user-agent": {Prefix: "curl/"}}},
		},
	}
}

var rolloutTypeMeta = metav1.TypeMeta{Kind: "Rollout", APIVersion: "argoproj.io/v1alpha1"}

func hostScenario() scenario {
	const canaryHash, stableHash = "6b9d7c8f5", "7c4b9d6f8d"
	ro := v1alpha1.Rollout{
		TypeMeta: rolloutTypeMeta,
		ObjectMeta: metav1.ObjectMeta{
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
		},
		Spec: v1alpha1.RolloutSpec{
			Replicas:                i32(4),
			ProgressDeadlineSeconds: i32(600),
			Template:                podTemplate("rollouts-demo", "argoproj/rollouts-demo:blue", 8080),
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
				CanaryService:  "rollouts-demo-canary",
				StableService:  "rollouts-demo-stable",
				MaxSurge:       intOrStr("25%"),
				MaxUnavailable: intOrInt(0),
				TrafficRouting: &v1alpha1.RolloutTrafficRouting{
					ManagedRoutes: []v1alpha1.MangedRoutes{{Name: "header-route-1"}, {Name: "mirror-route-1"}},
					Plugins: map[string]json.RawMessage{
						"argoproj-labs/istio": json.RawMessage(`{"virtualService":{"name":"rollout-vsvc","routes":["primary"]}}`),
					},
				},
				Steps: []v1alpha1.CanaryStep{
					{SetWeight: i32(20)},
					{SetHeaderRoute: &v1alpha1.SetHeaderRoute{
						Name:  "header-route-1",
						Match: []v1alpha1.HeaderRoutingMatch{{HeaderName: "X-Canary", HeaderValue: &v1alpha1.StringMatch{Exact: "yes"}}},
					}},
					{SetMirrorRoute: &v1alpha1.SetMirrorRoute{
						Name:       "mirror-route-1",
						Percentage: i32(35),
						Match:      []v1alpha1.RouteMatch{{Method: &v1alpha1.StringMatch{Exact: "GET"}, Path: &v1alpha1.StringMatch{Prefix: "/api"}}},
					}},
					{Pause: &v1alpha1.RolloutPause{Duration: intOrStr("30s")}},
					{SetWeight: i32(50)},
					{Pause: &v1alpha1.RolloutPause{}},
				},
			}},
		},
		Status: v1alpha1.RolloutStatus{
			CurrentPodHash:   canaryHash,
			CurrentStepIndex: i32(1),
			StableRS:         stableHash,
			Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{
				Canary: v1alpha1.WeightDestination{Weight: 20, ServiceName: "rollouts-demo-canary", PodTemplateHash: canaryHash},
				Stable: v1alpha1.WeightDestination{Weight: 80, ServiceName: "rollouts-demo-stable", PodTemplateHash: stableHash},
			}},
			PauseConditions: []v1alpha1.PauseCondition{{Reason: v1alpha1.PauseReasonCanaryPauseStep, StartTime: at("2025-01-10T09:12:30Z")}},
		},
	}
	enrich(&ro)
	return scenario{
		rollout:     ro,
		canaryHash:  canaryHash,
		stableHash:  stableHash,
		headerRoute: headerRoute("header-route-1"),
		mirrorRoute: mirrorRoute("mirror-route-1"),
		additional: []v1alpha1.WeightDestination{
			{ServiceName: "rollouts-demo-preview", PodTemplateHash: "5d4c3b2a1", Weight: 10},
			{ServiceName: "rollouts-demo-exp", PodTemplateHash: "8e7f6a5b4", Weight: 5},
		},
	}
}

func subsetScenario() scenario {
	const canaryHash, stableHash = "58c7b6fd4d", "9f6d5c4b7"
	ro := v1alpha1.Rollout{
		TypeMeta: rolloutTypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              "reviews",
			Namespace:         "bookinfo",
			UID:               "0b7e9d61-2f3c-4a8e-b7a2-9d2f1c3e4b55",
			Generation:        3,
			ResourceVersion:   "99120",
			CreationTimestamp: at("2025-02-01T12:00:00Z"),
			Labels:            map[string]string{"app": "reviews"},
		},
		Spec: v1alpha1.RolloutSpec{
			Replicas: i32(3),
			Template: podTemplate("reviews", "docker.io/istio/examples-bookinfo-reviews-v2:1.20.1", 9080),
			Strategy: v1alpha1.RolloutStrategy{Canary: &v1alpha1.CanaryStrategy{
				TrafficRouting: &v1alpha1.RolloutTrafficRouting{
					ManagedRoutes: []v1alpha1.MangedRoutes{{Name: "set-header-1"}, {Name: "mirror-1"}},
					Plugins: map[string]json.RawMessage{
						"argoproj-labs/istio": json.RawMessage(`{"destinationRule":{"canarySubsetName":"canary","name":"rollout-destrule","stableSubsetName":"stable"},` +
							`"virtualService":{"name":"reviews-vsvc","routes":["primary"]}}`),
					},
				},
				Steps: []v1alpha1.CanaryStep{
					{SetWeight: i32(10)},
					{Pause: &v1alpha1.RolloutPause{Duration: intOrStr("1m")}},
					{SetWeight: i32(30)},
					{Pause: &v1alpha1.RolloutPause{}},
				},
			}},
		},
		Status: v1alpha1.RolloutStatus{
			Phase:            v1alpha1.RolloutPhaseProgressing,
			Message:          "more replicas need to be updated",
			CurrentPodHash:   canaryHash,
			CurrentStepIndex: i32(0),
			StableRS:         stableHash,
			Replicas:         4,
			UpdatedReplicas:  1,
			ReadyReplicas:    3,
			Canary: v1alpha1.CanaryStatus{Weights: &v1alpha1.TrafficWeights{
				Canary: v1alpha1.WeightDestination{Weight: 0, PodTemplateHash: canaryHash},
				Stable: v1alpha1.WeightDestination{Weight: 100, PodTemplateHash: stableHash},
			}},
			Conditions: []v1alpha1.RolloutCondition{
				condition(v1alpha1.RolloutProgressing, corev1.ConditionTrue, "2025-02-01T12:05:41Z", "2025-02-01T12:05:40Z", "ReplicaSetUpdated", `ReplicaSet "reviews-58c7b6fd4d" is progressing.`),
				condition(v1alpha1.RolloutAvailable, corev1.ConditionFalse, "2025-02-01T12:05:40Z", "2025-02-01T12:05:40Z", "AvailableReason", "Rollout does not have minimum availability"),
			},
		},
	}
	enrich(&ro)
	return scenario{
		rollout:     ro,
		canaryHash:  canaryHash,
		stableHash:  stableHash,
		headerRoute: headerRoute("set-header-1"),
		mirrorRoute: mirrorRoute("mirror-1"),
	}
}
