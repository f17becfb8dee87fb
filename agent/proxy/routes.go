// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Envoy defaults the translator relies on when it leaves a field out.
const (
	envoyRouteTimeout   = 15 * time.Second
	envoyBackoffBase    = 25 * time.Millisecond
	envoyDefaultTCPIdle = time.Hour
)

// routeTable is a compiled RouteConfiguration.
type routeTable struct {
	name     string
	exact    map[string]*vhost // lower-case domain
	suffixes []wildDomain      // "*.example.com", longest first
	prefixes []wildDomain      // "example.*", longest first
	star     *vhost
	// none counts requests no virtual host takes.
	none *clusterStats
}

type wildDomain struct {
	part string
	vh   *vhost
}

// vhost is a compiled VirtualHost.
type vhost struct {
	name     string
	routes   []*route
	duration interface{ Observe(float64) }
	// noRoute counts requests no route of the host takes.
	noRoute *clusterStats
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
)

// route is a compiled Route: its match and its action.
type route struct {
	name string
	// match
	pathKind      pathKind
	path          string
	re            *regexp.Regexp
	caseSensitive bool
	grpcOnly      bool
	headers       []headerMatch
	query         []queryMatch
	// action
	clusters      []weightedCluster
	totalWeight   uint32
	timeout       time.Duration // 0: none
	idleTimeout   time.Duration // 0: none
	retry         *retryPolicy
	hostRewrite   string
	autoHost      bool
	prefixRewrite *string
	regexRewrite  *regexp.Regexp
	regexSubst    string
}

type weightedCluster struct {
	name  string
	cum   uint32 // cumulative weight, exclusive end
	stats *clusterStats
}

// pick chooses a cluster by weight.
func (rt *route) pick() *weightedCluster {
	if len(rt.clusters) == 1 {
		return &rt.clusters[0]
	}
	n := rand.Uint32N(rt.totalWeight)
	for i := range rt.clusters {
		if n < rt.clusters[i].cum {
			return &rt.clusters[i]
		}
	}
	return &rt.clusters[len(rt.clusters)-1]
}

func (rt *routeTable) vhostFor(host string) *vhost {
	if len(rt.exact) > 0 {
		if vh := rt.exact[lowerASCII(host)]; vh != nil {
			return vh
		}
	}
	if len(rt.suffixes)+len(rt.prefixes) > 0 {
		h := lowerASCII(host)
		for _, w := range rt.suffixes {
			if len(h) > len(w.part) && strings.HasSuffix(h, w.part) {
				return w.vh
			}
		}
		for _, w := range rt.prefixes {
			if len(h) > len(w.part) && strings.HasPrefix(h, w.part) {
				return w.vh
			}
		}
	}
	return rt.star
}

// lowerASCII lower-cases s, allocating only when it has upper-case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// match returns the first route of the host that takes the request.
func (vh *vhost) match(r *http.Request, rq *reqCtx) *route {
	for _, rt := range vh.routes {
		if rt.matches(r, rq) {
			return rt
		}
	}
	return nil
}

func (rt *route) matches(r *http.Request, rq *reqCtx) bool {
	p := rq.path
	switch rt.pathKind {
	case pathPrefix:
		if rt.caseSensitive {
			if !strings.HasPrefix(p, rt.path) {
				return false
			}
		} else if len(p) < len(rt.path) || !strings.EqualFold(p[:len(rt.path)], rt.path) {
			return false
		}
	case pathExact:
		if rt.caseSensitive {
			if p != rt.path {
				return false
			}
		} else if !strings.EqualFold(p, rt.path) {
			return false
		}
	case pathRegex:
		if !rt.re.MatchString(p) {
			return false
		}
	}
	if rt.grpcOnly && !isGRPC(r) {
		return false
	}
	for i := range rt.headers {
		if !rt.headers[i].match(r, rq) {
			return false
		}
	}
	for i := range rt.query {
		if !rt.query[i].match(r.URL.RawQuery) {
			return false
		}
	}
	return true
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc")
}

