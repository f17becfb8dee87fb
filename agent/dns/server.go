// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults of Config.
const (
	DefaultTTL        = 5 * time.Second
	DefaultTimeout    = 2 * time.Second
	DefaultResolvConf = "/etc/resolv.conf"
)

// ourUDPSize is the EDNS0 payload size the server advertises in its replies
// (the DNS flag day 2020 recommendation).
const ourUDPSize = 1232

// Log keys.
const (
	logComponent = "component"
	logListen    = "listen"
	logUpstreams = "upstreams"
	logName      = "name"
	logQtype     = "qtype"
	logNet       = "net"
	logError     = "error"
)

// Config configures a Server.
type Config struct {
	// Listen is the address the server listens on, over UDP and TCP, such
	// as 169.254.20.10:53. Port 0 picks a free port (the same for both).
	Listen netip.AddrPort
	// Upstreams are the resolvers that get every query the server does not
	// answer itself, tried in order. Empty means the nameservers of
	// ResolvConf, leaving out the server's own address.
	Upstreams []netip.AddrPort
	// ResolvConf is the resolv.conf(5) file that gives the default
	// upstreams; "" means DefaultResolvConf. Unused when Upstreams is set.
	ResolvConf string
	// TTL is the time to live of the answers for mesh names, in whole
	// seconds; 0 means DefaultTTL.
	TTL time.Duration
	// Timeout bounds each attempt at one upstream; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if !c.Listen.IsValid() {
		errs = append(errs, errors.New("listen address is not set"))
	}
	for _, u := range c.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			errs = append(errs, fmt.Errorf("upstream %s: want address:port", u))
		}
	}
	if c.TTL < 0 || c.TTL > time.Duration(1<<31-1)*time.Second {
		errs = append(errs, fmt.Errorf("ttl %v: want 0 to 2^31-1 seconds", c.TTL))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: want positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// Stats are a Server's query counters since New.
type Stats struct {
	// Answered counts queries for mesh names, answered from the records
	// (NODATA included).
	Answered uint64
	// Forwarded counts queries answered by an upstream resolver.
	Forwarded uint64
	// Failed counts queries that got SERVFAIL because no upstream
	// answered, and malformed or unsupported queries.
	Failed uint64
}

// records is one immutable generation of the mesh names.
type records map[string]addrs

type addrs struct {
	v4, v6 []netip.Addr
}

// Server is the DNS responder. Create it with New.
type Server struct {
	log       *slog.Logger
	ttl       uint32
	timeout   time.Duration
	upstreams []netip.AddrPort
	addr      netip.AddrPort

	udp net.PacketConn
	tcp net.Listener

	recs atomic.Pointer[records]

	answered, forwarded, failed atomic.Uint64

	running   atomic.Bool
	closeOnce sync.Once
}

// New validates cfg, works out the upstreams and binds the listen address
// over UDP and TCP. The caller then calls Run, or Close to give the sockets
// back.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate dns config: %w", err)
	}
	s := &Server{
		log:     log.With(logComponent, "dns"),
		ttl:     uint32(DefaultTTL / time.Second),
		timeout: cfg.Timeout,
	}
	if cfg.TTL > 0 {
		s.ttl = uint32(cfg.TTL / time.Second)
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	s.recs.Store(&records{})

	var err error
	if s.udp, s.tcp, err = listen(cfg.Listen); err != nil {
		return nil, err
	}
	s.addr = s.udp.LocalAddr().(*net.UDPAddr).AddrPort()
	s.addr = netip.AddrPortFrom(s.addr.Addr().Unmap(), s.addr.Port())

	s.upstreams = append([]netip.AddrPort(nil), cfg.Upstreams...)
	if len(s.upstreams) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = DefaultResolvConf
		}
		if s.upstreams, err = resolvConfUpstreams(path, s.addr); err != nil {
			s.Close()
			return nil, err
		}
	}
	if len(s.upstreams) == 0 {
		s.log.Warn("no upstream resolvers: queries for other names will fail")
	}
	return s, nil
}

// listen binds addr over UDP and TCP. With port 0 it retries until UDP and
// TCP get the same free port. The UDP sockets of failed attempts stay open
// until the end, so that the kernel cannot hand out the same port again.
func listen(addr netip.AddrPort) (net.PacketConn, net.Listener, error) {
	var lc net.ListenConfig
	ctx := context.Background()
	var held []net.PacketConn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for attempt := 0; ; attempt++ {
		udp, err := lc.ListenPacket(ctx, "udp", addr.String())
		if err != nil {
			return nil, nil, fmt.Errorf("listen on udp %s: %w", addr, err)
		}
		bound := udp.LocalAddr().(*net.UDPAddr).AddrPort()
		tcp, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(addr.Addr(), bound.Port()).String())
		if err == nil {
			return udp, tcp, nil
		}
		held = append(held, udp)
		if addr.Port() != 0 || attempt == 20 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("listen on tcp %s: %w", netip.AddrPortFrom(addr.Addr(), bound.Port()), err)
		}
	}
}

