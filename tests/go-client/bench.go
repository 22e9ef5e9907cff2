package main

// -bench mode: the plugin measured from the controller's side, through
// argo's own plugin client and rpc package, so the numbers compare with a Go
// plugin measured the same way. One line per measure on stdout:
//
//	start -> Dispense -> InitPlugin -> first Ping: 9.7 ms
//	Type: p50 119 µs, p99 240 µs (2000 sequential calls)
//	SetWeight: p50 246 µs, p99 510 µs (5000 sequential calls over 16 rollouts)
//	SetWeight, 16 concurrent callers: 12400 calls/s (16000 calls in 1.290 s)
//	plugin memory: RSS 25000 kB, peak 26000 kB
//
// The steady state (every call finds nothing to change) is framed by the
// lines "steady-state begin" and "steady-state end"; after each the client
// waits for a line (or EOF) on stdin, so whoever runs it can let the
// cluster settle and read its request counters at exactly those points.
//
// Rollout i is the host scenario's Rollout renamed app-<i> in namespace
// team, routing through VirtualService app-<i>-vsvc (route "primary") to the
// services app-<i>-stable and app-<i>-canary; the cluster must hold those.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	rpctypes "github.com/argoproj/argo-rollouts/utils/plugin/types"
	plugin "github.com/hashicorp/go-plugin"
	"k8s.io/apimachinery/pkg/types"
)

const (
	benchNamespace      = "team"
	benchWeight         = 20
	benchTypeCalls      = 2000
	benchSetCalls       = 5000
	benchCallers        = 16
	benchCallsPerCaller = 1000
)

// benchRollout is rollout i of the bench, derived from base (the host
// scenario's Rollout) without sharing anything the renaming changes.
func benchRollout(base v1alpha1.Rollout, i int) v1alpha1.Rollout {
	name := fmt.Sprintf("app-%d", i)
	ro := base
	ro.Name = name
	ro.Namespace = benchNamespace
	ro.UID = types.UID(fmt.Sprintf("%s%012d", base.UID[:len(base.UID)-12], i))

	canary := *base.Spec.Strategy.Canary
	canary.CanaryService = name + "-canary"
	canary.StableService = name + "-stable"
	routing := *canary.TrafficRouting
	routing.Plugins = map[string]json.RawMessage{
		"argoproj-labs/istio": json.RawMessage(fmt.Sprintf(`{"virtualService":{"name":%q,"routes":["primary"]}}`, name+"-vsvc")),
	}
	canary.TrafficRouting = &routing
	ro.Spec.Strategy.Canary = &canary

	weights := *base.Status.Canary.Weights
	weights.Canary.ServiceName = canary.CanaryService
	weights.Stable.ServiceName = canary.StableService
	ro.Status.Canary.Weights = &weights
	return ro
}

// benchAbort ends the run: the caller's deferred cleanup kills the plugin.
type benchAbort struct{ reason string }

func benchFail(format string, args ...any) {
	panic(benchAbort{fmt.Sprintf(format, args...)})
}

func benchCheck(call string, e rpctypes.RpcError) {
	if e.HasError() {
		benchFail("%s: unexpected error %q", call, e.ErrorString)
	}
}

