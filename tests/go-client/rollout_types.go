package main

// Mirrors of argo-rollouts pkg/apis/rollouts/v1alpha1 types, field names,
// order and pointer-ness as in the original (and in the gob type table the
// real controller sends). Every field the plugin reads is here; so are
// neighbours it must skip (pod template, analysis, blue-green, ALB status).

import "encoding/json"

type Rollout struct {
	TypeMeta
	ObjectMeta
	Spec   RolloutSpec
	Status RolloutStatus
}

type RolloutSpec struct {
	TemplateResolvedFromRef bool
	SelectorResolvedFromRef bool
	Replicas                *int32
	Selector                *LabelSelector
	Template                PodTemplateSpec
	WorkloadRef             *ObjectRef
	MinReadySeconds         int32
	RollbackWindow          *RollbackWindowSpec
	Strategy                RolloutStrategy
	RevisionHistoryLimit    *int32
	Paused                  bool
	ProgressDeadlineSeconds *int32
	ProgressDeadlineAbort   bool
	RestartAt               *Time
	Analysis                *AnalysisRunStrategy
}

type ObjectRef struct {
	APIVersion string
	Kind       string
	Name       string
	ScaleDown  string
}

type RollbackWindowSpec struct {
	Revisions int32
}

type AnalysisRunStrategy struct {
	SuccessfulRunHistoryLimit   *int32
	UnsuccessfulRunHistoryLimit *int32
}

type RolloutStrategy struct {
	BlueGreen *BlueGreenStrategy
	Canary    *CanaryStrategy
}

type BlueGreenStrategy struct {
	ActiveService         string
	PreviewService        string
	PreviewReplicaCount   *int32
	AutoPromotionEnabled  *bool
	AutoPromotionSeconds  int32
	MaxUnavailable        *IntOrString
	ScaleDownDelaySeconds *int32
	PrePromotionAnalysis  *RolloutAnalysis
	PostPromotionAnalysis *RolloutAnalysis
	PreviewMetadata       *PodTemplateMetadata
	ActiveMetadata        *PodTemplateMetadata
}

type RolloutAnalysis struct {
	Templates           []AnalysisTemplateRef
	Args                []AnalysisRunArgument
	DryRun              []DryRun
	AnalysisRunMetadata AnalysisRunMetadata
}

type AnalysisTemplateRef struct {
	TemplateName string
	ClusterScope bool
}

type AnalysisRunArgument struct {
	Name      string
	Value     string
	ValueFrom *ArgumentValueFrom
}

type ArgumentValueFrom struct {
	PodTemplateHashValue *string
	FieldRef             *FieldRef
}

type FieldRef struct {
	FieldPath string
}

type DryRun struct {
	MetricName string
}

type AnalysisRunMetadata struct {
	Labels      map[string]string
	Annotations map[string]string
}

type PodTemplateMetadata struct {
	Labels      map[string]string
	Annotations map[string]string
}

type CanaryStrategy struct {
	CanaryService               string
	StableService               string
	Steps                       []CanaryStep
	TrafficRouting              *RolloutTrafficRouting
	MaxUnavailable              *IntOrString
	MaxSurge                    *IntOrString
	Analysis                    *RolloutAnalysisBackground
	CanaryMetadata              *PodTemplateMetadata
	StableMetadata              *PodTemplateMetadata
	ScaleDownDelaySeconds       *int32
	ScaleDownDelayRevisionLimit *int32
	AbortScaleDownDelaySeconds  *int32
	DynamicStableScale          bool
	PingPong                    *PingPongSpec
	MinPodsPerReplicaSet        *int32
	ReplicaProgressThreshold    *ReplicaProgressThreshold
}

type RolloutAnalysisBackground struct {
	RolloutAnalysis
	StartingStep *int32
}

type PingPongSpec struct {
	PingService string
	PongService string
}

type ReplicaProgressThreshold struct {
	Type  string
	Value int32
}

type CanaryStep struct {
	SetWeight      *int32
	Pause          *RolloutPause
	Analysis       *RolloutAnalysis
	SetCanaryScale *SetCanaryScale
	SetHeaderRoute *SetHeaderRoute
	SetMirrorRoute *SetMirrorRoute
	Plugin         *PluginStep
}

type RolloutPause struct {
	Duration *IntOrString
}

type SetCanaryScale struct {
	Weight             *int32
	Replicas           *int32
	MatchTrafficWeight bool
}

