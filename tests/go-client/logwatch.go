package main

import (
	"bytes"
	"encoding/json"
	"os"
	"sync"
)

// logWatch passes go-plugin's JSON log lines through to stderr and keeps
// them, so the run can tell a clean exit on Control.Quit from a forced kill.
type logWatch struct {
	mu      sync.Mutex
	partial []byte
	lines   []map[string]any
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		var entry map[string]any
		if json.Unmarshal(w.partial[:i], &entry) == nil {
			w.lines = append(w.lines, entry)
		}
		w.partial = w.partial[i+1:]
	}
	return os.Stderr.Write(p)
}

func (w *logWatch) has(message string) bool {
	return w.find(message) != nil
}

// exitError is the error go-plugin logged with "plugin process exited"
// (a non-zero status or a signal), or "" after a clean exit.
func (w *logWatch) exitError() string {
	entry := w.find("plugin process exited")
	if entry == nil {
		return "no \"plugin process exited\" log entry"
	}
	if e, ok := entry["error"].(string); ok {
		return e
	}
	return ""
}

func (w *logWatch) find(message string) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, entry := range w.lines {
		if entry["@message"] == message {
			return entry
		}
	}
	return nil
}
