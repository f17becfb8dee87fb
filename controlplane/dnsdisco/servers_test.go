// SPDX-License-Identifier: Apache-2.0

package dnsdisco_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/weft-mesh/weft/controlplane/dnsdisco"
)

// TestServerResolver asks a DNS server of the test's, on loopback, through
// ServerResolver: a name it knows resolves, another does not.
func TestServerResolver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		if qq := q.Question[0]; qq.Name == "ext.weft-test.example." && qq.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: qq.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: net.IPv4(192, 0, 2, 44)})
		} else if qq.Qtype == mdns.TypeA {
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	server, err := dnsdisco.ParseServer(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	r, err := dnsdisco.ServerResolver([]netip.AddrPort{server})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := r.LookupNetIP(ctx, "ip4", "ext.weft-test.example")
	if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.44") {
		t.Errorf("lookup: %v, %v; want 192.0.2.44", got, err)
	}
	if got, err := r.LookupNetIP(ctx, "ip4", "other.weft-test.example"); err == nil {
		t.Errorf("an unknown name resolved to %v", got)
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.2": "10.0.0.2:53", "10.0.0.2:5353": "10.0.0.2:5353", "[fd00::1]:53": "[fd00::1]:53", "fd00::1": "[fd00::1]:53"} {
		if got, err := dnsdisco.ParseServer(in); err != nil || got.String() != want {
			t.Errorf("dnsdisco.ParseServer(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dns.example:53", "10.0.0.2:0", "10.0.0.2:x"} {
		if _, err := dnsdisco.ParseServer(in); err == nil {
			t.Errorf("dnsdisco.ParseServer(%q) accepted", in)
		}
	}
	if _, err := dnsdisco.ServerResolver(nil); err == nil {
		t.Error("dnsdisco.ServerResolver(nil) accepted")
	}
}
