// Command go-client plays the Argo Rollouts controller (v1.10.2) against a
// traffic-router plugin binary, with the controller's own code: argo's
// rollout/trafficrouting/plugin/client starts the plugin (the controller's
// go-plugin ClientConfig: handshake, plugin map, managed process), argo's
// rollout/trafficrouting/plugin/rpc client sends every call, and every call
// carries a v1alpha1.Rollout with a pod template and a status.
//
//	go-client -scenario host -plugin ./rollouts-plugin-trafficrouter-istio [-- plugin args...]
//	go-client -serve -plugin-name conformance/istio -plugin ./bin -- --plugin-name conformance/istio
//	go-client -peers -plugin ./bin [-namespace ns -rollouts n -distinct n -distinct-namespace ns -distinct-weight w]
//	go-client -record ../fixtures/real-controller [-plugin ./bin [-- plugin args...]]
//
// -scenario drives a fixed sequence of calls and checks each answer (one
// line per call on stdout, `ok SetWeight 20`; exit status 1 on any
// mismatch). -serve answers calls read from stdin (see serve.go). -peers
// measures the plugin for the peers benchmark (see peers.go, measure.go).
// -record writes the recorded controller bytes of tests/fixtures (see
// record.go); its helpers run as `go-client record-scenario`,
// `go-client record-shim` and `go-client record-plugin`.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	hclog "github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
)

func scenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for name := range scenarios {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "record-scenario":
			os.Exit(recordScenarioMain(os.Args[2:]))
		case "record-shim":
			os.Exit(shimMain(os.Args[2:]))
		case "record-plugin":
			recordPluginMain()
			return
		}
	}
	scenarioName := flag.String("scenario", "host", "scenario to drive: "+strings.Join(scenarioNames(), ", "))
	pluginPath := flag.String("plugin", "", "path of the plugin binary")
	pluginName := flag.String("plugin-name", "argoproj-labs/istio", "the plugin's name in the controller's ConfigMap")
	keepGoing := flag.Bool("keep-going", false, "report every mismatch instead of stopping at the first")
	timeout := flag.Duration("timeout", time.Minute, "with -scenario or -peers: give up after this long")
	serveMode := flag.Bool("serve", false, "answer calls read as JSON lines from stdin")
	rollouts := flag.Int("rollouts", 16, "with -peers: how many rollouts the calls go round")
	peers := flag.Bool("peers", false, "measure the plugin for the peers benchmark (JSON result line)")
	namespace := flag.String("namespace", "team", "with -peers: the rollouts' namespace")
	distinctNamespace := flag.String("distinct-namespace", "team-bulk", "with -peers: the distinct rollouts' namespace")
	distinct := flag.Int("distinct", 0, "with -peers: also reconcile this many distinct rollouts bulk-<i> once each")
	distinctWeight := flag.Int("distinct-weight", 30, "with -peers: the weight the distinct rollouts are set to")
	record := flag.String("record", "", "record the controller's bytes of every scenario into this directory (-plugin optional)")
	flag.Parse()

	if *record != "" {
		os.Exit(recordMain(*record, *pluginPath, flag.Args()))
	}

	build, ok := scenarios[*scenarioName]
	if *pluginPath == "" || !ok || *rollouts < 1 {
		fmt.Fprintf(os.Stderr, "usage: go-client [-record <dir> | -serve | -peers [-namespace ns] [-rollouts n] [-distinct n] [-distinct-namespace ns] [-distinct-weight w] | -scenario (%s)] [-plugin-name ns/name] -plugin <path> [-- plugin args...]\n", strings.Join(scenarioNames(), "|"))
		os.Exit(2)
	}
	logs := &logWatch{}
	hclog.DefaultOutput = logs
	c, err := newController(*pluginPath, *pluginName, flag.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-client: %v\n", err)
		os.Exit(2)
	}
	if *serveMode {
		os.Exit(serveMain(c))
	}
	var current atomic.Value // the call in flight, for the timeout message
	current.Store("Start")
	// net/rpc calls have no deadline of their own: a plugin that never
	// answers must fail the run, not hang it.
	go func() {
		time.Sleep(*timeout)
		fmt.Printf("FAIL %s: no answer within %v\n", current.Load(), *timeout)
		goplugin.CleanupClients()
		removeWorkDir()
		os.Exit(1)
	}()
	defer removeWorkDir()
	if *peers {
		if failure := runPeers(c, &current, *namespace, *distinctNamespace, *rollouts, *distinct, int32(*distinctWeight)); failure != "" {
			fmt.Printf("FAIL %s\n", failure)
			removeWorkDir()
			os.Exit(1)
		}
		return
	}
	r := &runner{keepGoing: *keepGoing, current: &current, logs: logs}
	r.run(c, build())
	if r.failures > 0 {
		fmt.Printf("FAILED: %d mismatch(es)\n", r.failures)
		removeWorkDir()
		os.Exit(1)
	}
	fmt.Println("PASS")
}

type runner struct {
	keepGoing bool
	failures  int
	current   *atomic.Value
	logs      *logWatch
}

// check records one call's outcome; without -keep-going the first mismatch
// ends the run.
func (r *runner) check(call string, problem string) {
	if problem == "" {
		fmt.Printf("ok %s\n", call)
		return
	}
	r.failures++
	fmt.Printf("FAIL %s: %s\n", call, problem)
	if !r.keepGoing {
		panic(stopRun{})
	}
}

