package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
)

// logWatch receives go-plugin's log (the controller's client leaves
// ClientConfig.Logger unset, so go-plugin logs hclog text lines to
// hclog.DefaultOutput), passes it through to stderr and keeps the lines, so
// a run can tell a clean exit on Control.Quit from a forced kill.
type logWatch struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	w.mu.Unlock()
	return os.Stderr.Write(p)
}

// find returns the first line holding message (hclog text: "... [LEVEL]
// plugin: message: key=value ..."), or "".
func (w *logWatch) find(message string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range w.lines {
		if strings.Contains(line, "plugin: "+message) {
			return line
		}
	}
	return ""
}

// exitError is the error go-plugin logged with "plugin process exited" (a
// non-zero status or a signal), or "" after a clean exit.
func (w *logWatch) exitError() string {
	line := w.find("plugin process exited")
	if line == "" {
		return `no "plugin process exited" log line`
	}
	if i := strings.Index(line, " error="); i >= 0 {
		return line[i+len(" error="):]
	}
	return ""
}
