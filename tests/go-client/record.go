package main

// -record: the fixtures of tests/fixtures/real-controller, recorded from the
// genuine controller side.
//
//	go-client -record <dir> [-plugin <path> [-- plugin args...]]
//
// For each scenario of rollouts.go (host, subset) a child process
// (`go-client record-scenario`) plays the controller exactly as -scenario
// does: argo's rollout/trafficrouting/plugin/client starts the plugin from
// the controller's configuration (go-plugin ClientConfig with Cmd, Managed),
// dispenses it, calls InitPlugin, pings it before every call, and argo's
// rollout/trafficrouting/plugin/rpc client sends the calls of recordSteps;
// CleanupClients stops the plugin (Control.Quit). The plugin binary the
// configuration names is `go-client record-shim` (record_shim.go), which
// starts the real plugin, puts its own socket in the handshake line and logs
// every byte that crosses. The real plugin is `go-client record-plugin`
// (record_plugin.go, argo's own server side) unless -plugin names another.
//
// From the capture the child writes <dir>/<scenario>/ afresh (the yamux
// session demultiplexed per stream; the dispensed plugin stream cut per call
// with encoding/gob, which reads one message at a time):
//
//	NN-<Call>.args.json          method, seq, gob registered name, arguments as JSON
//	NN-<Call>.wire.bin           the request as it crossed the plugin stream
//	NN-<Call>.request.bin        the same request from a fresh gob encoder
//	NN-<Call>.wire-response.bin  the response as it crossed the plugin stream
//	rollout-<scenario>.yaml      the Rollout sent
//	script-<scenario>.json       the calls, in order
//	wire/plugin-stream.c2s.gob   the plugin stream after the MuxBroker id, controller to plugin
//	wire/plugin-stream.s2c.gob   the same, plugin to controller (after the id's echo)
//	wire/conn0-stream1.c2s.bin   go-plugin's control stream (Dispense, Ping, Quit)
//	wire/conn0-stream1.s2c.bin
//	wire/yamux-frames.txt        every yamux frame header, in the order seen
//
// and <dir>/recorded-with.txt, the Go and module versions of the recorder.

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	netrpc "net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	hclog "github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"sigs.k8s.io/yaml"
)

// recordMain runs one record-scenario child per scenario.
func recordMain(out, plugin string, pluginArgs []string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-client -record: %v\n", err)
		return 1
	}
	out, err = filepath.Abs(out)
	if err == nil && plugin != "" {
		plugin, err = filepath.Abs(plugin)
	}
	if err == nil {
		err = os.MkdirAll(out, 0o755)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-client -record: %v\n", err)
		return 1
	}
	for _, name := range scenarioNames() {
		cmd := exec.Command(self, append([]string{"record-scenario", name, filepath.Join(out, name), plugin}, pluginArgs...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go-client -record: scenario %s: %v\n", name, err)
			return 1
		}
	}
	if err := os.WriteFile(filepath.Join(out, "recorded-with.txt"), []byte(recordedWith()), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "go-client -record: %v\n", err)
		return 1
	}
	return 0
}

// recordedWith names the Go release and the modules on the wire.
func recordedWith() string {
	var b strings.Builder
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "build information unavailable\n"
	}
	fmt.Fprintf(&b, "%s\n", info.GoVersion)
	for _, dep := range info.Deps {
		switch dep.Path {
		case "github.com/argoproj/argo-rollouts", "github.com/hashicorp/go-plugin",
			"github.com/hashicorp/yamux", "k8s.io/api", "k8s.io/apimachinery":
			version := dep.Version
			if dep.Replace != nil {
				version = dep.Replace.Version
			}
			fmt.Fprintf(&b, "%s %s\n", dep.Path, version)
		}
	}
	return b.String()
}

