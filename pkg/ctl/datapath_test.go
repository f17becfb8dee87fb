// SPDX-License-Identifier: Apache-2.0

package ctl_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/pkg/ctl"
)

func TestDatapath(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/datapath", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("services:\n  10.96.0.10:80/tcp l7\n"))
	})
	mux.HandleFunc("GET /debug/state", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no state reconciled yet", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	out, err := weftctl(t, "http://unused", "datapath", "dump", "--agent", srv.URL)
	if err != nil || out != "services:\n  10.96.0.10:80/tcp l7\n" {
		t.Errorf("datapath dump = %q, %v", out, err)
	}
	// The host:port form, with the flag before the subcommand's arguments.
	out, err = weftctl(t, "http://unused", "datapath", "dump", "--agent", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil || !strings.Contains(out, "10.96.0.10:80") {
		t.Errorf("datapath dump host:port = %q, %v", out, err)
	}
	_, err = weftctl(t, "http://unused", "datapath", "state", "--agent", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: no state reconciled yet") {
		t.Errorf("datapath state = %v", err)
	}

	var ue *ctl.UsageError
	for _, args := range [][]string{{"datapath"}, {"datapath", "flush"}, {"datapath", "dump", "extra"}} {
		if _, err := weftctl(t, "http://unused", args...); !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
