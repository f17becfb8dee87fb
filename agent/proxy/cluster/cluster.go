// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent/proxy"
)

// Errors of this package; the consumer's (ErrOverflow, ...) are in
// consumer.go.
var (
	// ErrNoOriginalDst is returned (wrapping ErrNoHealthyUpstream) by
	// Acquire on an ORIGINAL_DST cluster when Hints.OriginalDst is not set.
	ErrNoOriginalDst = fmt.Errorf("%w: no original destination", ErrNoHealthyUpstream)
	// ErrClosed is returned by Acquire and Update after Close.
	ErrClosed = errors.New("cluster manager closed")
)

// Circuit-breaker names, the values of the breaker label.
const (
	breakerConnections = "max_connections"
	breakerPending     = "max_pending_requests"
	breakerRequests    = "max_requests"
	breakerRetries     = "max_retries"
)

// Cluster is one upstream cluster. The pointer a Manager hands out stays the
// same across updates that keep the cluster's name, so its breakers count
// on; a removed cluster still serves the leases it gave out.
type Cluster struct {
	node string
	name string
	m    *Manager
	log  *slog.Logger

	conns atomic.Int64 // open upstream connections, all hosts

	mu       sync.Mutex
	spec     *spec
	hosts    []*host          // sorted by key
	byKey    map[string]*host // the same hosts
	active   int64            // leases not done
	pending  int64            // Σ max(0, host.active − max_connections), HTTP/1.1
	retries  int64            // retry slots taken
	resolved chan struct{}    // DNS: set until the workers' first resolution attempt
	stop     context.CancelFunc
	workers  bool   // background workers running for the current spec
	gen      uint64 // generation of the workers

	requests  prometheus.Counter
	overflows map[string]prometheus.Counter
	ejections prometheus.Counter
	hcResults map[string]prometheus.Counter
}

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Lease is one request's (or one TCP connection's) use of a host picked by
// the load balancer. Done must be called exactly once; later calls are
// ignored.
type Lease struct {
	c     *Cluster
	h     *host
	p     *pool
	retry bool
	done  atomic.Bool
}

// Transport is the host's pooled RoundTripper: HTTP/1.1 with keep-alive, or
// HTTP/2 when the cluster has http2_protocol_options (h2c over plain TCP,
// h2 over TLS). It sends every request to the leased host whatever its URL
// says (the scheme and host of req.URL are replaced, req.Host is kept).
func (l *Lease) Transport() http.RoundTripper { return l.p }

// Dial opens a connection to the leased host (with the cluster's TLS, if
// any) for tcp_proxy. It fails with ErrOverflow when the cluster's
// max_connections are all open. The caller closes the connection.
func (l *Lease) Dial(ctx context.Context) (net.Conn, error) {
	c := l.c
	c.mu.Lock()
	limit := c.spec.limits.maxConnections
	c.mu.Unlock()
	if c.conns.Load() >= limit {
		c.overflow(breakerConnections)
		return nil, fmt.Errorf("%w: cluster %s: %s", ErrOverflow, c.name, breakerConnections)
	}
	return l.p.dialTLS(ctx)
}

// Host is the leased host's "ip:port".
func (l *Lease) Host() string { return l.h.addressText() }

// Done reports the outcome and releases the lease's breaker slots.
// statusCode is the upstream's HTTP status (0 when there was none) and
// feeds outlier detection: 5xx count as errors, anything else as a success.
// A non-nil err that is not context.Canceled is a locally originated
// failure (connect failure, reset, timeout) and counts as a 503 (504 for
// context.DeadlineExceeded), Envoy's behaviour without
// split_external_local_origin_errors; context.Canceled (the downstream
// went away) counts for nothing. tcp_proxy reports Done(0, nil) for a
// connection that was established.
func (l *Lease) Done(statusCode int, err error) {
	if !l.done.CompareAndSwap(false, true) {
		return
	}
	l.p.release()
	l.c.done(l, statusCode, err)
}