// recordStep is one call of a recording, as script-<scenario>.json shows it.
type recordStep struct {
	Call                   string                       `json:"call"`
	Note                   string                       `json:"note,omitempty"`
	Rollout                string                       `json:"rollout,omitempty"`
	CanaryHash             string                       `json:"canaryHash,omitempty"`
	StableHash             string                       `json:"stableHash,omitempty"`
	Weight                 *int32                       `json:"weight,omitempty"`
	AdditionalDestinations []v1alpha1.WeightDestination `json:"additionalDestinations,omitempty"`
	SetHeaderRoute         *v1alpha1.SetHeaderRoute     `json:"setHeaderRoute,omitempty"`
	SetMirrorRoute         *v1alpha1.SetMirrorRoute     `json:"setMirrorRoute,omitempty"`
}

// recordSteps is the call script of a recording.
func recordSteps(name string, s *scenario) []recordStep {
	ro := "rollout-" + name + ".yaml"
	weight := func(w int32) *int32 { return &w }
	return []recordStep{
		{Call: "InitPlugin", Note: "sent by GetTrafficPlugin when it starts the plugin"},
		{Call: "InitPlugin"},
		{Call: "Type"},
		{Call: "UpdateHash", Rollout: ro, CanaryHash: s.canaryHash, StableHash: s.stableHash},
		{Call: "SetWeight", Rollout: ro, Weight: weight(20)},
		{Call: "VerifyWeight", Rollout: ro, Weight: weight(20)},
		{Call: "SetHeaderRoute", Rollout: ro, SetHeaderRoute: &s.headerRoute},
		{Call: "SetMirrorRoute", Rollout: ro, SetMirrorRoute: &s.mirrorRoute},
		{Call: "VerifyWeight", Rollout: ro, Weight: weight(50)},
		{Call: "SetWeight", Rollout: ro, Weight: weight(50), AdditionalDestinations: s.additional},
		{Call: "SetWeight", Rollout: ro, Weight: weight(150), Note: "out of range: the plugin answers an error"},
		{Call: "RemoveManagedRoutes", Rollout: ro},
		{Call: "SetWeight", Rollout: ro, Weight: weight(0)},
	}
}

// recordedCall is what the controller sent for one step.
type recordedCall struct {
	stem   string
	method string
	args   any // the rpc package's argument value; nil for InitPlugin and Type
	seq    uint64
	wire   []byte
	resp   []byte
}

// lockedBuffer keeps go-plugin's log, shown only when a recording fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// recordScenarioMain is `go-client record-scenario <name> <dir> <plugin|""> [args...]`.
func recordScenarioMain(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: go-client record-scenario <scenario> <dir> <plugin|\"\"> [args...]")
		return 2
	}
	name, out, plugin, pluginArgs := args[0], args[1], args[2], args[3:]
	logs := &lockedBuffer{}
	hclog.DefaultOutput = logs
	if err := recordScenario(name, out, plugin, pluginArgs); err != nil {
		goplugin.CleanupClients()
		removeWorkDir()
		logs.mu.Lock()
		_, _ = os.Stderr.Write(logs.b.Bytes())
		logs.mu.Unlock()
		fmt.Fprintf(os.Stderr, "go-client record-scenario %s: %v\n", name, err)
		return 1
	}
	return 0
}