type SetHeaderRoute struct {
	Name  string
	Match []HeaderRoutingMatch
}

type HeaderRoutingMatch struct {
	HeaderName  string
	HeaderValue *StringMatch
}

type StringMatch struct {
	Exact  string
	Prefix string
	Regex  string
}

type SetMirrorRoute struct {
	Name       string
	Match      []RouteMatch
	Percentage *int32
}

type RouteMatch struct {
	Method  *StringMatch
	Path    *StringMatch
	Headers map[string]StringMatch
}

type PluginStep struct {
	Name   string
	Config json.RawMessage
}

type RolloutTrafficRouting struct {
	Istio            *IstioTrafficRouting
	SMI              *SMITrafficRouting
	ManagedRoutes    []MangedRoutes
	Plugins          map[string]json.RawMessage
	MaxTrafficWeight *int32
}

type IstioTrafficRouting struct {
	VirtualService  *IstioVirtualService
	DestinationRule *IstioDestinationRule
	VirtualServices []IstioVirtualService
}

type IstioVirtualService struct {
	Name      string
	Routes    []string
	TLSRoutes []TLSRoute
	TCPRoutes []TCPRoute
}

type TLSRoute struct {
	Port     int64
	SNIHosts []string
}

type TCPRoute struct {
	Port int64
}

type IstioDestinationRule struct {
	Name                  string
	CanarySubsetName      string
	StableSubsetName      string
	AdditionalSubsetNames []string
}

type SMITrafficRouting struct {
	RootService      string
	TrafficSplitName string
}

// MangedRoutes: argo's spelling, kept because gob sends the type name.
type MangedRoutes struct {
	Name string
}

type RolloutStatus struct {
	Abort                      bool
	PauseConditions            []PauseCondition
	ControllerPause            bool
	AbortedAt                  *Time
	CurrentPodHash             string
	CurrentStepHash            string
	Replicas                   int32
	UpdatedReplicas            int32
	ReadyReplicas              int32
	AvailableReplicas          int32
	CurrentStepIndex           *int32
	CollisionCount             *int32
	ObservedGeneration         string
	Conditions                 []RolloutCondition
	Canary                     CanaryStatus
	BlueGreen                  BlueGreenStatus
	HPAReplicas                int32
	Selector                   string
	StableRS                   string
	RestartedAt                *Time
	PromoteFull                bool
	Phase                      string
	Message                    string
	WorkloadObservedGeneration string
	ALB                        *ALBStatus
	ALBs                       []ALBStatus
}

type PauseCondition struct {
	Reason    string
	StartTime Time
}

type RolloutCondition struct {
	Type               string
	Status             string
	LastUpdateTime     Time
	LastTransitionTime Time
	Reason             string
	Message            string
}

type CanaryStatus struct {
	CurrentStepAnalysisRunStatus       *RolloutAnalysisRunStatus
	CurrentBackgroundAnalysisRunStatus *RolloutAnalysisRunStatus
	CurrentExperiment                  string
	Weights                            *TrafficWeights
	StablePingPong                     string
	StepPluginStatuses                 []StepPluginStatus
}

type RolloutAnalysisRunStatus struct {
	Name    string
	Status  string
	Message string
}

type TrafficWeights struct {
	Canary     WeightDestination
	Stable     WeightDestination
	Additional []WeightDestination
	Verified   *bool
}

type WeightDestination struct {
	Weight          int32
	ServiceName     string
	PodTemplateHash string
}

type StepPluginStatus struct {
	Index      int32
	Name       string
	Operation  string
	Phase      string
	Message    string
	StartedAt  *Time
	UpdatedAt  *Time
	FinishedAt *Time
	Backoff    string
	Executions int32
	Disabled   bool
	Status     json.RawMessage
}

type BlueGreenStatus struct {
	PreviewSelector                string
	ActiveSelector                 string
	ScaleUpPreviewCheckPoint       bool
	PrePromotionAnalysisRunStatus  *RolloutAnalysisRunStatus
	PostPromotionAnalysisRunStatus *RolloutAnalysisRunStatus
}

type ALBStatus struct {
	LoadBalancer      AwsResourceRef
	CanaryTargetGroup AwsResourceRef
	StableTargetGroup AwsResourceRef
	Ingress           string
}

type AwsResourceRef struct {
	Name     string
	ARN      string
	FullName string
}
