package main

// What the -peers driver measures with, beside the calls themselves:
// failing with a message, checking an RpcError, phase markers on stdout
// with a go-ahead read from stdin (so whoever runs it can read the API
// server's counters at exactly those points), and the plugin's memory and
// process id.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	rpctypes "github.com/argoproj/argo-rollouts/utils/plugin/types"
)

// benchAbort ends the run: the caller's deferred cleanup kills the plugin.
type benchAbort struct{ reason string }

func benchFail(format string, args ...any) {
	panic(benchAbort{fmt.Sprintf(format, args...)})
}

func benchCheck(call string, e rpctypes.RpcError) {
	if e.HasError() {
		benchFail("%s: unexpected error %q", call, e.ErrorString)
	}
}

var benchStdin = bufio.NewReader(os.Stdin)

// benchPhase announces a phase boundary and waits for the go-ahead: a line
// or EOF on stdin.
func benchPhase(marker string) {
	fmt.Println(marker)
	if _, err := benchStdin.ReadString('\n'); err != nil && err != io.EOF {
		benchFail("reading the go-ahead after %q: %v", marker, err)
	}
}

// memoryKB reads VmRSS and VmHWM of a process, in kB.
func memoryKB(pid int) (rss, hwm int64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss, err = strconv.ParseInt(fields[1], 10, 64)
		case "VmHWM:":
			hwm, err = strconv.ParseInt(fields[1], 10, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %v", line, err)
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// pluginPid is the process id of the plugin: the one child of this process
// (argo's client keeps go-plugin's Client to itself).
func pluginPid() (int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	for _, path := range stats {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so count from ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Dir(path), "/proc/"), "/"))
		}
	}
	return 0, fmt.Errorf("no child process of %d", self)
}
