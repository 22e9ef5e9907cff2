package main

// -serve mode: the conformance runner's `genuine` transport. Each line on
// stdin is one call, in the JSON shape of a conformance case:
//
//	{"call":"SetWeight","rollout":{...Rollout JSON...},"weight":20,
//	 "additionalDestinations":[...],"canaryHash":"","stableHash":"",
//	 "setHeaderRoute":{...},"setMirrorRoute":{...}}
//
// The Rollout JSON is decoded into a v1alpha1.Rollout (as the controller's
// informer decodes it from the API server) and given what the controller's
// Rollout always carries (see enrich); the arguments become v1alpha1 values.
// The call then goes through argo's controller path: GetTrafficPlugin (start,
// Dispense and InitPlugin the first time, a Ping every time) and the
// rpc.TrafficRouterPlugin method. Each call answers one line on stdout:
//
//	{"error":"","verified":1,"type":"Istio"}
//
// "verified" only for VerifyWeight, "type" only for Type. A failure of the
// client itself (bad request line, the plugin unreachable) is reported as
// {"broken":"why"} and is never a plugin answer. EOF on stdin stops the
// plugin the way the controller does on shutdown (go-plugin CleanupClients:
// Control.Quit, then a kill after 2 s).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	goplugin "github.com/hashicorp/go-plugin"
)

type request struct {
	Call                   string                       `json:"call"`
	Rollout                json.RawMessage              `json:"rollout"`
	Weight                 int32                        `json:"weight"`
	AdditionalDestinations []v1alpha1.WeightDestination `json:"additionalDestinations"`
	CanaryHash             string                       `json:"canaryHash"`
	StableHash             string                       `json:"stableHash"`
	SetHeaderRoute         *v1alpha1.SetHeaderRoute     `json:"setHeaderRoute"`
	SetMirrorRoute         *v1alpha1.SetMirrorRoute     `json:"setMirrorRoute"`
}

type reply struct {
	Error    string             `json:"error"`
	Verified *types.RpcVerified `json:"verified,omitempty"`
	Type     *string            `json:"type,omitempty"`
	Broken   string             `json:"broken,omitempty"`
}

func serve(c *controller, in io.Reader, out io.Writer) error {
	defer removeWorkDir()
	defer goplugin.CleanupClients()
	lines := bufio.NewScanner(in)
	lines.Buffer(make([]byte, 0, 1<<16), 1<<26)
	enc := json.NewEncoder(out)
	started := false
	for lines.Scan() {
		var req request
		var rep reply
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			rep.Broken = fmt.Sprintf("request line: %v", err)
		} else {
			rep = c.call(&req, &started)
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return lines.Err()
}

// call performs one request the way the controller does: GetTrafficPlugin,
// then the method.
func (c *controller) call(req *request, started *bool) reply {
	var ro v1alpha1.Rollout
	if len(req.Rollout) > 0 {
		if err := json.Unmarshal(req.Rollout, &ro); err != nil {
			return reply{Broken: fmt.Sprintf("the case's Rollout does not decode as a v1alpha1.Rollout: %v", err)}
		}
		enrich(&ro)
	}
	first := !*started
	p, err := c.plugin()
	if err != nil {
		// The first GetTrafficPlugin calls InitPlugin; its RpcError is the
		// plugin's answer, anything else a failure to reach the plugin.
		var rpcErr types.RpcError
		if first && req.Call == "InitPlugin" && errors.As(err, &rpcErr) {
			return reply{Error: rpcErr.ErrorString}
		}
		return reply{Broken: fmt.Sprintf("GetTrafficPlugin: %v", err)}
	}
	*started = true
	var rep reply
	switch req.Call {
	case "InitPlugin":
		if !first {
			rep.Error = p.InitPlugin().ErrorString
		}
	case "Type":
		t := p.Type()
		rep.Type = &t
	case "UpdateHash":
		rep.Error = p.UpdateHash(&ro, req.CanaryHash, req.StableHash, req.AdditionalDestinations).ErrorString
	case "SetWeight":
		rep.Error = p.SetWeight(&ro, req.Weight, req.AdditionalDestinations).ErrorString
	case "VerifyWeight":
		verified, e := p.VerifyWeight(&ro, req.Weight, req.AdditionalDestinations)
		rep.Verified, rep.Error = &verified, e.ErrorString
	case "SetHeaderRoute":
		route := req.SetHeaderRoute
		if route == nil {
			route = &v1alpha1.SetHeaderRoute{}
		}
		rep.Error = p.SetHeaderRoute(&ro, route).ErrorString
	case "SetMirrorRoute":
		route := req.SetMirrorRoute
		if route == nil {
			route = &v1alpha1.SetMirrorRoute{}
		}
		rep.Error = p.SetMirrorRoute(&ro, route).ErrorString
	case "RemoveManagedRoutes":
		rep.Error = p.RemoveManagedRoutes(&ro).ErrorString
	default:
		return reply{Broken: fmt.Sprintf("argo-rollouts v1.10.2's rpc.TrafficRouterPlugin has no call %q", req.Call)}
	}
	return rep
}

// serveMain runs -serve on stdin/stdout.
func serveMain(c *controller) int {
	if err := serve(c, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "go-client: %v\n", err)
		return 1
	}
	return 0
}