func recordScenario(name, out, plugin string, pluginArgs []string) error {
	build, ok := scenarios[name]
	if !ok {
		return fmt.Errorf("no scenario %q", name)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if plugin == "" {
		plugin, pluginArgs = self, []string{"record-plugin"}
	}
	tmp, err := os.MkdirTemp("", "record-capture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	capture := filepath.Join(tmp, "capture.bin")

	c, err := newController(self, "argoproj-labs/istio", append([]string{"record-shim", capture, plugin}, pluginArgs...))
	if err != nil {
		return err
	}
	defer removeWorkDir()
	s := build()
	steps := recordSteps(name, &s)
	calls, err := runSteps(c, &s, steps)
	// The controller's shutdown: Control.Quit, then go-plugin waits for the
	// plugin (the shim, which exits after the plugin) to exit.
	goplugin.CleanupClients()
	if err != nil {
		return err
	}

	raw, err := os.ReadFile(capture)
	if err != nil {
		return err
	}
	frames, err := yamuxFrames(raw)
	if err != nil {
		return err
	}
	streams, err := demux(frames)
	if err != nil {
		return err
	}
	control, ok := streams[1]
	if !ok {
		return fmt.Errorf("no yamux stream 1 (go-plugin's control stream)")
	}
	pluginStream, err := findPluginStream(streams)
	if err != nil {
		return err
	}
	c2s, s2c := pluginStream[0][4:], pluginStream[1][4:]
	if err := cutRequests(c2s, calls); err != nil {
		return err
	}
	if err := cutResponses(s2c, calls); err != nil {
		return err
	}

	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, "wire"), 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		"wire/plugin-stream.c2s.gob": c2s,
		"wire/plugin-stream.s2c.gob": s2c,
		"wire/conn0-stream1.c2s.bin": control[0],
		"wire/conn0-stream1.s2c.bin": control[1],
		"wire/yamux-frames.txt":      []byte(frameList(frames)),
	}
	rolloutYAML, err := yaml.Marshal(&s.rollout)
	if err != nil {
		return err
	}
	files["rollout-"+name+".yaml"] = append([]byte("# The Rollout of scenario "+name+" (tests/go-client/rollouts.go), as sent with every call.\n"), rolloutYAML...)
	script, err := json.MarshalIndent(steps, "", "  ")
	if err != nil {
		return err
	}
	files["script-"+name+".json"] = append(script, '\n')
	for i := range calls {
		call := &calls[i]
		request, err := freshRequest(call)
		if err != nil {
			return fmt.Errorf("%s: %w", call.stem, err)
		}
		if i == 0 && !bytes.Equal(request, call.wire) {
			return fmt.Errorf("%s: the first request on the stream differs from the same request on a fresh encoder", call.stem)
		}
		gobName := ""
		if call.args != nil {
			gobName = reflect.TypeOf(call.args).Name()
			if !bytes.Contains(request, []byte(gobName)) {
				return fmt.Errorf("%s: registered name %q not on the wire", call.stem, gobName)
			}
		}
		argsJSON, err := json.MarshalIndent(map[string]any{
			"serviceMethod": call.method,
			"seq":           call.seq,
			"argsGobName":   gobName,
			"args":          call.args,
		}, "", "  ")
		if err != nil {
			return err
		}
		files[call.stem+".args.json"] = append(argsJSON, '\n')
		files[call.stem+".wire.bin"] = call.wire
		files[call.stem+".request.bin"] = request
		files[call.stem+".wire-response.bin"] = call.resp
	}
	for path, content := range files {
		if err := os.WriteFile(filepath.Join(out, path), content, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("%s: %d calls, plugin stream %d bytes to the plugin, %d back\n", name, len(calls), len(c2s), len(s2c))
	return nil
}

// runSteps sends the steps as the controller does, GetTrafficPlugin before
// each call, and returns what each call sent.
func runSteps(c *controller, s *scenario, steps []recordStep) ([]recordedCall, error) {
	ro := &s.rollout
	calls := make([]recordedCall, 0, len(steps))
	for i, step := range steps {
		p, err := c.plugin()
		if err != nil {
			return nil, fmt.Errorf("step %d (%s): GetTrafficPlugin: %w", i+1, step.Call, err)
		}
		var args any
		var e types.RpcError
		switch step.Call {
		case "InitPlugin":
			if i > 0 {
				e = p.InitPlugin()
			}
		case "Type":
			if t := p.Type(); strings.Contains(t, "rpc call error") {
				e.ErrorString = t
			}
		case "UpdateHash":
			e = p.UpdateHash(ro, step.CanaryHash, step.StableHash, step.AdditionalDestinations)
			args = rpc.UpdateHashArgs{Rollout: *ro, CanaryHash: step.CanaryHash, StableHash: step.StableHash, AdditionalDestinations: step.AdditionalDestinations}
		case "SetWeight":
			e = p.SetWeight(ro, *step.Weight, step.AdditionalDestinations)
			args = rpc.SetWeightAndVerifyWeightArgs{Rollout: *ro, DesiredWeight: *step.Weight, AdditionalDestinations: step.AdditionalDestinations}
		case "VerifyWeight":
			_, e = p.VerifyWeight(ro, *step.Weight, step.AdditionalDestinations)
			args = rpc.SetWeightAndVerifyWeightArgs{Rollout: *ro, DesiredWeight: *step.Weight, AdditionalDestinations: step.AdditionalDestinations}
		case "SetHeaderRoute":
			e = p.SetHeaderRoute(ro, step.SetHeaderRoute)
			args = rpc.SetHeaderArgs{Rollout: *ro, SetHeaderRoute: *step.SetHeaderRoute}
		case "SetMirrorRoute":
			e = p.SetMirrorRoute(ro, step.SetMirrorRoute)
			args = rpc.SetMirrorArgs{Rollout: *ro, SetMirrorRoute: *step.SetMirrorRoute}
		case "RemoveManagedRoutes":
			e = p.RemoveManagedRoutes(ro)
			args = rpc.RemoveManagedRoutesArgs{Rollout: *ro}
		default:
			return nil, fmt.Errorf("step %d: no call %q", i+1, step.Call)
		}
		// An RpcError from the plugin is an answer; a failed call is not.
		if strings.Contains(e.ErrorString, "rpc call error") {
			return nil, fmt.Errorf("step %d (%s): %s", i+1, step.Call, e.ErrorString)
		}
		calls = append(calls, recordedCall{
			stem:   fmt.Sprintf("%02d-%s", i+1, step.Call),
			method: "Plugin." + step.Call,
			args:   args,
		})
	}
	return calls, nil
}

// yamuxFrame is one frame of the captured session; payload only for Data.
type yamuxFrame struct {
	conn    uint32
	dir     uint8
	typ     uint8
	flags   uint16
	stream  uint32
	length  uint32
	payload []byte
}

// yamuxFrames parses the capture (see record_shim.go) into frames, in the
// order their last byte arrived.
func yamuxFrames(capture []byte) ([]yamuxFrame, error) {
	type side struct {
		conn uint32
		dir  uint8
	}
	pending := map[side][]byte{}
	var frames []yamuxFrame
	for len(capture) > 0 {
		if len(capture) < 9 {
			return nil, fmt.Errorf("capture: a truncated record")
		}
		k := side{binary.LittleEndian.Uint32(capture), capture[4]}
		n := int(binary.LittleEndian.Uint32(capture[5:]))
		if len(capture) < 9+n {
			return nil, fmt.Errorf("capture: a truncated record")
		}
		buf := append(pending[k], capture[9:9+n]...)
		capture = capture[9+n:]
		for len(buf) >= 12 {
			f := yamuxFrame{
				conn:   k.conn,
				dir:    k.dir,
				typ:    buf[1],
				flags:  binary.BigEndian.Uint16(buf[2:]),
				stream: binary.BigEndian.Uint32(buf[4:]),
				length: binary.BigEndian.Uint32(buf[8:]),
			}
			if buf[0] != 0 {
				return nil, fmt.Errorf("capture: yamux version %d", buf[0])
			}
			size := 12
			if f.typ == 0 {
				size += int(f.length)
				if len(buf) < size {
					break
				}
				f.payload = buf[12:size]
			}
			frames = append(frames, f)
			buf = buf[size:]
		}
		pending[k] = buf
	}
	for k, rest := range pending {
		if len(rest) > 0 {
			return nil, fmt.Errorf("capture: connection %d direction %d ends inside a frame", k.conn, k.dir)
		}
	}
	return frames, nil
}

// demux concatenates the Data payloads per stream and direction; the
// plugin runs on one connection.
func demux(frames []yamuxFrame) (map[uint32][2][]byte, error) {
	streams := map[uint32][2][]byte{}
	for _, f := range frames {
		if f.conn != 0 {
			return nil, fmt.Errorf("a second socket connection (%d): go-plugin's net/rpc client uses one", f.conn)
		}
		if f.typ == 0 {
			s := streams[f.stream]
			s[f.dir] = append(s[f.dir], f.payload...)
			streams[f.stream] = s
		}
	}
	return streams, nil
}

// findPluginStream is the stream MuxBroker.Dial opened for the dispensed
// plugin: the controller writes the broker id (4 bytes) and the plugin
// echoes it.
func findPluginStream(streams map[uint32][2][]byte) ([2][]byte, error) {
	var found [][2][]byte
	for id, s := range streams {
		if id != 1 && len(s[0]) >= 4 && len(s[1]) >= 4 && bytes.Equal(s[0][:4], s[1][:4]) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		return [2][]byte{}, fmt.Errorf("%d streams look like a dispensed plugin stream, want 1", len(found))
	}
	return found[0], nil
}

// offsetReader tells how far gob has read; it is an io.ByteReader, so gob
// reads exactly one message at a time and never ahead.
type offsetReader struct{ *bytes.Reader }

func (r offsetReader) offset(total []byte) int { return len(total) - r.Len() }

// cutRequests decodes the request stream (header, then the body as an
// interface) and cuts it at each request's end.
func cutRequests(stream []byte, calls []recordedCall) error {
	r := offsetReader{bytes.NewReader(stream)}
	dec := gob.NewDecoder(r)
	for i := range calls {
		start := r.offset(stream)
		var header netrpc.Request
		if err := dec.Decode(&header); err != nil {
			return fmt.Errorf("%s: request header: %w", calls[i].stem, err)
		}
		var body any
		if err := dec.Decode(&body); err != nil {
			return fmt.Errorf("%s: request body: %w", calls[i].stem, err)
		}
		if header.ServiceMethod != calls[i].method {
			return fmt.Errorf("%s: the stream has %s here", calls[i].stem, header.ServiceMethod)
		}
		if (body == nil) != (calls[i].args == nil) {
			return fmt.Errorf("%s: body %T", calls[i].stem, body)
		}
		calls[i].seq = header.Seq
		calls[i].wire = stream[start:r.offset(stream)]
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d bytes after the last request", r.Len())
	}
	return nil
}

// cutResponses cuts the response stream (header, then the reply) the same
// way; the calls were sequential, so the responses come in call order.
func cutResponses(stream []byte, calls []recordedCall) error {
	r := offsetReader{bytes.NewReader(stream)}
	dec := gob.NewDecoder(r)
	for i := range calls {
		start := r.offset(stream)
		var header netrpc.Response
		if err := dec.Decode(&header); err != nil {
			return fmt.Errorf("%s: response header: %w", calls[i].stem, err)
		}
		if err := dec.DecodeValue(reflect.Value{}); err != nil { // discarded
			return fmt.Errorf("%s: reply: %w", calls[i].stem, err)
		}
		if header.ServiceMethod != calls[i].method || header.Seq != calls[i].seq || header.Error != "" {
			return fmt.Errorf("%s: response %+v", calls[i].stem, header)
		}
		calls[i].resp = stream[start:r.offset(stream)]
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("bytes after the last response")
	}
	return nil
}

// freshRequest encodes the call as net/rpc's client codec does (the header,
// then the body: a pointer to an interface), on a new gob encoder.
func freshRequest(call *recordedCall) ([]byte, error) {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if err := enc.Encode(&netrpc.Request{ServiceMethod: call.method, Seq: call.seq}); err != nil {
		return nil, err
	}
	body := call.args
	if err := enc.Encode(&body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var yamuxTypes = [...]string{"Data", "WindowUpdate", "Ping", "GoAway"}

// frameList is yamux-frames.txt: one line per frame header.
func frameList(frames []yamuxFrame) string {
	var b strings.Builder
	b.WriteString("# socket connection 0 (dir 0 = controller->plugin, 1 = plugin->controller)\n")
	for _, f := range frames {
		typ := "unknown"
		if int(f.typ) < len(yamuxTypes) {
			typ = yamuxTypes[f.typ]
		}
		fmt.Fprintf(&b, "dir=%d type=%d(%s) flags=0x%x stream=%d length=%d\n", f.dir, f.typ, typ, f.flags, f.stream, f.length)
	}
	return b.String()
}
