// Command go-client plays the Argo Rollouts controller against a
// traffic-router plugin binary: it starts the plugin with hashicorp
// go-plugin exactly as argo's rollout/trafficrouting/plugin/client does,
// dispenses "RpcTrafficRouterPlugin" and drives every Plugin.* call with the
// controller's own gob types, checking each answer. One line per call on
// stdout (`ok SetWeight 20`); exit status 1 on any mismatch.
//
//	go-client -scenario host -plugin ./rollouts-plugin-trafficrouter-istio -- --plugin-name argoproj-labs/istio
//
// With -bench it measures the plugin instead (see bench.go).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
)

var handshakeConfig = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
	MagicCookieValue: "trafficrouter",
}

var pluginMap = map[string]plugin.Plugin{
	"RpcTrafficRouterPlugin": &RpcTrafficRouterPlugin{},
}

func main() {
	scenarioName := flag.String("scenario", "host", "scenario to drive: "+strings.Join(scenarioNames(), ", "))
	pluginPath := flag.String("plugin", "", "path of the plugin binary")
	keepGoing := flag.Bool("keep-going", false, "report every mismatch instead of stopping at the first")
	timeout := flag.Duration("timeout", time.Minute, "give up (and kill the plugin) after this long")
	bench := flag.Bool("bench", false, "measure the plugin (latency, throughput, memory) instead of driving a scenario")
	rollouts := flag.Int("rollouts", 16, "with -bench: how many rollouts the calls go round")
	flag.Parse()

	build, ok := scenarios[*scenarioName]
	if *pluginPath == "" || !ok || *rollouts < 1 {
		fmt.Fprintf(os.Stderr, "usage: go-client [-bench [-rollouts n] | -scenario (%s)] -plugin <path> [-- plugin args...]\n", strings.Join(scenarioNames(), "|"))
		os.Exit(2)
	}
	cmd := exec.Command(*pluginPath, flag.Args()...)
	var current atomic.Value // the call in flight, for the timeout message
	current.Store("Start")
	// net/rpc calls have no deadline of their own: a plugin that never
	// answers must fail the run, not hang it.
	go func() {
		time.Sleep(*timeout)
		fmt.Printf("FAIL %s: no answer within %v\n", current.Load(), *timeout)
		if p := cmd.Process; p != nil {
			_ = p.Kill()
		}
		os.Exit(1)
	}()
	if *bench {
		if failure := runBench(cmd, &current, *rollouts); failure != "" {
			fmt.Printf("FAIL %s\n", failure)
			os.Exit(1)
		}
		return
	}
	r := &runner{keepGoing: *keepGoing, cmd: cmd, current: &current}
	r.run(build())
	if r.failures > 0 {
		fmt.Printf("FAILED: %d mismatch(es)\n", r.failures)
		os.Exit(1)
	}
	fmt.Println("PASS")
}

type runner struct {
	keepGoing bool
	cmd       *exec.Cmd
	failures  int
	pings     int
	current   *atomic.Value
}

// check records one call's outcome; without -keep-going the first mismatch
// ends the run (the plugin is still killed by the deferred Kill).
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

func wantNoError(e RpcError) string {
	if e.HasError() {
		return fmt.Sprintf("unexpected error %q", e.ErrorString)
	}
	return ""
}