type stopRun struct{}

func wantNoError(e types.RpcError) string {
	if e.HasError() {
		return fmt.Sprintf("unexpected error %q", e.ErrorString)
	}
	return ""
}

func verifiedName(v types.RpcVerified) string {
	switch v {
	case types.NotVerified:
		return "NotVerified"
	case types.Verified:
		return "Verified"
	case types.NotImplemented:
		return "NotImplemented"
	}
	return fmt.Sprintf("RpcVerified(%d)", int32(v))
}

func (r *runner) run(c *controller, s scenario) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopRun); !ok {
				panic(v)
			}
			goplugin.CleanupClients()
		}
	}()

	// Every call goes through GetTrafficPlugin first, as in the controller's
	// reconcile: the first one starts the plugin, dispenses it and calls
	// InitPlugin; each later one pings it.
	pings := 0
	get := func(call string) rpc.TrafficRouterPlugin {
		r.current.Store(call)
		p, err := c.plugin()
		if err != nil {
			r.check(call, fmt.Sprintf("GetTrafficPlugin: %v", err))
		}
		pings++
		return p
	}
	get("Start, Dispense, InitPlugin")
	r.check("Start, Dispense, InitPlugin", "")

	ro := &s.rollout
	if got := get("Type").Type(); got != "Istio" {
		r.check("Type", fmt.Sprintf("got %q, want \"Istio\"", got))
	} else {
		r.check("Type", "")
	}

	r.check("UpdateHash", wantNoError(get("UpdateHash").UpdateHash(ro, s.canaryHash, s.stableHash, nil)))

	setWeight := func(weight int32, additional []v1alpha1.WeightDestination) {
		call := fmt.Sprintf("SetWeight %d", weight)
		r.check(call, wantNoError(get(call).SetWeight(ro, weight, additional)))
	}
	verify := func(p rpc.TrafficRouterPlugin, weight int32, additional []v1alpha1.WeightDestination, want types.RpcVerified) string {
		got, e := p.VerifyWeight(ro, weight, additional)
		switch {
		case e.HasError():
			return fmt.Sprintf("unexpected error %q", e.ErrorString)
		case got != want:
			return fmt.Sprintf("got %s, want %s", verifiedName(got), verifiedName(want))
		}
		return ""
	}
	verifyWeight := func(weight int32, additional []v1alpha1.WeightDestination, want types.RpcVerified) {
		call := fmt.Sprintf("VerifyWeight %d", weight)
		r.check(call, verify(get(call), weight, additional, want))
	}
	// The controller's workers share the one connection, so calls overlap
	// and their answers may come back in any order.
	concurrentVerify := func(weight int32, additional []v1alpha1.WeightDestination, want types.RpcVerified, n int) {
		call := fmt.Sprintf("VerifyWeight %d x%d concurrent", weight, n)
		problems := make([]string, n)
		var wg sync.WaitGroup
		for i := range problems {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				p, err := c.plugin()
				if err != nil {
					problems[i] = fmt.Sprintf("GetTrafficPlugin: %v", err)
					return
				}
				problems[i] = verify(p, weight, additional, want)
			}(i)
		}
		wg.Wait()
		pings += n
		var failed []string
		for i, problem := range problems {
			if problem != "" {
				failed = append(failed, fmt.Sprintf("call %d: %s", i, problem))
			}
		}
		r.check(call, strings.Join(failed, "; "))
	}

	setWeight(20, nil)
	verifyWeight(20, nil, types.Verified)

	r.check("SetHeaderRoute", wantNoError(get("SetHeaderRoute").SetHeaderRoute(ro, &s.headerRoute)))
	r.check("SetMirrorRoute", wantNoError(get("SetMirrorRoute").SetMirrorRoute(ro, &s.mirrorRoute)))

	verifyWeight(50, s.additional, types.NotVerified)
	setWeight(50, s.additional)
	verifyWeight(50, s.additional, types.Verified)
	concurrentVerify(50, s.additional, types.Verified, 8)

	if e := get("SetWeight 150").SetWeight(ro, 150, nil); !strings.Contains(e.ErrorString, "150") {
		r.check("SetWeight 150", fmt.Sprintf("want an out-of-range error naming 150, got %q", e.ErrorString))
	} else {
		r.check("SetWeight 150", "")
	}

	r.check("RemoveManagedRoutes", wantNoError(get("RemoveManagedRoutes").RemoveManagedRoutes(ro)))
	setWeight(0, nil)
	r.check(fmt.Sprintf("GetTrafficPlugin x%d", pings), "")

	// The controller's shutdown: CleanupClients sends Control.Quit to every
	// managed plugin and gives it 2 s to exit on its own before SIGKILL;
	// go-plugin logs which of the two happened.
	r.current.Store("Kill")
	started := time.Now()
	goplugin.CleanupClients()
	elapsed := time.Since(started)
	switch {
	case r.logs.find("error closing client during Kill") != "":
		r.check("Kill", fmt.Sprintf("Control.Quit got no reply, so the plugin was force-killed: %s", r.logs.find("error closing client during Kill")))
	case r.logs.find("plugin failed to exit gracefully") != "":
		r.check("Kill", fmt.Sprintf("plugin did not exit within %v of Control.Quit and was force-killed", elapsed.Round(time.Millisecond)))
	case r.logs.exitError() != "":
		r.check("Kill", "plugin exited with "+r.logs.exitError())
	default:
		r.check("Kill", "")
	}
}
