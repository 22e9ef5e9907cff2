package main

// The controller side of argo-rollouts rollout/trafficrouting/plugin/rpc
// (rpc.go) and utils/plugin/types (types.go): the same argument structs, the
// same gob registration names and the same net/rpc calls, so the plugin sees
// byte-for-byte what the controller sends.

import (
	"encoding/gob"
	"fmt"
	"net/rpc"
	"time"

	plugin "github.com/hashicorp/go-plugin"
)

type RpcError struct {
	ErrorString string
}

func (e RpcError) HasError() bool { return e.ErrorString != "" }

type RpcVerified int32

const (
	NotVerified RpcVerified = iota
	Verified
	NotImplemented
)

func (v RpcVerified) String() string {
	switch v {
	case NotVerified:
		return "NotVerified"
	case Verified:
		return "Verified"
	case NotImplemented:
		return "NotImplemented"
	}
	return fmt.Sprintf("RpcVerified(%d)", int32(v))
}

type UpdateHashArgs struct {
	Rollout                Rollout
	CanaryHash             string
	StableHash             string
	AdditionalDestinations []WeightDestination
}

type SetWeightAndVerifyWeightArgs struct {
	Rollout                Rollout
	DesiredWeight          int32
	AdditionalDestinations []WeightDestination
}

type SetHeaderArgs struct {
	Rollout        Rollout
	SetHeaderRoute SetHeaderRoute
}

type SetMirrorArgs struct {
	Rollout        Rollout
	SetMirrorRoute SetMirrorRoute
}

type RemoveManagedRoutesArgs struct {
	Rollout Rollout
}

type GetWeightUpdateDeadlineArgs struct {
	Rollout Rollout
}

type ClearWeightUpdateDeadlineArgs struct {
	Rollout Rollout
}

type VerifyWeightResponse struct {
	Verified RpcVerified
	Err      RpcError
}

type WeightUpdateDeadlineResponse struct {
	Deadline *time.Time
	Err      RpcError
}

func init() {
	gob.RegisterName("UpdateHashArgs", new(UpdateHashArgs))
	gob.RegisterName("SetWeightAndVerifyWeightArgs", new(SetWeightAndVerifyWeightArgs))
	gob.RegisterName("SetHeaderArgs", new(SetHeaderArgs))
	gob.RegisterName("SetMirrorArgs", new(SetMirrorArgs))
	gob.RegisterName("RemoveManagedRoutesArgs", new(RemoveManagedRoutesArgs))
	gob.RegisterName("GetWeightUpdateDeadlineArgs", new(GetWeightUpdateDeadlineArgs))
	gob.RegisterName("ClearWeightUpdateDeadlineArgs", new(ClearWeightUpdateDeadlineArgs))
}

// TrafficRouterPluginRPC is argo's controller-side stub: every call wraps its
// arguments in an `any` and passes a pointer to it, so the body on the wire
// is an interface value carrying the registered name.
type TrafficRouterPluginRPC struct{ client *rpc.Client }

func (g *TrafficRouterPluginRPC) InitPlugin() RpcError {
	var resp RpcError
	if err := g.client.Call("Plugin.InitPlugin", new(any), &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("InitPlugin rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) Type() string {
	var resp string
	if err := g.client.Call("Plugin.Type", new(any), &resp); err != nil {
		return fmt.Sprintf("Type rpc call error: %s", err)
	}
	return resp
}

func (g *TrafficRouterPluginRPC) UpdateHash(rollout *Rollout, canaryHash, stableHash string, additional []WeightDestination) RpcError {
	var resp RpcError
	var args any = UpdateHashArgs{Rollout: *rollout, CanaryHash: canaryHash, StableHash: stableHash, AdditionalDestinations: additional}
	if err := g.client.Call("Plugin.UpdateHash", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("UpdateHash rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) SetWeight(rollout *Rollout, desiredWeight int32, additional []WeightDestination) RpcError {
	var resp RpcError
	var args any = SetWeightAndVerifyWeightArgs{Rollout: *rollout, DesiredWeight: desiredWeight, AdditionalDestinations: additional}
	if err := g.client.Call("Plugin.SetWeight", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("SetWeight rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) SetHeaderRoute(rollout *Rollout, route *SetHeaderRoute) RpcError {
	var resp RpcError
	var args any = SetHeaderArgs{Rollout: *rollout, SetHeaderRoute: *route}
	if err := g.client.Call("Plugin.SetHeaderRoute", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("SetHeaderRoute rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) SetMirrorRoute(rollout *Rollout, route *SetMirrorRoute) RpcError {
	var resp RpcError
	var args any = SetMirrorArgs{Rollout: *rollout, SetMirrorRoute: *route}
	if err := g.client.Call("Plugin.SetMirrorRoute", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("SetMirrorRoute rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) VerifyWeight(rollout *Rollout, desiredWeight int32, additional []WeightDestination) (RpcVerified, RpcError) {
	var resp VerifyWeightResponse
	var args any = SetWeightAndVerifyWeightArgs{Rollout: *rollout, DesiredWeight: desiredWeight, AdditionalDestinations: additional}
	if err := g.client.Call("Plugin.VerifyWeight", &args, &resp); err != nil {
		return NotVerified, RpcError{ErrorString: fmt.Sprintf("VerifyWeight rpc call error: %s", err)}
	}
	return resp.Verified, resp.Err
}

func (g *TrafficRouterPluginRPC) RemoveManagedRoutes(rollout *Rollout) RpcError {
	var resp RpcError
	var args any = RemoveManagedRoutesArgs{Rollout: *rollout}
	if err := g.client.Call("Plugin.RemoveManagedRoutes", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("RemoveManagedRoutes rpc call error: %s", err)}
	}
	return resp
}

func (g *TrafficRouterPluginRPC) GetWeightUpdateDeadline(rollout *Rollout) (*time.Time, RpcError) {
	var resp WeightUpdateDeadlineResponse
	var args any = GetWeightUpdateDeadlineArgs{Rollout: *rollout}
	if err := g.client.Call("Plugin.GetWeightUpdateDeadline", &args, &resp); err != nil {
		return nil, RpcError{ErrorString: fmt.Sprintf("GetWeightUpdateDeadline rpc call error: %s", err)}
	}
	return resp.Deadline, resp.Err
}

func (g *TrafficRouterPluginRPC) ClearWeightUpdateDeadline(rollout *Rollout) RpcError {
	var resp RpcError
	var args any = ClearWeightUpdateDeadlineArgs{Rollout: *rollout}
	if err := g.client.Call("Plugin.ClearWeightUpdateDeadline", &args, &resp); err != nil {
		return RpcError{ErrorString: fmt.Sprintf("ClearWeightUpdateDeadline rpc call error: %s", err)}
	}
	return resp
}

// RpcTrafficRouterPlugin is the go-plugin Plugin the controller dispenses;
// only the client half is needed here.
type RpcTrafficRouterPlugin struct{}

func (p *RpcTrafficRouterPlugin) Server(*plugin.MuxBroker) (any, error) {
	return nil, fmt.Errorf("the controller side never serves the plugin")
}

func (RpcTrafficRouterPlugin) Client(b *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return &TrafficRouterPluginRPC{client: c}, nil
}
