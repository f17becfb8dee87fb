// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/pkg/api"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/client"
)

// TestMain lets the test binary act as weft-controller: the crash test runs
// the real controller in a child process it can SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("WEFT_TEST_CONTROLLER_CHILD") == "1" {
		ctx, stop := signalContext()
		defer stop()
		if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "weft-controller:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startController runs the controller on dataDir in a child process and
// waits until it is ready.
func startController(t *testing.T, dataDir, config string) (*exec.Cmd, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(os.Args[0], "-data-dir", dataDir, "-api-listen", addr, "-xds-listen", "127.0.0.1:0", "-config", config, "-log-level", "warn")
	cmd.Env = append(os.Environ(), "WEFT_TEST_CONTROLLER_CHILD=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log("controller:", sc.Text())
		}
	}()
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, _ := client.New(url, client.Options{Timeout: time.Second})
		if _, err := c.List(context.Background(), appmesh.KindMesh, "", ""); err == nil {
			return cmd, url
		}
		if time.Now().After(deadline) {
			t.Fatal("the controller did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pair is one acknowledged write: a virtual node and the virtual service it
// provides, written together in one transaction.
func pairItems(i int) []api.ApplyRequestItem {
	node := fmt.Sprintf("node-%d", i)
	nodeSpec, _ := json.Marshal(map[string]any{
		"listeners":        []any{map[string]any{"portMapping": map[string]any{"port": 8080, "protocol": "http"}}},
		"serviceDiscovery": map[string]any{"dns": map[string]any{"hostname": node + ".local"}},
	})
	svcSpec, _ := json.Marshal(map[string]any{"provider": map[string]any{"virtualNode": map[string]any{"virtualNodeName": node}}})
	return []api.ApplyRequestItem{
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualNode, Mesh: "crash", Name: node}, Spec: nodeSpec},
		{Ref: appmesh.Ref{Kind: appmesh.KindVirtualService, Mesh: "crash", Name: fmt.Sprintf("svc-%d.local", i)}, Spec: svcSpec},
	}
}

func TestCrashKeepsEveryAcknowledgedWriteAndNoPartialOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts controller processes")
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte("quotas:\n  virtualNodesPerMesh: 100000\n  virtualServicesPerMesh: 100000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	acked := map[int]bool{}
	next := 0
	for round := range 3 {
		cmd, url := startController(t, dataDir, config)
		c, err := client.New(url, client.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if round == 0 {
			meshSpec, _ := json.Marshal(map[string]any{})
			if _, err := c.Apply(ctx, api.ApplyRequest{Items: []api.ApplyRequestItem{{Ref: appmesh.Ref{Kind: appmesh.KindMesh, Mesh: "crash", Name: "crash"}, Spec: meshSpec}}}); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, c, acked)

		// Four writers stream pairs; the controller is killed under them.
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if _, err := c.Apply(ctx, api.ApplyRequest{Items: pairItems(i)}); err != nil {
						return // the controller is gone
					}
					mu.Lock()
					acked[i] = true
					mu.Unlock()
				}
			}()
		}
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= (round+1)*150 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		close(stop)
		wg.Wait()
		t.Logf("round %d: killed the controller with %d writes acknowledged, %d attempted", round, len(acked), next)
	}
	_, url := startController(t, dataDir, config)
	c, err := client.New(url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c, acked)
}

// verify checks that every acknowledged pair is there, that no pair is half
// there, and that the reverse references of what is there are intact.
func verify(t *testing.T, c *client.Client, acked map[int]bool) {
	t.Helper()
	ctx := context.Background()
	nodes, err := c.List(ctx, appmesh.KindVirtualNode, "crash", "")
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := c.List(ctx, appmesh.KindVirtualService, "crash", "")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range append(nodes, svcs...) {
		have[e.Ref.Name] = true
	}
	for i := range acked {
		if !have[fmt.Sprintf("node-%d", i)] || !have[fmt.Sprintf("svc-%d.local", i)] {
			t.Errorf("acknowledged write %d is missing", i)
		}
	}
	for _, e := range nodes {
		i := strings.TrimPrefix(e.Ref.Name, "node-")
		if !have["svc-"+i+".local"] {
			t.Errorf("partial write: %s without its service", e.Ref.Name)
		}
	}
	for _, e := range svcs {
		i := strings.TrimSuffix(strings.TrimPrefix(e.Ref.Name, "svc-"), ".local")
		if !have["node-"+i] {
			t.Errorf("partial write: %s without its node", e.Ref.Name)
		}
	}
	// The reverse index came through too: a provider node cannot be deleted.
	if len(nodes) > 0 {
		_, err := c.Delete(ctx, nodes[len(nodes)-1].Ref, 0)
		if !client.IsType(err, appmesh.ErrResourceInUse) {
			t.Errorf("deleting a provider node after the crash: %v, want ResourceInUse", err)
		}
	}
}
