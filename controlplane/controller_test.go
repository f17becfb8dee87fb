// SPDX-License-Identifier: Apache-2.0

package controlplane_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/weft-mesh/weft/controlplane"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controlplane.New(ctx, controlplane.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	base := "http://" + c.Addr().String()
	for {
		if code, _ := get(t, base+"/readyz"); code == http.StatusOK {
			break
		}
	}
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	get(t, base+"/v20190125/meshes")
	get(t, base+"/v20190125/meshes/nope")
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`weft_controller_api_requests_total{code="200",operation="ListMeshes"} 1`,
		`weft_controller_api_requests_total{code="404",operation="DescribeMesh"} 1`,
		`weft_controller_api_request_duration_seconds_count{operation="ListMeshes"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestOpenAPIOnlyOnLoopback(t *testing.T) {
	_, err := controlplane.New(context.Background(), controlplane.Config{DataDir: t.TempDir(), APIListen: "0.0.0.0:0"}, nil)
	if err == nil || !strings.Contains(err.Error(), "open to anyone") {
		t.Fatalf("an open API on 0.0.0.0 was accepted: %v", err)
	}
	// With a credential it starts.
	tokens := t.TempDir() + "/tokens"
	if err := writeFile(tokens, "tok\n"); err != nil {
		t.Fatal(err)
	}
	c, err := controlplane.New(context.Background(), controlplane.Config{
		DataDir: t.TempDir(), APIListen: "0.0.0.0:0",
		Auth: controlplane.AuthConfig{BearerTokenFile: tokens},
	}, nil)
	if err != nil {
		t.Fatalf("with a bearer token: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	err := controlplane.Config{APIListen: "nope", Auth: controlplane.AuthConfig{TLSCertFile: "x", ClientCAFile: "y"}}.Validate()
	for _, want := range []string{"dataDir: is required", "apiListen", "tlsCertFile and tlsKeyFile go together"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation error %v lacks %q", err, want)
		}
	}
}

func TestSecondControllerOnTheSameDataDirFails(t *testing.T) {
	dir := t.TempDir()
	c, err := controlplane.New(context.Background(), controlplane.Config{DataDir: dir, APIListen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = c.Run(ctx)
	}()
	_, err = controlplane.New(context.Background(), controlplane.Config{DataDir: dir, APIListen: "127.0.0.1:0"}, nil)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("a second controller on the same data dir: %v", err)
	}
}
