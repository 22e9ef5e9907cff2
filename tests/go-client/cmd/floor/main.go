// Command floor is the Go floor of the peers benchmark: a traffic-router
// plugin built on argo-rollouts' own server side (rollout/trafficrouting/
// plugin/rpc's RpcTrafficRouterPlugin, served by go-plugin with the
// handshake the controller's plugin client uses) whose methods succeed at
// once. What it costs is what every Go plugin pays before doing any work:
// go-plugin's start-up, yamux, net/rpc and gob decoding of the arguments
// into v1alpha1 values.
package main

import (
	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	goplugin "github.com/hashicorp/go-plugin"
)

// The handshake of argo-rollouts' traffic-router plugin client
// (rollout/trafficrouting/plugin/client).
var handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
	MagicCookieValue: "trafficrouter",
}

type floor struct{}

var _ rpc.TrafficRouterPlugin = floor{}

func (floor) InitPlugin() types.RpcError { return types.RpcError{} }

func (floor) UpdateHash(*v1alpha1.Rollout, string, string, []v1alpha1.WeightDestination) types.RpcError {
	return types.RpcError{}
}

func (floor) SetWeight(*v1alpha1.Rollout, int32, []v1alpha1.WeightDestination) types.RpcError {
	return types.RpcError{}
}

func (floor) SetHeaderRoute(*v1alpha1.Rollout, *v1alpha1.SetHeaderRoute) types.RpcError {
	return types.RpcError{}
}

func (floor) SetMirrorRoute(*v1alpha1.Rollout, *v1alpha1.SetMirrorRoute) types.RpcError {
	return types.RpcError{}
}

func (floor) VerifyWeight(*v1alpha1.Rollout, int32, []v1alpha1.WeightDestination) (types.RpcVerified, types.RpcError) {
	return types.Verified, types.RpcError{}
}

func (floor) RemoveManagedRoutes(*v1alpha1.Rollout) types.RpcError { return types.RpcError{} }

func (floor) Type() string { return "Floor" }

func main() {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins: map[string]goplugin.Plugin{
			"RpcTrafficRouterPlugin": &rpc.RpcTrafficRouterPlugin{Impl: floor{}},
		},
	})
}
