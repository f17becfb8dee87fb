// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/weft-mesh/weft/agent/dns"
)

// NewDNS creates the DNS responder that cfg.DNS describes, bound to its
// listen address. With no upstreams configured it forwards to the
// nameservers of /etc/resolv.conf, leaving out its own address.
func NewDNS(cfg Config, log *slog.Logger) (*dns.Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	listen, err := netip.ParseAddrPort(cfg.DNS.Listen)
	if err != nil {
		return nil, fmt.Errorf("dns.listen: %w", err)
	}
	dc := dns.Config{Listen: netip.AddrPortFrom(listen.Addr().Unmap(), listen.Port())}
	for i, u := range cfg.DNS.Upstreams {
		ap, err := ParseUpstream(u)
		if err != nil {
			return nil, fmt.Errorf("dns.upstreams[%d]: %w", i, err)
		}
		dc.Upstreams = append(dc.Upstreams, ap)
	}
	s, err := dns.New(dc, log)
	if err != nil {
		return nil, fmt.Errorf("start dns: %w", err)
	}
	return s, nil
}
