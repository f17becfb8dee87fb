// SPDX-License-Identifier: Apache-2.0

package dnsdisco

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// DefaultInterval is how often hostnames are looked up when Config.Interval
// is not set.
const DefaultInterval = 5 * time.Second

const (
	// maxDefaultTimeout caps the default lookup timeout.
	maxDefaultTimeout = 5 * time.Second
	// concurrency is the number of lookups in flight at once.
	concurrency = 16
)

// Log keys.
const (
	keyNode      = "node"
	keyHostname  = "hostname"
	keyAddresses = "addresses"
	keyError     = "error"
)

// Resolver looks hostnames up; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Discovery.
type Config struct {
	// Interval is how often every hostname is looked up again. 0 means
	// DefaultInterval.
	Interval time.Duration
	// Timeout bounds one lookup. 0 means the interval, at most 5 s.
	Timeout time.Duration
	// Resolver looks the hostnames up; nil means net.Resolver with
	// PreferGo.
	Resolver Resolver
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, errors.New("dns: interval must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("dns: timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Discovery resolves the hostnames of the DNS nodes it is given (Sync) and
// serves what they resolve to as Views. It is safe for concurrent use.
type Discovery struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	targets map[translate.NodeKey]*target
	view    *View // nil when stale
	changed chan struct{}
	kick    chan struct{}
}

// target is one DNS node and what it resolved to.
type target struct {
	node translate.DNSNode
	// resolved are the addresses of the last good lookup after the IP
	// preference and the response type; nil until a lookup gave one.
	resolved []netip.Addr
	// failure describes the lookups since the last good one; "" when the
	// latest lookup was good.
	failure string
}

// New returns a Discovery with no target.
func New(cfg Config, log *slog.Logger) (*Discovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = min(cfg.Interval, maxDefaultTimeout)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = &net.Resolver{PreferGo: true}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Discovery{
		cfg: cfg, log: log,
		targets: map[translate.NodeKey]*target{},
		changed: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
	}, nil
}

// Interval is how often the hostnames are looked up.
func (d *Discovery) Interval() time.Duration { return d.cfg.Interval }

// Changed receives a value after what a node resolves to (or the problem
// reported for it) changed; one value stands for any number of changes
// since the last receive.
func (d *Discovery) Changed() <-chan struct{} { return d.changed }

// Sync makes nodes the set of targets and returns the current View of
// them. A node that is new, or whose hostname, response type or IP
// preference changed, starts unresolved and is looked up at once (when Run
// runs); one whose other fields changed (ports) keeps its addresses. Nodes
// not in the set are forgotten. Sync itself does not signal Changed: its
// caller is reading the result.
func (d *Discovery) Sync(nodes []translate.DNSNode) *View {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[translate.NodeKey]bool, len(nodes))
	kick, dirty := false, false
	for _, n := range nodes {
		n.Ports = slices.Clone(n.Ports)
		seen[n.Node] = true
		t := d.targets[n.Node]
		switch {
		case t == nil:
			d.targets[n.Node] = &target{node: n}
			kick, dirty = true, true
		case !sameLookup(t.node, n):
			*t = target{node: n}
			kick, dirty = true, true
		case t.node.Ref != n.Ref || !slices.Equal(t.node.Ports, n.Ports):
			t.node = n
			dirty = true
		}
	}
	for k := range d.targets {
		if !seen[k] {
			delete(d.targets, k)
			dirty = true
		}
	}
	if dirty {
		d.view = nil
	}
	if kick {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return d.viewLocked()
}

// View returns the current View.
func (d *Discovery) View() *View {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.viewLocked()
}

func sameLookup(a, b translate.DNSNode) bool {
	return a.Hostname == b.Hostname && a.ResponseType == b.ResponseType && a.IPPreference == b.IPPreference
}

// Run looks every hostname up every interval, and at once after Sync added
// or changed a target, until ctx ends; it returns nil then.
func (d *Discovery) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.kick:
		}
		d.Resolve(ctx)
	}
}

type lookupResult struct {
	addrs []netip.Addr
	err   error
}

