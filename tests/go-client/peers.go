package main

// -peers mode: one plugin (ours, the Go floor, or any traffic-router
// plugin) measured from the controller's side for `cargo bench --bench
// peers`, through argo's own plugin client and rpc package with real
// v1alpha1.Rollout values. Every plugin gets the same calls in the same
// order, so the numbers compare across plugins.
//
// stdout carries two phase markers and one result line:
//
//	steady-state begin
//	steady-state end
//	result {"start_to_ping_ms":4.1,"first_call_us":900,...}
//
// After each marker the driver waits for a line (or EOF) on stdin, so the
// caller can read the API server's request counters at exactly those
// points. Between the markers every call finds its objects already in the
// wanted state (the steady state of a paused canary).
//
// Rollout <prefix>-<i> is the host scenario's Rollout renamed (Services
// <name>-canary and <name>-stable), split by subsets: VirtualService <name>-vsvc (HTTP route
// "primary" with destinations host <name> subsets stable and canary) and
// DestinationRule <name>-destrule (subsets canary and stable); the cluster
// must hold those for -rollouts rollouts "app-<i>" in -namespace and
// -distinct rollouts "bulk-<i>" in -distinct-namespace.

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	plugin "github.com/hashicorp/go-plugin"
	"k8s.io/apimachinery/pkg/types"
)

const (
	peersWeight          = 20
	peersSetCalls        = 5000
	peersOtherCalls      = 2000
	peersCallers         = 16
	peersCallsPerCaller  = 1000
	peersCanaryHash      = "6b9d7c8f5"
	peersStableHash      = "7c4b9d6f8d"
	peersHeaderRouteName = "header-route-1"
)

// peersResult is the result line; field names are the benchmark's rows.
type peersResult struct {
	StartToPingMs       float64 `json:"start_to_ping_ms"`
	FirstCallUs         float64 `json:"first_call_us"`
	SetWeightP50Us      float64 `json:"setweight_p50_us"`
	SetWeightP99Us      float64 `json:"setweight_p99_us"`
	VerifyWeightP50Us   float64 `json:"verifyweight_p50_us"`
	UpdateHashP50Us     float64 `json:"updatehash_p50_us"`
	SetHeaderRouteP50Us float64 `json:"setheaderroute_p50_us"`
	CallsPerS16         float64 `json:"calls_per_s_16"`
	CPUUsPerCall        float64 `json:"cpu_us_per_call"`
	RSSKB5000           float64 `json:"rss_kb_5000"`
	// Calls between the two markers (the steady state), to turn the API
	// server's request count into requests per reconcile.
	SteadyCalls int `json:"steady_calls"`
	// -distinct rollouts, each reconciled once (SetWeight to -distinct-weight,
	// a change), then each once more (VerifyWeight, nothing to change).
	Distinct         int     `json:"distinct"`
	DistinctErrors   int     `json:"distinct_errors"`
	DistinctFirstErr string  `json:"distinct_first_error,omitempty"`
	DistinctSetP50Us float64 `json:"distinct_setweight_p50_us"`
	DistinctSetP99Us float64 `json:"distinct_setweight_p99_us"`
	DistinctVerP99Us float64 `json:"distinct_verifyweight_p99_us"`
}

// peersRollout is rollout <prefix>-<i> of the benchmark, derived from the
// host scenario's Rollout without sharing anything the renaming changes.
func peersRollout(base v1alpha1.Rollout, namespace, prefix string, i int) v1alpha1.Rollout {
	name := fmt.Sprintf("%s-%d", prefix, i)
	ro := base
	ro.Name = name
	ro.Namespace = namespace
	ro.UID = types.UID(fmt.Sprintf("%s%06x%06d", base.UID[:len(base.UID)-12], len(prefix), i))
	ro.Labels = map[string]string{"app": name}

	canary := *base.Spec.Strategy.Canary
	canary.CanaryService = name + "-canary"
	canary.StableService = name + "-stable"
	routing := *canary.TrafficRouting
	routing.Plugins = map[string]json.RawMessage{
		"argoproj-labs/istio": json.RawMessage(fmt.Sprintf(
			`{"virtualService":{"name":%q,"routes":["primary"]},"destinationRule":{"name":%q,"canarySubsetName":"canary","stableSubsetName":"stable"}}`,
			name+"-vsvc", name+"-destrule")),
	}
	canary.TrafficRouting = &routing
	ro.Spec.Strategy.Canary = &canary

	weights := *base.Status.Canary.Weights
	weights.Canary.ServiceName = canary.CanaryService
	weights.Stable.ServiceName = canary.StableService
	ro.Status.Canary.Weights = &weights
	ro.Status.CurrentPodHash = peersCanaryHash
	ro.Status.StableRS = peersStableHash
	return ro
}

