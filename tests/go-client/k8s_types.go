package main

// Mirrors of the k8s.io/apimachinery and k8s.io/api/core/v1 types that
// v1alpha1.Rollout embeds. gob matches struct fields by name, so every field
// here has the name and wire kind of the original (see
// /work/shared/fixtures/real-controller/host/gob-type-table.txt) and the
// original's pointer-ness, so zero values are left out exactly as the
// controller leaves them out. Fields the scenarios never fill are omitted:
// an absent field and a zero field look the same on the wire.

import "time"

type TypeMeta struct {
	Kind       string
	APIVersion string
}

// Time mirrors metav1.Time: embedding time.Time makes it a GobEncoder, so it
// travels as opaque time.Time bytes, as the controller sends it.
type Time struct {
	time.Time
}

// at parses a timestamp literal of the scenarios; like metav1.Time's JSON
// decoding it keeps the time in time.Local, which gob encodes with a zone
// offset rather than as UTC.
func at(rfc3339 string) Time {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		panic("bad timestamp literal " + rfc3339)
	}
	return Time{t.Local()}
}

type ObjectMeta struct {
	Name                       string
	GenerateName               string
	Namespace                  string
	SelfLink                   string
	UID                        string
	ResourceVersion            string
	Generation                 int64
	CreationTimestamp          Time
	DeletionTimestamp          *Time
	DeletionGracePeriodSeconds *int64
	Labels                     map[string]string
	Annotations                map[string]string
	OwnerReferences            []OwnerReference
	Finalizers                 []string
	ManagedFields              []ManagedFieldsEntry
}

type OwnerReference struct {
	APIVersion         string
	Kind               string
	Name               string
	UID                string
	Controller         *bool
	BlockOwnerDeletion *bool
}

type ManagedFieldsEntry struct {
	Manager     string
	Operation   string
	APIVersion  string
	Time        *Time
	FieldsType  string
	FieldsV1    *FieldsV1
	Subresource string
}

type FieldsV1 struct {
	Raw []byte
}

type LabelSelector struct {
	MatchLabels      map[string]string
	MatchExpressions []LabelSelectorRequirement
}

type LabelSelectorRequirement struct {
	Key      string
	Operator string
	Values   []string
}

// IntOrString mirrors intstr.IntOrString (no GobEncoder: a plain struct).
type IntOrString struct {
	Type   int64
	IntVal int32
	StrVal string
}

func intOrInt(v int32) *IntOrString      { return &IntOrString{Type: 0, IntVal: v} }
func intOrStr(s string) *IntOrString     { return &IntOrString{Type: 1, StrVal: s} }
func intOrStrValue(s string) IntOrString { return IntOrString{Type: 1, StrVal: s} }

// Quantity mirrors resource.Quantity, whose only exported field is Format.
type Quantity struct {
	Format string
}

type ResourceList map[string]Quantity

type PodTemplateSpec struct {
	ObjectMeta
	Spec PodSpec
}

type PodSpec struct {
	Volumes                       []Volume
	InitContainers                []Container
	Containers                    []Container
	RestartPolicy                 string
	TerminationGracePeriodSeconds *int64
	DNSPolicy                     string
	NodeSelector                  map[string]string
	ServiceAccountName            string
	SecurityContext               *PodSecurityContext
	ImagePullSecrets              []LocalObjectReference
	SchedulerName                 string
	Tolerations                   []Toleration
	EnableServiceLinks            *bool
}

type PodSecurityContext struct {
	RunAsUser    *int64
	RunAsNonRoot *bool
	FSGroup      *int64
}

type Toleration struct {
	Key               string
	Operator          string
	Value             string
	Effect            string
	TolerationSeconds *int64
}

type Volume struct {
	Name string
	VolumeSource
}

type VolumeSource struct {
	EmptyDir  *EmptyDirVolumeSource
	Secret    *SecretVolumeSource
	ConfigMap *ConfigMapVolumeSource
}

type EmptyDirVolumeSource struct {
	Medium    string
	SizeLimit *Quantity
}