// Resolve looks every target's hostname up once (each distinct hostname
// once) and records the results; it reports whether what a node resolves
// to, or its problem, changed (Changed then receives a value too). Run
// calls it; tests may call it instead of Run. When ctx ends during the
// round, nothing is recorded.
func (d *Discovery) Resolve(ctx context.Context) bool {
	d.mu.Lock()
	hostSet := map[string]bool{}
	for _, t := range d.targets {
		hostSet[t.node.Hostname] = true
	}
	d.mu.Unlock()
	if len(hostSet) == 0 {
		return false
	}
	hosts := make([]string, 0, len(hostSet))
	for h := range hostSet {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	results := make([]lookupResult, len(hosts))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			lctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
			defer cancel()
			addrs, err := d.cfg.Resolver.LookupNetIP(lctx, "ip", h)
			results[i] = lookupResult{addrs: addrs, err: err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	byHost := make(map[string]lookupResult, len(hosts))
	for i, h := range hosts {
		byHost[h] = results[i]
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := false
	for _, t := range d.targets {
		// A target whose hostname changed since the round started is
		// looked up by the next round (Sync kicked Run).
		if r, ok := byHost[t.node.Hostname]; ok && d.record(t, r) {
			changed = true
		}
	}
	if changed {
		d.view = nil
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
	return changed
}

// record applies one lookup result to t and reports whether the View
// changes.
func (d *Discovery) record(t *target, r lookupResult) bool {
	n := t.node
	node := n.Ref.ResourcePath()
	err := r.err
	var addrs []netip.Addr
	if err == nil {
		addrs = choose(r.addrs, n.IPPreference, n.ResponseType)
		if len(addrs) == 0 {
			err = fmt.Errorf("lookup %s: no address the IP preference %s keeps (the answer was %s)", n.Hostname, prefWord(n.IPPreference), addrList(r.addrs))
		}
	}
	if err == nil {
		switch {
		case t.resolved == nil:
			d.log.Info("DNS node resolved; callers get its addresses as endpoints", keyNode, node, keyHostname, n.Hostname, keyAddresses, addrList(addrs))
		case t.failure != "":
			d.log.Info("DNS node resolves again", keyNode, node, keyHostname, n.Hostname, keyAddresses, addrList(addrs))
		case !slices.Equal(addrs, t.resolved):
			d.log.Debug("DNS node resolves to new addresses", keyNode, node, keyHostname, n.Hostname, keyAddresses, addrList(addrs))
		}
		changed := t.failure != "" || !slices.Equal(addrs, t.resolved)
		t.resolved, t.failure = addrs, ""
		return changed
	}
	if t.resolved == nil {
		// Never resolved: callers keep a DNS cluster and their proxies
		// resolve the name themselves; nothing to report.
		if msg := err.Error(); msg != t.failure {
			d.log.Info("DNS node does not resolve; callers keep resolving it through a DNS cluster", keyNode, node, keyHostname, n.Hostname, keyError, err)
			t.failure = msg
		}
		return false
	}
	msg := fmt.Sprintf("serviceDiscovery.dns: %v; keeping the addresses of the last good lookup (%s)", err, addrList(t.resolved))
	if msg == t.failure {
		return false
	}
	d.log.Warn("DNS lookup failed; keeping the last good addresses", keyNode, node, keyHostname, n.Hostname, keyError, err, keyAddresses, addrList(t.resolved))
	t.failure = msg
	return true
}

// choose applies an IP preference (§4.7) and a response type (§6.3) to the
// addresses of a lookup: unmapped, without zones and duplicates; *_ONLY
// keeps one family, *_PREFERRED puts one first; LOADBALANCER keeps the
// first address.
func choose(addrs []netip.Addr, pref appmesh.IPPreference, rt appmesh.DNSResponseType) []netip.Addr {
	var all, v4, v6 []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || seen[a] {
			continue
		}
		seen[a] = true
		all = append(all, a)
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	switch pref {
	case appmesh.IPv4Only:
		out = v4
	case appmesh.IPv6Only:
		out = v6
	case appmesh.IPv4Preferred:
		out = slices.Concat(v4, v6)
	case appmesh.IPv6Preferred:
		out = slices.Concat(v6, v4)
	default:
		out = all
	}
	if rt != appmesh.DNSEndpoints && len(out) > 1 {
		out = out[:1]
	}
	return out
}

func prefWord(p appmesh.IPPreference) string {
	if p == "" {
		return "(none)"
	}
	return string(p)
}

func addrList(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "none"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func (d *Discovery) viewLocked() *View {
	if d.view != nil {
		return d.view
	}
	v := &View{endpoints: map[translate.NodeKey][]translate.Endpoint{}}
	for k, t := range d.targets {
		if t.resolved == nil {
			continue
		}
		eps := make([]translate.Endpoint, 0, len(t.resolved)*len(t.node.Ports))
		for _, a := range t.resolved {
			for _, p := range t.node.Ports {
				eps = append(eps, translate.Endpoint{Address: a, Port: p, Healthy: true})
			}
		}
		v.endpoints[k] = eps
		if t.failure != "" {
			v.problems = append(v.problems, translate.Problem{Ref: t.node.Ref, Message: t.failure})
		}
	}
	slices.SortFunc(v.problems, func(a, b translate.Problem) int {
		return cmp.Compare(a.Ref.ResourcePath(), b.Ref.ResourcePath())
	})
	d.view = v
	return v
}

// View is an immutable copy of what the DNS nodes resolve to. It
// implements translate.EndpointSource.
type View struct {
	endpoints map[translate.NodeKey][]translate.Endpoint
	problems  []translate.Problem
}

var _ translate.EndpointSource = (*View)(nil)

// Endpoints implements translate.EndpointSource: a resolved node's
// endpoints (one per address and listener port, in address order) and true;
// nil and false for a node that is not a target or has not resolved yet.
func (v *View) Endpoints(k translate.NodeKey) ([]translate.Endpoint, bool) {
	if v == nil {
		return nil, false
	}
	eps, ok := v.endpoints[k]
	return slices.Clone(eps), ok
}

// Problems returns the problems of the resolved nodes whose latest lookups
// failed, sorted by node.
func (v *View) Problems() []translate.Problem {
	if v == nil {
		return nil
	}
	return slices.Clone(v.problems)
}