func usOf(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// quantile of sorted durations, in µs.
func quantile(sorted []time.Duration, q float64) float64 {
	return usOf(sorted[int(float64(len(sorted)-1)*q)])
}

func sortDurations(times []time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
}

// cpuTicks is utime+stime of a process, in clock ticks (USER_HZ, 100 on
// Linux).
func cpuTicks(pid int) (int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	// After "pid (comm)": state is field 3, utime 14, stime 15.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return 0, err
	}
	return utime + stime, nil
}

const userHZ = 100

// timed runs call n times over the rollouts in turn and returns the sorted
// durations; the first error aborts the run.
func timed(name string, n int, ros []v1alpha1.Rollout, call func(ro *v1alpha1.Rollout) string) []time.Duration {
	times := make([]time.Duration, 0, n)
	for k := 0; k < n; k++ {
		ro := &ros[k%len(ros)]
		started := time.Now()
		problem := call(ro)
		times = append(times, time.Since(started))
		if problem != "" {
			benchFail("%s %s: %s", name, ro.Name, problem)
		}
	}
	sortDurations(times)
	return times
}

func errorOf(e interface {
	HasError() bool
	Error() string
}) string {
	if e.HasError() {
		return e.Error()
	}
	return ""
}

// runPeers drives the plugin through the controller's client c.
func runPeers(c *controller, current *atomic.Value, namespace, distinctNamespace string, rollouts, distinct int, distinctWeight int32) (failure string) {
	defer plugin.CleanupClients()
	defer func() {
		if v := recover(); v != nil {
			abort, ok := v.(benchAbort)
			if !ok {
				panic(v)
			}
			failure = abort.reason
		}
	}()
	var res peersResult

	current.Store("GetTrafficPlugin")
	started := time.Now()
	p, err := c.plugin()
	if err != nil {
		benchFail("GetTrafficPlugin: %v", err)
	}
	res.StartToPingMs = usOf(time.Since(started)) / 1000
	pid, err := pluginPid()
	if err != nil {
		benchFail("the plugin's process: %v", err)
	}

	base := hostScenario()
	ros := make([]v1alpha1.Rollout, rollouts)
	for i := range ros {
		ros[i] = peersRollout(base.rollout, namespace, "app", i)
	}
	header := headerRoute(peersHeaderRouteName)

	// The first call of the connection carries gob's type definitions of
	// the arguments (a v1alpha1.Rollout: ~23 KB).
	current.Store("first SetWeight")
	started = time.Now()
	e := p.SetWeight(&ros[0], peersWeight, nil)
	res.FirstCallUs = usOf(time.Since(started))
	benchCheck("first SetWeight", e)

	// Warm-up: every rollout reaches the state the steady state keeps
	// asking for (at most one write per object and call kind).
	current.Store("warm-up")
	for i := range ros {
		benchCheck("warm-up SetWeight "+ros[i].Name, p.SetWeight(&ros[i], peersWeight, nil))
		benchCheck("warm-up UpdateHash "+ros[i].Name, p.UpdateHash(&ros[i], peersCanaryHash, peersStableHash, nil))
		benchCheck("warm-up SetHeaderRoute "+ros[i].Name, p.SetHeaderRoute(&ros[i], &header))
	}

	benchPhase("steady-state begin")

	current.Store("SetWeight")
	times := timed("SetWeight", peersSetCalls, ros, func(ro *v1alpha1.Rollout) string {
		return errorOf(p.SetWeight(ro, peersWeight, nil))
	})
	res.SetWeightP50Us, res.SetWeightP99Us = quantile(times, 0.5), quantile(times, 0.99)
	rss, _, err := memoryKB(pid)
	if err != nil {
		benchFail("plugin memory: %v", err)
	}
	res.RSSKB5000 = float64(rss)

	current.Store("VerifyWeight")
	times = timed("VerifyWeight", peersOtherCalls, ros, func(ro *v1alpha1.Rollout) string {
		verified, e := p.VerifyWeight(ro, peersWeight, nil)
		if e.HasError() {
			return e.Error()
		}
		if verified != 1 {
			return fmt.Sprintf("got %s, want Verified", verifiedName(verified))
		}
		return ""
	})
	res.VerifyWeightP50Us = quantile(times, 0.5)

	current.Store("UpdateHash")
	times = timed("UpdateHash", peersOtherCalls, ros, func(ro *v1alpha1.Rollout) string {
		return errorOf(p.UpdateHash(ro, peersCanaryHash, peersStableHash, nil))
	})
	res.UpdateHashP50Us = quantile(times, 0.5)

	current.Store("SetHeaderRoute")
	times = timed("SetHeaderRoute", peersOtherCalls, ros, func(ro *v1alpha1.Rollout) string {
		return errorOf(p.SetHeaderRoute(ro, &header))
	})
	res.SetHeaderRouteP50Us = quantile(times, 0.5)

	// Like the controller's workers: each caller reconciles its own rollout
	// over the one shared connection.
	current.Store("concurrent SetWeight")
	res.CallsPerS16, res.CPUUsPerCall = concurrent(p, pid, ros)
	res.SteadyCalls = peersSetCalls + 3*peersOtherCalls + peersCallers*peersCallsPerCaller

	benchPhase("steady-state end")

	if distinct > 0 {
		current.Store("distinct rollouts")
		res.Distinct = distinct
		bulk := make([]v1alpha1.Rollout, distinct)
		for i := range bulk {
			bulk[i] = peersRollout(base.rollout, distinctNamespace, "bulk", i)
		}
		record := func(ro *v1alpha1.Rollout, problem string) {
			if problem != "" {
				res.DistinctErrors++
				if res.DistinctFirstErr == "" {
					res.DistinctFirstErr = ro.Name + ": " + problem
				}
			}
		}
		set := make([]time.Duration, 0, distinct)
		for i := range bulk {
			started := time.Now()
			e := p.SetWeight(&bulk[i], distinctWeight, nil)
			set = append(set, time.Since(started))
			record(&bulk[i], errorOf(e))
		}
		verify := make([]time.Duration, 0, distinct)
		for i := range bulk {
			started := time.Now()
			verified, e := p.VerifyWeight(&bulk[i], distinctWeight, nil)
			verify = append(verify, time.Since(started))
			problem := errorOf(e)
			if problem == "" && verified != 1 {
				problem = fmt.Sprintf("VerifyWeight %d: got %s", distinctWeight, verifiedName(verified))
			}
			record(&bulk[i], problem)
		}
		sortDurations(set)
		sortDurations(verify)
		res.DistinctSetP50Us, res.DistinctSetP99Us = quantile(set, 0.5), quantile(set, 0.99)
		res.DistinctVerP99Us = quantile(verify, 0.99)
	}

	line, err := json.Marshal(res)
	if err != nil {
		benchFail("encoding the result: %v", err)
	}
	fmt.Printf("result %s\n", line)
	current.Store("Kill")
	return ""
}

