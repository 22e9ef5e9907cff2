package main

// The plugin started exactly as the Argo Rollouts controller starts it: the
// controller's ConfigMap (argo-rollouts-config) names the plugin and its
// args, argo's utils/config reads it, utils/plugin finds the binary under
// ./plugin-bin/<namespace>/<name>, and rollout/trafficrouting/plugin/client
// builds go-plugin's ClientConfig (argo's handshake, plugin map with
// rpc.RpcTrafficRouterPlugin, Managed), dispenses the plugin, calls
// InitPlugin and pings it on every later GetTrafficPlugin.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/client"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/config"
	"github.com/argoproj/argo-rollouts/utils/defaults"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"sigs.k8s.io/yaml"
)

// controller is the controller's view of one traffic-router plugin.
type controller struct {
	pluginName string
}

// newController installs the plugin binary at pluginPath under the name
// pluginName the way the controller's plugin downloader leaves it
// (plugin-bin/<namespace>/<name> below the working directory, here a fresh
// temporary directory) and loads the controller's configuration naming it,
// with args as the plugin's command line.
func newController(pluginPath, pluginName string, args []string) (*controller, error) {
	absPlugin, err := filepath.Abs(pluginPath)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(absPlugin); err != nil {
		return nil, fmt.Errorf("plugin binary: %w", err)
	}
	dir, filename, err := config.GetPluginDirectoryAndFilename(pluginName)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "go-client-")
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(work, defaults.DefaultRolloutPluginFolder, dir)
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(absPlugin, filepath.Join(binDir, filename)); err != nil {
		return nil, err
	}
	if err := os.Chdir(work); err != nil {
		return nil, err
	}
	entry := []map[string]any{{"name": pluginName, "location": "file://" + absPlugin, "args": args}}
	plugins, err := yaml.Marshal(entry)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: defaults.DefaultRolloutsConfigMapName, Namespace: defaults.Namespace()},
		Data:       map[string]string{"trafficRouterPlugins": string(plugins)},
	}
	if _, err := config.InitializeConfig(configMapSource{cm: cm}, defaults.DefaultRolloutsConfigMapName); err != nil {
		return nil, err
	}
	return &controller{pluginName: pluginName}, nil
}

// removeWorkDir deletes the temporary plugin-bin tree (the working
// directory) once the plugin has stopped.
func removeWorkDir() {
	if wd, err := os.Getwd(); err == nil && strings.HasPrefix(filepath.Base(wd), "go-client-") {
		_ = os.RemoveAll(wd)
	}
}

// plugin is what the controller does before each call: GetTrafficPlugin,
// which starts the plugin (handshake, Dispense, InitPlugin, Ping) the first
// time and pings it on every later call.
func (c *controller) plugin() (rpc.TrafficRouterPlugin, error) {
	return client.GetTrafficPlugin(c.pluginName)
}

// configMapSource serves the one ConfigMap the controller reads at start-up;
// every other client method is left nil (never called by config).
type configMapSource struct {
	kubernetes.Interface
	cm *corev1.ConfigMap
}

func (s configMapSource) CoreV1() typedcorev1.CoreV1Interface { return coreV1{cm: s.cm} }

type coreV1 struct {
	typedcorev1.CoreV1Interface
	cm *corev1.ConfigMap
}

func (c coreV1) ConfigMaps(namespace string) typedcorev1.ConfigMapInterface {
	return configMaps{cm: c.cm, namespace: namespace}
}

type configMaps struct {
	typedcorev1.ConfigMapInterface
	cm        *corev1.ConfigMap
	namespace string
}

func (c configMaps) Get(_ context.Context, name string, _ metav1.GetOptions) (*corev1.ConfigMap, error) {
	if name != c.cm.Name || c.namespace != c.cm.Namespace {
		return nil, k8serrors.NewNotFound(corev1.Resource("configmaps"), name)
	}
	return c.cm.DeepCopy(), nil
}
