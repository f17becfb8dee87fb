// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/url"
	"testing"
	"time"
)

func TestCallerID(t *testing.T) {
	cs := func(uris ...string) *tls.ConnectionState {
		c := &x509.Certificate{}
		for _, u := range uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, pu)
		}
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	}
	for _, tc := range []struct {
		cs   *tls.ConnectionState
		want string
	}{
		{cs("spiffe://weft.mesh/mesh/demo/virtualNode/checkout_shop"), "mesh/demo/virtualNode/checkout_shop"},
		{cs("spiffe://weft.mesh/mesh/demo/virtualGateway/gw_shop"), "mesh/demo/virtualGateway/gw_shop"},
		{cs("spiffe://other.mesh/mesh/demo/virtualNode/checkout_shop"), ""}, // another trust domain
		{cs("spiffe://weft.mesh/node/node-a"), ""},                          // a node is no caller
		{cs("spiffe://weft.mesh/mesh/demo/route/x"), ""},
		{cs("https://weft.mesh/mesh/demo/virtualNode/checkout_shop"), ""},
		{cs(), ""},
		{&tls.ConnectionState{}, ""},
		{nil, ""},
	} {
		got, err := callerID(tc.cs, "weft.mesh")
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%v: %q, %v; want %q", tc.cs, got, err, tc.want)
		}
	}
}

// TestIdentitiesReady: Ready closes only after its gate and once every
// wanted identity (the node's and each Set one) has a certificate, and
// a later Set is waited for when it happened before the gate opened.
func TestIdentitiesReady(t *testing.T) {
	i, err := NewIdentities(nil, "node-a", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string) {
		i.mu.Lock()
		i.certs[id] = &tls.Certificate{}
		i.movedLocked()
		i.mu.Unlock()
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
	gate := make(chan struct{})
	ready := i.Ready(t.Context(), gate)
	put("")
	if closed(ready) {
		t.Fatal("ready before the gate opened")
	}
	i.Set([]string{"mesh/demo/virtualNode/front_shop"})
	close(gate)
	if closed(ready) {
		t.Fatal("ready without front_shop's certificate")
	}
	put("mesh/demo/virtualNode/front_shop")
	if !closed(ready) {
		t.Fatal("not ready with every certificate")
	}
}

// TestIdentitiesWithoutListener: a proxy without a tunnel listener (a
// gateway deployment) wants no node certificate, only its callers'.
func TestIdentitiesWithoutListener(t *testing.T) {
	i, err := NewIdentities(nil, "host", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	i.Set([]string{"mesh/demo/virtualGateway/gw"})
	if got, _, _ := i.missing(); len(got) != 1 || got[0] != "mesh/demo/virtualGateway/gw" {
		t.Errorf("missing %q, want only the gateway's identity", got)
	}
}

// TestIdentitiesReadyWhenSigningFails: a failed signing round after the
// gate releases the proxy (static stability: it serves from its cache
// what needs no tunnel); one before the gate does not.
func TestIdentitiesReadyWhenSigningFails(t *testing.T) {
	i, err := NewIdentities(nil, "node-a", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	fail := func() {
		i.mu.Lock()
		i.failed++
		i.movedLocked()
		i.mu.Unlock()
	}
	fail()
	gate := make(chan struct{})
	ready := i.Ready(t.Context(), gate)
	close(gate)
	select {
	case <-ready:
		t.Fatal("ready after a failure before the gate")
	case <-time.After(100 * time.Millisecond):
	}
	fail()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after a failed round")
	}
}