// concurrent runs peersCallers callers of SetWeight at once; returns
// calls/s and the plugin's CPU time per call in µs.
func concurrent(p rpc.TrafficRouterPlugin, pid int, ros []v1alpha1.Rollout) (float64, float64) {
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failed   string
	)
	gate := make(chan struct{})
	for k := 0; k < peersCallers; k++ {
		wg.Add(1)
		go func(ro *v1alpha1.Rollout) {
			defer wg.Done()
			<-gate
			for n := 0; n < peersCallsPerCaller; n++ {
				if e := p.SetWeight(ro, peersWeight, nil); e.HasError() {
					failOnce.Do(func() { failed = fmt.Sprintf("concurrent SetWeight %s: %s", ro.Name, e.Error()) })
					return
				}
			}
		}(&ros[k%len(ros)])
	}
	cpuBefore, err := cpuTicks(pid)
	if err != nil {
		benchFail("plugin CPU time: %v", err)
	}
	started := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(started)
	cpuAfter, err := cpuTicks(pid)
	if err != nil {
		benchFail("plugin CPU time: %v", err)
	}
	if failed != "" {
		benchFail("%s", failed)
	}
	calls := float64(peersCallers * peersCallsPerCaller)
	cpuUs := float64(cpuAfter-cpuBefore) * 1e6 / userHZ
	return calls / elapsed.Seconds(), cpuUs / calls
}
