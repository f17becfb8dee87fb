// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"net"
)

// listen binds a TCP listener, with SO_REUSEPORT unless disabled. Binding
// does not block, so it takes the proxy's own context rather than a
// caller's (Update has none).
func (p *Proxy) listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{}
	if !p.cfg.DisableReusePort {
		lc.Control = reusePort
	}
	return lc.Listen(p.baseCtx, "tcp", addr)
}