// runBench drives the plugin through the controller's client c; current
// names the call in flight for main's timeout message. It returns a failure
// reason, or "".
func runBench(c *controller, current *atomic.Value, rollouts int) (failure string) {
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

	// The controller's first GetTrafficPlugin: start, handshake, Dispense,
	// InitPlugin, Ping.
	current.Store("GetTrafficPlugin")
	started := time.Now()
	p, err := c.plugin()
	if err != nil {
		benchFail("GetTrafficPlugin: %v", err)
	}
	fmt.Printf("start -> Dispense -> InitPlugin -> first Ping: %.1f ms\n", ms(time.Since(started)))

	base := hostScenario().rollout
	ros := make([]v1alpha1.Rollout, rollouts)
	for i := range ros {
		ros[i] = benchRollout(base, i)
	}
	// Warm-up: each rollout's weight changes once (one write each) and the
	// plugin's caches fill.
	current.Store("warm-up SetWeight")
	for i := range ros {
		benchCheck(fmt.Sprintf("warm-up SetWeight %s", ros[i].Name), p.SetWeight(&ros[i], benchWeight, nil))
	}

	benchPhase("steady-state begin")

	current.Store("Type")
	times := make([]time.Duration, 0, benchSetCalls)
	for n := 0; n < benchTypeCalls; n++ {
		callStarted := time.Now()
		got := p.Type()
		times = append(times, time.Since(callStarted))
		if got != "Istio" {
			benchFail("Type: got %q, want \"Istio\"", got)
		}
	}
	p50, p99 := percentiles(times)
	fmt.Printf("Type: p50 %d µs, p99 %d µs (%d sequential calls)\n", p50, p99, benchTypeCalls)

	current.Store("sequential SetWeight")
	times = times[:0]
	for n := 0; n < benchSetCalls; n++ {
		ro := &ros[n%len(ros)]
		callStarted := time.Now()
		e := p.SetWeight(ro, benchWeight, nil)
		times = append(times, time.Since(callStarted))
		benchCheck("SetWeight "+ro.Name, e)
	}
	p50, p99 = percentiles(times)
	fmt.Printf("SetWeight: p50 %d µs, p99 %d µs (%d sequential calls over %d rollouts)\n", p50, p99, benchSetCalls, len(ros))

	// Like the controller's workers: each caller reconciles its own rollout
	// over the one shared connection.
	current.Store("concurrent SetWeight")
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failed   string
	)
	gate := make(chan struct{})
	for c := 0; c < benchCallers; c++ {
		wg.Add(1)
		go func(ro *v1alpha1.Rollout) {
			defer wg.Done()
			<-gate
			for n := 0; n < benchCallsPerCaller; n++ {
				if e := p.SetWeight(ro, benchWeight, nil); e.HasError() {
					failOnce.Do(func() { failed = fmt.Sprintf("concurrent SetWeight %s: unexpected error %q", ro.Name, e.ErrorString) })
					return
				}
			}
		}(&ros[c%len(ros)])
	}
	concurrentStarted := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(concurrentStarted)
	if failed != "" {
		benchFail("%s", failed)
	}
	calls := benchCallers * benchCallsPerCaller
	fmt.Printf("SetWeight, %d concurrent callers: %.0f calls/s (%d calls in %.3f s)\n",
		benchCallers, float64(calls)/elapsed.Seconds(), calls, elapsed.Seconds())

	benchPhase("steady-state end")

	pid, err := pluginPid()
	if err != nil {
		benchFail("plugin memory: %v", err)
	}
	rss, hwm, err := memoryKB(pid)
	if err != nil {
		benchFail("plugin memory: %v", err)
	}
	fmt.Printf("plugin memory: RSS %d kB, peak %d kB\n", rss, hwm)

	current.Store("Kill")
	return ""
}

var benchStdin = bufio.NewReader(os.Stdin)

// benchPhase announces a phase boundary and waits for the go-ahead: a line
// or EOF on stdin.
func benchPhase(marker string) {
	fmt.Println(marker)
	if _, err := benchStdin.ReadString('\n'); err != nil && err != io.EOF {
		benchFail("reading the go-ahead after %q: %v", marker, err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentiles returns p50 and p99 in microseconds; sorts times.
func percentiles(times []time.Duration) (int64, int64) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2].Microseconds(), times[len(times)*99/100].Microseconds()
}

// memoryKB reads VmRSS and VmHWM of a process, in kB.
func memoryKB(pid int) (rss, hwm int64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss, err = strconv.ParseInt(fields[1], 10, 64)
		case "VmHWM:":
			hwm, err = strconv.ParseInt(fields[1], 10, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %v", line, err)
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// pluginPid is the process id of the plugin: the one child of this process
// (argo's client keeps go-plugin's Client to itself).
func pluginPid() (int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	for _, path := range stats {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so count from ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Dir(path), "/proc/"), "/"))
		}
	}
	return 0, fmt.Errorf("no child process of %d", self)
}
