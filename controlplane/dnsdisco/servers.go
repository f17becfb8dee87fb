// SPDX-License-Identifier: Apache-2.0

package dnsdisco

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// ParseServer reads a nameserver address: "host:port", or an IP address
// alone for port 53.
func ParseServer(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP address or address:port", s)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port must not be 0", s)
	}
	return ap, nil
}

// ServerResolver returns a Resolver that asks servers (in order, the next
// one when a connection cannot be made) instead of the nameservers of
// /etc/resolv.conf. It is Go's own resolver (PreferGo): the rest of
// resolv.conf (search, ndots, timeouts) and /etc/hosts still apply.
func ServerResolver(servers []netip.AddrPort) (Resolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("dns: no server")
	}
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var errs []error
			for _, s := range servers {
				conn, err := d.DialContext(ctx, network, net.JoinHostPort(s.Addr().String(), strconv.Itoa(int(s.Port()))))
				if err == nil {
					return conn, nil
				}
				errs = append(errs, err)
			}
			return nil, errors.Join(errs...)
		},
	}, nil
}
