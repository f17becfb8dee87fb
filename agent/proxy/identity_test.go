// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"testing"
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
