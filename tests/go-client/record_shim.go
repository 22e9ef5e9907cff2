package main

// `go-client record-shim <capture> <plugin> [args...]`: the plugin binary
// the recording controller starts (see record.go). It starts the real
// plugin with the environment go-plugin gave it, reads the plugin's
// handshake line, listens on a socket of its own, prints the handshake line
// with that socket's address in place of the plugin's, and forwards every
// connection to the plugin's socket. Each chunk of bytes read from either
// side is appended to <capture> before it is passed on, so the capture
// holds both directions of every connection in the order they happened.
// The shim exits with the plugin's exit status once the plugin has exited.
//
// Capture format, repeated: connection index (uint32), direction (uint8: 0
// controller to plugin, 1 plugin to controller), length (uint32), bytes;
// integers little-endian.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// captureLog appends chunks to the capture file, one writer at a time.
type captureLog struct {
	mu sync.Mutex
	f  *os.File
}

func (c *captureLog) add(conn uint32, dir uint8, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	head := make([]byte, 9)
	binary.LittleEndian.PutUint32(head[0:], conn)
	head[4] = dir
	binary.LittleEndian.PutUint32(head[5:], uint32(len(p)))
	if _, err := c.f.Write(head); err != nil {
		return err
	}
	_, err := c.f.Write(p)
	return err
}

func shimMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-client record-shim <capture> <plugin> [args...]")
		return 2
	}
	f, err := os.Create(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: %v\n", err)
		return 1
	}
	capture := &captureLog{f: f}
	defer f.Close()

	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stderr = os.Stderr
	// The plugin must not outlive the shim if go-plugin kills the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: starting the plugin: %v\n", err)
		return 1
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: the plugin's handshake line: %v (read %q)\n", err, line)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 1
	}
	// CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK-TYPE|NETWORK-ADDR|PROTOCOL[|...]
	fields := strings.Split(strings.TrimRight(line, "\r\n"), "|")
	if len(fields) < 4 {
		fmt.Fprintf(os.Stderr, "record-shim: not a go-plugin handshake line: %q\n", line)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 1
	}
	network, addr := fields[2], fields[3]

	dir, err := os.MkdirTemp("", "record-shim-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	listener, err := net.Listen("unix", filepath.Join(dir, "plugin.sock"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "record-shim: %v\n", err)
		return 1
	}
	fields[2], fields[3] = "unix", listener.Addr().String()
	fmt.Println(strings.Join(fields, "|"))
	// Whatever else the plugin writes on stdout goes where go-plugin reads it.
	go func() { _, _ = io.Copy(os.Stdout, out) }()

	var conns sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for index := uint32(0); ; index++ {
			down, err := listener.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial(network, addr)
			if err != nil {
				fmt.Fprintf(os.Stderr, "record-shim: connecting to the plugin: %v\n", err)
				_ = down.Close()
				continue
			}
			conns.Add(2)
			go pipe(&conns, capture, index, 0, down, up)
			go pipe(&conns, capture, index, 1, up, down)
		}
	}()

	err = cmd.Wait()
	_ = listener.Close()
	<-accepting
	// The plugin's side of every connection is closed now; the controller
	// closes its side on its own (go-plugin ends its session), or the
	// capture ends without it.
	finished := make(chan struct{})
	go func() { conns.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "record-shim: the plugin: %v\n", err)
		return 1
	}
}

// pipe copies from → to, logging each chunk first; at EOF it half-closes
// to, so the other side sees the same end of stream.
func pipe(done *sync.WaitGroup, capture *captureLog, conn uint32, dir uint8, from, to net.Conn) {
	defer done.Done()
	buf := make([]byte, 64*1024)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if lerr := capture.add(conn, dir, buf[:n]); lerr != nil {
				fmt.Fprintf(os.Stderr, "record-shim: capture: %v\n", lerr)
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if c, ok := to.(interface{ CloseWrite() error }); ok {
		_ = c.CloseWrite()
	} else {
		_ = to.Close()
	}
}
