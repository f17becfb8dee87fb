// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

// maxDangling bounds the references Dangling lists.
const maxDangling = 5

// Dangling returns an error naming the references of r that r does not
// resolve: a route configuration a listener's HTTP connection manager names
// through RDS, a cluster a route or a TCP proxy sends to, the endpoints
// (ClusterLoadAssignment) of an EDS cluster. nil means that every reference
// resolves. A configuration the controller computes in one piece always
// resolves; one whose types arrived one by one may not, for a moment (see
// Config.Consistent).
func (r ProxyResources) Dangling() error {
	routes := map[string]bool{}
	for _, rc := range r.Routes {
		routes[rc.GetName()] = true
	}
	clusters := map[string]bool{}
	for _, c := range r.Clusters {
		clusters[c.GetName()] = true
	}
	loads := map[string]bool{}
	for _, e := range r.Endpoints {
		loads[e.GetClusterName()] = true
	}
	var missing []string
	miss := func(format string, args ...any) {
		if s := fmt.Sprintf(format, args...); !slices.Contains(missing, s) {
			missing = append(missing, s)
		}
	}
	cluster := func(name, from string) {
		if name != "" && !clusters[name] {
			miss("cluster %q (%s)", name, from)
		}
	}
	routeTable := func(rc *routev3.RouteConfiguration) {
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				from := "route configuration " + rc.GetName()
				switch cs := rt.GetRoute().GetClusterSpecifier().(type) {
				case *routev3.RouteAction_Cluster:
					cluster(cs.Cluster, from)
				case *routev3.RouteAction_WeightedClusters:
					for _, wc := range cs.WeightedClusters.GetClusters() {
						cluster(wc.GetName(), from)
					}
				}
			}
		}
	}
	for _, rc := range r.Routes {
		routeTable(rc)
	}
	for _, l := range r.Listeners {
		from := "listener " + l.GetName()
		chains := l.GetFilterChains()
		if d := l.GetDefaultFilterChain(); d != nil {
			chains = append(slices.Clip(chains), d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				tc := f.GetTypedConfig()
				switch {
				case tc == nil:
				case tc.MessageIs(&hcmv3.HttpConnectionManager{}):
					var h hcmv3.HttpConnectionManager
					if err := tc.UnmarshalTo(&h); err != nil {
						miss("a readable http connection manager (%s: %v)", from, err)
						continue
					}
					if name := h.GetRds().GetRouteConfigName(); name != "" && !routes[name] {
						miss("route configuration %q (%s)", name, from)
					}
					if rc := h.GetRouteConfig(); rc != nil {
						routeTable(rc)
					}
				case tc.MessageIs(&tcpproxyv3.TcpProxy{}):
					var t tcpproxyv3.TcpProxy
					if err := tc.UnmarshalTo(&t); err != nil {
						miss("a readable tcp proxy (%s: %v)", from, err)
						continue
					}
					cluster(t.GetCluster(), from)
					for _, wc := range t.GetWeightedClusters().GetClusters() {
						cluster(wc.GetName(), from)
					}
				}
			}
		}
	}
	for _, c := range r.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if !loads[name] {
			miss("endpoints of %q (cluster %s)", name, c.GetName())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	more := ""
	if len(missing) > maxDangling {
		more = fmt.Sprintf(" and %d more", len(missing)-maxDangling)
		missing = missing[:maxDangling]
	}
	return errors.New("missing " + strings.Join(missing, ", ") + more)
}