// rewritePath applies the route's prefix or regex rewrite to a path
// (without its query); ok is false when the route rewrites nothing.
func (rt *route) rewritePath(path string) (string, bool) {
	switch {
	case rt.prefixRewrite != nil:
		n := len(rt.path)
		if rt.pathKind == pathRegex || n > len(path) {
			n = len(path)
		}
		return *rt.prefixRewrite + path[n:], true
	case rt.regexRewrite != nil:
		return rt.regexRewrite.ReplaceAllString(path, rt.regexSubst), true
	}
	return path, false
}

// compileRouteTable compiles a RouteConfiguration; stats resolves the
// series of a (virtual host, cluster).
func compileRouteTable(rc *routev3.RouteConfiguration, stats func(vh, cluster string) *clusterStats, duration func(vh string) interface{ Observe(float64) }) (*routeTable, error) {
	if len(rc.GetRequestHeadersToAdd())+len(rc.GetRequestHeadersToRemove())+len(rc.GetResponseHeadersToAdd())+len(rc.GetResponseHeadersToRemove()) > 0 {
		return nil, errors.New("header manipulation is not supported")
	}
	if rc.GetVhds() != nil {
		return nil, errors.New("vhds is not supported")
	}
	t := &routeTable{name: rc.GetName(), exact: map[string]*vhost{}, none: stats("", "")}
	seen := map[string]bool{}
	for _, v := range rc.GetVirtualHosts() {
		vh, err := compileVhost(v, stats, duration)
		if err != nil {
			return nil, fmt.Errorf("virtual host %q: %w", v.GetName(), err)
		}
		for _, d := range v.GetDomains() {
			d = strings.ToLower(d)
			if seen[d] {
				return nil, fmt.Errorf("virtual host %q: domain %q is already used", v.GetName(), d)
			}
			seen[d] = true
			switch {
			case d == "*":
				t.star = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildDomain{part: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildDomain{part: d[:len(d)-1], vh: vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(a, b wildDomain) int { return cmp.Compare(len(b.part), len(a.part)) }
	slices.SortStableFunc(t.suffixes, longestFirst)
	slices.SortStableFunc(t.prefixes, longestFirst)
	return t, nil
}

func compileVhost(v *routev3.VirtualHost, stats func(vh, cluster string) *clusterStats, duration func(vh string) interface{ Observe(float64) }) (*vhost, error) {
	switch {
	case v.GetRequireTls() != routev3.VirtualHost_NONE:
		return nil, errors.New("require_tls is not supported")
	case len(v.GetRequestHeadersToAdd())+len(v.GetRequestHeadersToRemove())+len(v.GetResponseHeadersToAdd())+len(v.GetResponseHeadersToRemove()) > 0:
		return nil, errors.New("header manipulation is not supported")
	}
	vh := &vhost{name: v.GetName(), duration: duration(v.GetName()), noRoute: stats(v.GetName(), "")}
	byCluster := map[string]*clusterStats{}
	for i, r := range v.GetRoutes() {
		rt, err := compileRoute(r, v.GetRetryPolicy())
		if err != nil {
			name := r.GetName()
			if name == "" {
				name = fmt.Sprintf("#%d", i)
			}
			return nil, fmt.Errorf("route %s: %w", name, err)
		}
		for j := range rt.clusters {
			c := &rt.clusters[j]
			if byCluster[c.name] == nil {
				byCluster[c.name] = stats(vh.name, c.name)
			}
			c.stats = byCluster[c.name]
		}
		vh.routes = append(vh.routes, rt)
	}
	return vh, nil
}

func compileRoute(r *routev3.Route, vhRetry *routev3.RetryPolicy) (*route, error) {
	m := r.GetMatch()
	rt := &route{name: r.GetName(), caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rt.pathKind, rt.path = pathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		rt.pathKind, rt.path = pathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return nil, err
		}
		rt.pathKind, rt.re = pathRegex, re
	default:
		return nil, fmt.Errorf("unsupported path match %T", p)
	}
	switch {
	case m.GetRuntimeFraction() != nil, len(m.GetDynamicMetadata()) > 0, m.GetTlsContext() != nil,
		m.GetFilterState() != nil, m.GetConnectMatcher() != nil:
		return nil, errors.New("unsupported route match condition")
	}
	rt.grpcOnly = m.GetGrpc() != nil
	for _, h := range m.GetHeaders() {
		hm, err := compileHeaderMatcher(h)
		if err != nil {
			return nil, err
		}
		rt.headers = append(rt.headers, hm)
	}
	for _, q := range m.GetQueryParameters() {
		qm, err := compileQueryMatcher(q)
		if err != nil {
			return nil, err
		}
		rt.query = append(rt.query, qm)
	}
	if len(r.GetRequestHeadersToAdd())+len(r.GetRequestHeadersToRemove())+len(r.GetResponseHeadersToAdd())+len(r.GetResponseHeadersToRemove()) > 0 {
		return nil, errors.New("header manipulation is not supported")
	}
	a := r.GetRoute()
	if a == nil {
		return nil, fmt.Errorf("unsupported route action %T (only route is)", r.GetAction())
	}
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if c.Cluster == "" {
			return nil, errors.New("empty cluster name")
		}
		rt.clusters, rt.totalWeight = []weightedCluster{{name: c.Cluster, cum: 1}}, 1
	case *routev3.RouteAction_WeightedClusters:
		var sum uint32
		for _, wc := range c.WeightedClusters.GetClusters() {
			if wc.GetClusterHeader() != "" || len(wc.GetRequestHeadersToAdd())+len(wc.GetRequestHeadersToRemove()) > 0 {
				return nil, errors.New("weighted cluster: only name and weight are supported")
			}
			w := wc.GetWeight().GetValue()
			if w == 0 {
				continue
			}
			sum += w
			rt.clusters = append(rt.clusters, weightedCluster{name: wc.GetName(), cum: sum})
		}
		if sum == 0 {
			return nil, errors.New("weighted clusters have no weight")
		}
		rt.totalWeight = sum
	default:
		return nil, fmt.Errorf("unsupported cluster specifier %T", c)
	}
	if len(a.GetRequestMirrorPolicies()) > 0 || a.GetMetadataMatch() != nil {
		return nil, errors.New("request mirroring and metadata match are not supported")
	}
	rt.timeout = durationOr(a.GetTimeout(), envoyRouteTimeout)
	rt.idleTimeout = durationOr(a.GetIdleTimeout(), 0)
	switch h := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		rt.hostRewrite = h.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		rt.autoHost = h.AutoHostRewrite.GetValue()
	case nil:
	default:
		return nil, fmt.Errorf("unsupported host rewrite %T", h)
	}
	if a.GetPrefixRewrite() != "" {
		pr := a.GetPrefixRewrite()
		rt.prefixRewrite = &pr
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		if rt.prefixRewrite != nil {
			return nil, errors.New("prefix_rewrite and regex_rewrite are exclusive")
		}
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		rt.regexRewrite, rt.regexSubst = re, envoySubstitution(rr.GetSubstitution())
	}
	rp := a.GetRetryPolicy()
	if rp == nil {
		rp = vhRetry
	}
	if rp != nil {
		p, err := compileRetryPolicy(rp)
		if err != nil {
			return nil, err
		}
		rt.retry = p
	}
	return rt, nil
}

// envoySubstitution turns RE2 substitution groups (\1) into Go's (${1})
// and escapes Go's $.
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '$':
			b.WriteString("$$")
		case c == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			b.WriteString("${" + s[i+1:i+2] + "}")
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// durationOr converts d; nil means def.
func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}