func (r *runner) run(s scenario) {
	logs := &logWatch{}
	// argo's client: handshake, plugin map, the command, Managed; every other
	// option (AllowedProtocols: netrpc only, 1 min start timeout) is default.
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: handshakeConfig,
		Plugins:         pluginMap,
		Cmd:             r.cmd,
		Managed:         true,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "plugin",
			Level:      hclog.Debug,
			Output:     logs,
			JSONFormat: true,
		}),
	})
	defer plugin.CleanupClients()
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stopRun); !ok {
				panic(v)
			}
			client.Kill()
		}
	}()

	rpcClient, err := client.Client()
	if err != nil {
		r.check("Start", fmt.Sprintf("unable to get plugin client: %v", err))
		return
	}
	raw, err := rpcClient.Dispense("RpcTrafficRouterPlugin")
	if err != nil {
		r.check("Dispense", fmt.Sprintf("unable to dispense plugin: %v", err))
		return
	}
	p, ok := raw.(*TrafficRouterPluginRPC)
	if !ok {
		r.check("Dispense", fmt.Sprintf("unexpected type %T from plugin", raw))
		return
	}
	r.check("Dispense", "")

	r.current.Store("InitPlugin")
	r.check("InitPlugin", wantNoError(p.InitPlugin()))
	ping := func(before string) {
		r.current.Store(before)
		r.pings++
		if err := rpcClient.Ping(); err != nil {
			r.check("Ping before "+before, err.Error())
		}
	}

	ro := &s.rollout
	ping("Type")
	if got := p.Type(); got != "Istio" {
		r.check("Type", fmt.Sprintf("got %q, want \"Istio\"", got))
	} else {
		r.check("Type", "")
	}

	ping("UpdateHash")
	r.check("UpdateHash", wantNoError(p.UpdateHash(ro, s.canaryHash, s.stableHash, nil)))

	setWeight := func(weight int32, additional []WeightDestination) {
		call := fmt.Sprintf("SetWeight %d", weight)
		ping(call)
		r.check(call, wantNoError(p.SetWeight(ro, weight, additional)))
	}
	verify := func(weight int32, additional []WeightDestination, want RpcVerified) string {
		got, e := p.VerifyWeight(ro, weight, additional)
		switch {
		case e.HasError():
			return fmt.Sprintf("unexpected error %q", e.ErrorString)
		case got != want:
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	}
	verifyWeight := func(weight int32, additional []WeightDestination, want RpcVerified) {
		call := fmt.Sprintf("VerifyWeight %d", weight)
		ping(call)
		r.check(call, verify(weight, additional, want))
	}
	// The controller's workers share the one connection, so calls overlap
	// and their answers may come back in any order.
	concurrentVerify := func(weight int32, additional []WeightDestination, want RpcVerified, n int) {
		call := fmt.Sprintf("VerifyWeight %d x%d concurrent", weight, n)
		ping(call)
		problems := make([]string, n)
		var wg sync.WaitGroup
		for i := range problems {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				problems[i] = verify(weight, additional, want)
			}(i)
		}
		wg.Wait()
		var failed []string
		for i, problem := range problems {
			if problem != "" {
				failed = append(failed, fmt.Sprintf("call %d: %s", i, problem))
			}
		}
		r.check(call, strings.Join(failed, "; "))
	}

	setWeight(20, nil)
	verifyWeight(20, nil, Verified)

	ping("SetHeaderRoute")
	r.check("SetHeaderRoute", wantNoError(p.SetHeaderRoute(ro, &s.headerRoute)))
	ping("SetMirrorRoute")
	r.check("SetMirrorRoute", wantNoError(p.SetMirrorRoute(ro, &s.mirrorRoute)))

	verifyWeight(50, s.additional, NotVerified)
	setWeight(50, s.additional)
	verifyWeight(50, s.additional, Verified)
	concurrentVerify(50, s.additional, Verified, 8)

	ping("SetWeight 150")
	if e := p.SetWeight(ro, 150, nil); !strings.Contains(e.ErrorString, "150") {
		r.check("SetWeight 150", fmt.Sprintf("want an out-of-range error naming 150, got %q", e.ErrorString))
	} else {
		r.check("SetWeight 150", "")
	}

	ping("RemoveManagedRoutes")
	r.check("RemoveManagedRoutes", wantNoError(p.RemoveManagedRoutes(ro)))
	setWeight(0, nil)

	ping("GetWeightUpdateDeadline")
	deadline, e := p.GetWeightUpdateDeadline(ro)
	switch {
	case e.HasError():
		r.check("GetWeightUpdateDeadline", fmt.Sprintf("unexpected error %q", e.ErrorString))
	case deadline != nil:
		r.check("GetWeightUpdateDeadline", fmt.Sprintf("got deadline %v, want none", deadline))
	default:
		r.check("GetWeightUpdateDeadline", "")
	}
	ping("ClearWeightUpdateDeadline")
	r.check("ClearWeightUpdateDeadline", wantNoError(p.ClearWeightUpdateDeadline(ro)))
	r.check(fmt.Sprintf("Ping x%d", r.pings), "")

	// Kill sends Control.Quit and gives the plugin 2 s to exit on its own
	// before SIGKILL; go-plugin logs which of the two happened.
	r.current.Store("Kill")
	started := time.Now()
	client.Kill()
	elapsed := time.Since(started)
	switch {
	case !client.Exited():
		r.check("Kill", "plugin process still running after Kill")
	case logs.find("error closing client during Kill") != nil:
		r.check("Kill", fmt.Sprintf("Control.Quit got no reply (%v), so the plugin was force-killed", logs.find("error closing client during Kill")["err"]))
	case logs.has("plugin failed to exit gracefully"):
		r.check("Kill", fmt.Sprintf("plugin did not exit within %v of Control.Quit and was force-killed", elapsed.Round(time.Millisecond)))
	case logs.exitError() != "":
		r.check("Kill", "plugin exited with "+logs.exitError())
	default:
		r.check("Kill", "")
	}
}