// resolvConfUpstreams returns the nameservers of a resolv.conf file, leaving
// out self.
func resolvConfUpstreams(path string, self netip.AddrPort) ([]netip.AddrPort, error) {
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read upstreams from %s: %w", path, err)
	}
	port := uint16(53)
	if cc.Port != "" {
		var p int
		if _, err := fmt.Sscan(cc.Port, &p); err == nil && p > 0 && p < 1<<16 {
			port = uint16(p)
		}
	}
	var ups []netip.AddrPort
	for _, srv := range cc.Servers {
		a, err := netip.ParseAddr(srv)
		if err != nil {
			continue // a scoped or odd entry; the system resolver may cope, we skip it
		}
		up := netip.AddrPortFrom(a.Unmap(), port)
		if isSelf(up, self) {
			continue
		}
		ups = append(ups, up)
	}
	return ups, nil
}

// isSelf reports whether up is the server's own address self.
func isSelf(up, self netip.AddrPort) bool {
	if up.Port() != self.Port() {
		return false
	}
	if up.Addr() == self.Addr() {
		return true
	}
	// Listening on 0.0.0.0 or [::] covers the loopback addresses too.
	return self.Addr().IsUnspecified() && up.Addr().IsLoopback()
}

// Addr returns the address the server listens on (with the port it got,
// when Config.Listen had port 0).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Upstreams returns the upstream resolvers in the order they are tried.
func (s *Server) Upstreams() []netip.AddrPort {
	return append([]netip.AddrPort(nil), s.upstreams...)
}

// SetRecords replaces the mesh names with recs, which maps names (FQDNs,
// with or without the trailing dot, in any case) to their addresses. A name
// with no address, or an address of one family only, gets NODATA for the
// missing family. It is safe to call at any time, also during Run; the
// server keeps no reference to recs.
func (s *Server) SetRecords(recs map[string][]netip.Addr) {
	next := make(records, len(recs))
	for name, list := range recs {
		key := canonical(name)
		a := next[key]
		for _, ip := range list {
			switch ip = ip.Unmap(); {
			case ip.Is4():
				a.v4 = append(a.v4, ip)
			case ip.Is6():
				a.v6 = append(a.v6, ip)
			}
		}
		next[key] = a
	}
	s.recs.Store(&next)
}

// canonical returns the form of name that the records are keyed by.
func canonical(name string) string {
	return mdns.Fqdn(strings.ToLower(name))
}

// Stats returns the query counters.
func (s *Server) Stats() Stats {
	return Stats{
		Answered:  s.answered.Load(),
		Forwarded: s.forwarded.Load(),
		Failed:    s.failed.Load(),
	}
}

// Run serves DNS over UDP and TCP until ctx ends, then shuts both servers
// down and returns nil once every goroutine it started has ended. It returns
// an error if a server fails; it can be called only once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("run dns server: already running or ran")
	}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		s.serveDNS(ctx, w, req)
	})
	servers := []*mdns.Server{
		{PacketConn: s.udp, Handler: handler, UDPSize: mdns.DefaultMsgSize},
		{Listener: s.tcp, Handler: handler},
	}
	s.log.Info("serving dns", logListen, s.addr.String(), logUpstreams, fmt.Sprint(s.upstreams))

	var wg sync.WaitGroup
	errc := make(chan error, len(servers))
	returned := make([]atomic.Bool, len(servers))
	ready := make([]chan struct{}, len(servers))
	for i, srv := range servers {
		ready[i] = make(chan struct{})
		var once sync.Once
		markReady := func() { once.Do(func() { close(ready[i]) }) }
		srv.NotifyStartedFunc = markReady
		wg.Go(func() {
			err := srv.ActivateAndServe()
			returned[i].Store(true)
			markReady()
			if err != nil {
				errc <- fmt.Errorf("serve dns: %w", err)
			}
		})
	}
	// ShutdownContext fails on a server that has not started yet.
	for _, r := range ready {
		<-r
	}
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc:
		errs = append(errs, err)
	}
	// ActivateAndServe returns only after the handlers it started have
	// returned, and a handler's upstream exchange ends with ctx.
	for i, srv := range servers {
		if returned[i].Load() {
			continue
		}
		if err := srv.ShutdownContext(context.WithoutCancel(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("shut down dns server: %w", err))
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	s.Close()
	s.log.Info("stopped serving dns", logListen, s.addr.String())
	return errors.Join(errs...)
}

// Close releases the sockets of a server whose Run was never called; Run
// closes them itself. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		_ = s.udp.Close()
		_ = s.tcp.Close()
	})
}
