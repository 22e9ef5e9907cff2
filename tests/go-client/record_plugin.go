package main

// `go-client record-plugin`: the plugin that answers the recorded calls
// unless -plugin names another. A traffic-router plugin built on
// argo-rollouts' own server side (rpc.RpcTrafficRouterPlugin served by
// go-plugin with the controller's handshake) that keeps the last weight set:
// VerifyWeight is Verified for that weight only, and a weight outside
// 0..100 is refused, so the recorded responses carry every reply shape
// (RpcError with and without a message, a string, both RpcVerified values).

import (
	"fmt"
	"sync"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	goplugin "github.com/hashicorp/go-plugin"
)

type recordPlugin struct {
	mu     sync.Mutex
	weight int32
}

var _ rpc.TrafficRouterPlugin = (*recordPlugin)(nil)

func (*recordPlugin) InitPlugin() types.RpcError { return types.RpcError{} }

func (*recordPlugin) UpdateHash(*v1alpha1.Rollout, string, string, []v1alpha1.WeightDestination) types.RpcError {
	return types.RpcError{}
}

func (p *recordPlugin) SetWeight(_ *v1alpha1.Rollout, weight int32, _ []v1alpha1.WeightDestination) types.RpcError {
	if weight < 0 || weight > 100 {
		return types.RpcError{ErrorString: fmt.Sprintf("record-plugin: invalid weight %d", weight)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.weight = weight
	return types.RpcError{}
}

func (*recordPlugin) SetHeaderRoute(*v1alpha1.Rollout, *v1alpha1.SetHeaderRoute) types.RpcError {
	return types.RpcError{}
}

func (*recordPlugin) SetMirrorRoute(*v1alpha1.Rollout, *v1alpha1.SetMirrorRoute) types.RpcError {
	return types.RpcError{}
}

func (p *recordPlugin) VerifyWeight(_ *v1alpha1.Rollout, weight int32, _ []v1alpha1.WeightDestination) (types.RpcVerified, types.RpcError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if weight == p.weight {
		return types.Verified, types.RpcError{}
	}
	return types.NotVerified, types.RpcError{}
}

func (*recordPlugin) RemoveManagedRoutes(*v1alpha1.Rollout) types.RpcError { return types.RpcError{} }

func (*recordPlugin) Type() string { return "RecordGoPlugin" }

func recordPluginMain() {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  1,
			MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
			MagicCookieValue: "trafficrouter",
		},
		Plugins: map[string]goplugin.Plugin{
			"RpcTrafficRouterPlugin": &rpc.RpcTrafficRouterPlugin{Impl: &recordPlugin{}},
		},
	})
}