type SecretVolumeSource struct {
	SecretName  string
	Items       []KeyToPath
	DefaultMode *int32
	Optional    *bool
}

type KeyToPath struct {
	Key  string
	Path string
	Mode *int32
}

type LocalObjectReference struct {
	Name string
}

type ConfigMapVolumeSource struct {
	LocalObjectReference
	Items       []KeyToPath
	DefaultMode *int32
	Optional    *bool
}

type Container struct {
	Name                     string
	Image                    string
	Command                  []string
	Args                     []string
	WorkingDir               string
	Ports                    []ContainerPort
	EnvFrom                  []EnvFromSource
	Env                      []EnvVar
	Resources                ResourceRequirements
	VolumeMounts             []VolumeMount
	LivenessProbe            *Probe
	ReadinessProbe           *Probe
	StartupProbe             *Probe
	TerminationMessagePath   string
	TerminationMessagePolicy string
	ImagePullPolicy          string
	SecurityContext          *SecurityContext
	Stdin                    bool
	StdinOnce                bool
	TTY                      bool
}

type ContainerPort struct {
	Name          string
	HostPort      int32
	ContainerPort int32
	Protocol      string
	HostIP        string
}

type EnvFromSource struct {
	Prefix       string
	ConfigMapRef *ConfigMapEnvSource
	SecretRef    *SecretEnvSource
}

type ConfigMapEnvSource struct {
	LocalObjectReference
	Optional *bool
}

type SecretEnvSource struct {
	LocalObjectReference
	Optional *bool
}

type EnvVar struct {
	Name      string
	Value     string
	ValueFrom *EnvVarSource
}

type EnvVarSource struct {
	FieldRef         *ObjectFieldSelector
	ResourceFieldRef *ResourceFieldSelector
	ConfigMapKeyRef  *ConfigMapKeySelector
	SecretKeyRef     *SecretKeySelector
}

type ObjectFieldSelector struct {
	APIVersion string
	FieldPath  string
}

type ResourceFieldSelector struct {
	ContainerName string
	Resource      string
	Divisor       Quantity
}

type ConfigMapKeySelector struct {
	LocalObjectReference
	Key      string
	Optional *bool
}

type SecretKeySelector struct {
	LocalObjectReference
	Key      string
	Optional *bool
}

type ResourceRequirements struct {
	Limits   ResourceList
	Requests ResourceList
	Claims   []ResourceClaim
}

type ResourceClaim struct {
	Name    string
	Request string
}

type VolumeMount struct {
	Name              string
	ReadOnly          bool
	RecursiveReadOnly *string
	MountPath         string
	SubPath           string
	MountPropagation  *string
	SubPathExpr       string
}

type Probe struct {
	ProbeHandler
	InitialDelaySeconds           int32
	TimeoutSeconds                int32
	PeriodSeconds                 int32
	SuccessThreshold              int32
	FailureThreshold              int32
	TerminationGracePeriodSeconds *int64
}

type ProbeHandler struct {
	Exec      *ExecAction
	HTTPGet   *HTTPGetAction
	TCPSocket *TCPSocketAction
	GRPC      *GRPCAction
}

type ExecAction struct {
	Command []string
}

type HTTPGetAction struct {
	Path        string
	Port        IntOrString
	Host        string
	Scheme      string
	HTTPHeaders []HTTPHeader
}

type HTTPHeader struct {
	Name  string
	Value string
}

type TCPSocketAction struct {
	Port IntOrString
	Host string
}

type GRPCAction struct {
	Port    int32
	Service *string
}

type SecurityContext struct {
	Capabilities             *Capabilities
	Privileged               *bool
	RunAsUser                *int64
	RunAsNonRoot             *bool
	ReadOnlyRootFilesystem   *bool
	AllowPrivilegeEscalation *bool
	SeccompProfile           *SeccompProfile
}

type Capabilities struct {
	Add  []string
	Drop []string
}

type SeccompProfile struct {
	Type             string
	LocalhostProfile *string
}