// Acquire picks a host and takes the breaker slots of one request (or
// one TCP connection). hints.Attempt > 0 marks a retry, which also takes a
// max_retries slot (Envoy's concurrent-retries breaker). hints.Avoid names
// hosts not to pick while another host is available (Envoy's
// previous_hosts retry predicate). An ORIGINAL_DST cluster leases a host
// for hints.OriginalDst. A DNS cluster that has not finished its first
// resolution waits for it, within ctx, while Run is running.
//
// Errors wrap ErrOverflow (max_requests, max_pending_requests,
// max_retries), ErrNoHealthyUpstream, or are ErrClosed.
func (c *Cluster) Acquire(ctx context.Context, hints Hints) (proxy.Lease, error) {
	l, err := c.acquire(ctx, hints)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (c *Cluster) acquire(ctx context.Context, hints Hints) (*Lease, error) {
	retry := hints.Attempt > 0
	if c.m.closed.Load() {
		return nil, ErrClosed
	}
	c.mu.Lock()
	for len(c.hosts) == 0 && c.resolved != nil {
		ch := c.resolved
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster %s: wait for DNS: %w", c.name, ctx.Err())
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	s := c.spec
	if c.active >= s.limits.maxRequests {
		c.overflowLocked(breakerRequests)
		return nil, fmt.Errorf("%w: cluster %s: %s", ErrOverflow, c.name, breakerRequests)
	}
	if retry && c.retries >= s.limits.maxRetries {
		c.overflowLocked(breakerRetries)
		return nil, fmt.Errorf("%w: cluster %s: %s", ErrOverflow, c.name, breakerRetries)
	}
	var h *host
	if s.discovery == discoveryOriginalDst {
		if !hints.OriginalDst.IsValid() {
			return nil, ErrNoOriginalDst
		}
		h = c.originalDstHostLocked(hints.OriginalDst)
	} else {
		h = c.pickLocked(hints.Avoid)
		if h == nil {
			return nil, fmt.Errorf("%w: cluster %s", ErrNoHealthyUpstream, c.name)
		}
	}
	pendingNow := false
	if !s.http2 && !unlimited(s.limits.maxConnections) && h.active >= s.limits.maxConnections {
		// Every connection of the host is busy: this request waits for one.
		c.overflowLocked(breakerConnections)
		if c.pending >= s.limits.maxPending {
			c.overflowLocked(breakerPending)
			return nil, fmt.Errorf("%w: cluster %s: %s", ErrOverflow, c.name, breakerPending)
		}
		pendingNow = true
	}
	if pendingNow {
		c.pending++
	}
	h.active++
	if s.discovery == discoveryOriginalDst {
		// Only the clean-up of original-destination hosts reads it: no
		// clock read per request elsewhere.
		h.lastUsed = time.Now()
	}
	c.active++
	if retry {
		c.retries++
	}
	c.requests.Inc()
	l := &Lease{c: c, h: h, p: h.pool, retry: retry}
	l.p.acquire()
	return l, nil
}

// done releases a lease's slots and feeds outlier detection.
func (c *Cluster) done(l *Lease, status int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, s := l.h, c.spec
	if !s.http2 && !unlimited(s.limits.maxConnections) && h.active > s.limits.maxConnections && c.pending > 0 {
		c.pending--
	}
	h.active--
	c.active--
	if l.retry {
		c.retries--
	}
	if s.outlier == nil || c.byKey[h.key] != h {
		return
	}
	switch {
	case errors.Is(err, context.Canceled):
		return
	case err != nil && status < 500:
		status = http.StatusServiceUnavailable // connect failure, reset: a gateway error
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
	}
	c.outlierResultLocked(h, status)
}

// pickLocked is the load balancer: over the usable hosts, or over all of
// them in panic mode.
func (c *Cluster) pickLocked(avoid []string) *host {
	n := len(c.hosts)
	if n == 0 {
		return nil
	}
	s := c.spec
	usable := 0
	for _, h := range c.hosts {
		if h.usable() {
			usable++
		}
	}
	healthyPct := min(100, float64(usable)*float64(s.overprov)/float64(n))
	panicMode := s.panicThreshold > 0 && healthyPct < s.panicThreshold
	if usable == 0 && !panicMode {
		return nil
	}
	ok := func(h *host) bool { return panicMode || h.usable() }
	if len(avoid) > 0 {
		avoided := func(h *host) bool { return slices.Contains(avoid, h.addressText()) }
		for _, h := range c.hosts {
			if ok(h) && !avoided(h) {
				// Another host is available: leave the avoided ones out.
				base := ok
				ok = func(h *host) bool { return base(h) && !avoided(h) }
				usable = -1 // least request filters by ok
				break
			}
		}
	}
	switch s.lb {
	case lbLeastRequest:
		return c.leastRequestLocked(ok, usable, panicMode)
	case lbRandom:
		total := uint64(0)
		for _, h := range c.hosts {
			if ok(h) {
				total += uint64(h.weight)
			}
		}
		r := rand.Uint64N(total)
		for _, h := range c.hosts {
			if !ok(h) {
				continue
			}
			if r < uint64(h.weight) {
				return h
			}
			r -= uint64(h.weight)
		}
		return nil
	default:
		// Smooth weighted round robin (as nginx): equal weights give plain
		// round robin, weights give an interleaved spread.
		var best *host
		total := int64(0)
		for _, h := range c.hosts {
			if !ok(h) {
				continue
			}
			h.cw += int64(h.weight)
			total += int64(h.weight)
			if best == nil || h.cw > best.cw {
				best = h
			}
		}
		best.cw -= total
		return best
	}
}

// leastRequestLocked is Envoy's least request: with equal weights, the
// candidate with fewer active requests of choiceCount random ones (power of
// two choices); with unequal weights, the host with the highest
// weight / (active requests + 1) (active_request_bias 1.0).
func (c *Cluster) leastRequestLocked(ok func(*host) bool, usable int, panicMode bool) *host {
	cands := c.hosts
	if usable < 0 || !panicMode && usable < len(c.hosts) {
		cands = make([]*host, 0, len(c.hosts))
		for _, h := range c.hosts {
			if ok(h) {
				cands = append(cands, h)
			}
		}
	}
	var best *host
	if slices.ContainsFunc(cands, func(h *host) bool { return h.weight != cands[0].weight }) {
		off := rand.IntN(len(cands)) // ties go to a random start
		for i := range cands {
			h := cands[(i+off)%len(cands)]
			if best == nil || float64(h.weight)/float64(h.active+1) > float64(best.weight)/float64(best.active+1) {
				best = h
			}
		}
		return best
	}
	for range c.spec.choiceCount {
		h := cands[rand.IntN(len(cands))]
		if best == nil || h.active < best.active {
			best = h
		}
	}
	return best
}

// originalDstHostLocked returns the host of an original destination,
// creating it (and its pool) on first use.
func (c *Cluster) originalDstHostLocked(dst netip.AddrPort) *host {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	key := dst.String()
	if h, ok := c.byKey[key]; ok {
		return h
	}
	h := newHost(key, dst)
	h.pool = newPool(c, h, c.spec)
	c.byKey[key] = h
	c.hosts = append(c.hosts, h)
	return h
}

// cleanupOriginalDst removes original-destination hosts idle for longer than
// the cleanup interval.
func (c *Cluster) cleanupOriginalDst(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.hosts[:0]
	for _, h := range c.hosts {
		if h.active == 0 && now.Sub(h.lastUsed) >= c.spec.cleanupInterval {
			delete(c.byKey, h.key)
			h.pool.retire()
			continue
		}
		keep = append(keep, h)
	}
	clear(c.hosts[len(keep):])
	c.hosts = keep
}

func (c *Cluster) overflow(breaker string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.overflowLocked(breaker)
}

func (c *Cluster) overflowLocked(breaker string) { c.overflows[breaker].Inc() }

// HostState is a snapshot of one host, for tests and debugging endpoints.
type HostState struct {
	Address   string // "ip:port"
	Weight    uint32
	Healthy   bool // active health checks and EDS agree it is healthy
	Ejected   bool
	Ejections int // the current ejection-time multiplier
	Active    int64
}

// Hosts returns the cluster's hosts, in address order (in order of first
// use for ORIGINAL_DST).
func (c *Cluster) Hosts() []HostState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]HostState, 0, len(c.hosts))
	for _, h := range c.hosts {
		out = append(out, HostState{
			Address: h.addressText(), Weight: h.weight, Healthy: h.edsHealthy && h.hcHealthy,
			Ejected: h.ejected, Ejections: h.ejections, Active: h.active,
		})
	}
	return out
}
