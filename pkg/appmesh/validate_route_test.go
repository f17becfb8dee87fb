// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"strings"
	"testing"
)

// httpRouteSpec is a route spec of type typ (httpRoute or http2Route) with the
// given match members and one target; extra adds members to the route.
func httpRouteSpec(typ, match, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return typ + ": {match: {" + match + "}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}" + extra + "}"
}

// targetsSpec is an httpRoute to the given weighted targets.
func targetsSpec(targets string) string {
	return "httpRoute: {match: {prefix: /}, action: {weightedTargets: [" + targets + "]}}"
}

// grpcRouteSpec is a grpcRoute with the given match members and one target.
func grpcRouteSpec(match, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return "grpcRoute: {match: {" + match + "}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}" + extra + "}"
}

func repeatList(item string, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = item
	}
	return strings.Join(items, ", ")
}

func TestValidateVirtualService(t *testing.T) {
	runSpecCases(t, []specCase{
		{"no provider", KindVirtualService, "{}", ""},
		{"node provider", KindVirtualService, "provider: {virtualNode: {virtualNodeName: blue_shop}}", ""},
		{"router provider", KindVirtualService, "provider: {virtualRouter: {virtualRouterName: color_shop}}", ""},
		{"provider empty", KindVirtualService, "provider: {}", "spec.provider: exactly one of virtualNode or virtualRouter must be set"},
		{"provider both", KindVirtualService, "provider: {virtualNode: {virtualNodeName: a}, virtualRouter: {virtualRouterName: b}}", "spec.provider: exactly one of virtualNode or virtualRouter must be set"},
		{"node name missing", KindVirtualService, "provider: {virtualNode: {}}", "spec.provider.virtualNode.virtualNodeName: is required"},
		{"router name bad", KindVirtualService, "provider: {virtualRouter: {virtualRouterName: 'color shop'}}", "spec.provider.virtualRouter.virtualRouterName: must contain only letters, digits, '.', '_' and '-'"},
	})
}

func TestValidateVirtualRouter(t *testing.T) {
	runSpecCases(t, []specCase{
		{"one listener", KindVirtualRouter, "listeners: [{portMapping: {port: 8080, protocol: http}}]", ""},
		{"several listeners", KindVirtualRouter, "listeners: [{portMapping: {port: 8080, protocol: http}}, {portMapping: {port: 9090, protocol: http2}}, {portMapping: {port: 15432, protocol: tcp}}]", ""},
		{"no listeners", KindVirtualRouter, "{}", "spec.listeners: must have at least 1 item"},
		{"empty listeners", KindVirtualRouter, "listeners: []", "spec.listeners: must have at least 1 item"},
		{"port mapping missing", KindVirtualRouter, "listeners: [{}]", "spec.listeners[0].portMapping: is required"},
		{"port 70000", KindVirtualRouter, "listeners: [{portMapping: {port: 70000, protocol: http}}]", "spec.listeners[0].portMapping.port: must be between 1 and 65535"},
		{"protocol bad", KindVirtualRouter, "listeners: [{portMapping: {port: 80, protocol: udp}}]", "spec.listeners[0].portMapping.protocol: must be one of http, http2, grpc, tcp"},
		{"duplicate port", KindVirtualRouter, "listeners: [{portMapping: {port: 80, protocol: http}}, {portMapping: {port: 80, protocol: http}}]", "spec.listeners[1].portMapping.port: must be unique (same as listeners[0])"},
	})
}

func TestValidateRouteTypes(t *testing.T) {
	runSpecCases(t, []specCase{
		{"http", KindRoute, httpRouteSpec("httpRoute", "prefix: /", ""), ""},
		{"http2", KindRoute, httpRouteSpec("http2Route", "prefix: /", ""), ""},
		{"grpc", KindRoute, grpcRouteSpec("", ""), ""},
		{"tcp", KindRoute, "tcpRoute: {action: {weightedTargets: [{virtualNode: a, weight: 100}]}}", ""},
		{"none", KindRoute, "{}", "spec: exactly one of httpRoute, http2Route, grpcRoute or tcpRoute must be set"},
		{"two", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "") + "\n" + grpcRouteSpec("", ""), "spec: exactly one of httpRoute, http2Route, grpcRoute or tcpRoute must be set"},
		{"priority 0", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "") + "\npriority: 0", ""},
		{"priority 1000", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "") + "\npriority: 1000", ""},
		{"priority 1001", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "") + "\npriority: 1001", "spec.priority: must be between 0 and 1000"},
		{"priority negative", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "") + "\npriority: -1", "spec.priority: must be between 0 and 1000"},
		{"http match missing", KindRoute, "httpRoute: {action: {weightedTargets: [{virtualNode: a, weight: 1}]}}", "spec.httpRoute.match: is required"},
		{"http action missing", KindRoute, "httpRoute: {match: {prefix: /}}", "spec.httpRoute.action: is required"},
		{"grpc match missing", KindRoute, "grpcRoute: {action: {weightedTargets: [{virtualNode: a, weight: 1}]}}", "spec.grpcRoute.match: is required"},
		{"grpc action missing", KindRoute, "grpcRoute: {match: {}}", "spec.grpcRoute.action: is required"},
		{"tcp action missing", KindRoute, "tcpRoute: {}", "spec.tcpRoute.action: is required"},
		{"tcp match port", KindRoute, "tcpRoute: {match: {port: 15432}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}, timeout: {idle: {unit: s, value: 0}}}", ""},
		{"tcp match port 0", KindRoute, "tcpRoute: {match: {port: 0}, action: {weightedTargets: [{virtualNode: a, weight: 1}]}}", "spec.tcpRoute.match.port: must be between 1 and 65535"},
		{"tcp idle unit missing", KindRoute, "tcpRoute: {action: {weightedTargets: [{virtualNode: a, weight: 1}]}, timeout: {idle: {value: 1}}}", "spec.tcpRoute.timeout.idle.unit: is required"},
	})
}

func TestValidateHTTPRouteMatch(t *testing.T) {
	const m = "spec.httpRoute.match"
	route := func(match string) string { return httpRouteSpec("httpRoute", match, "") }
	runSpecCases(t, []specCase{
		{"prefix", KindRoute, route("prefix: /api/"), ""},
		{"path exact", KindRoute, route("path: {exact: /order}"), ""},
		{"path regex", KindRoute, route("path: {regex: '/orders/[0-9]+'}"), ""},
		{"neither prefix nor path", KindRoute, route("method: GET"), m + ": exactly one of prefix or path must be set"},
		{"prefix and path", KindRoute, route("prefix: /, path: {exact: /a}"), m + ": exactly one of prefix or path must be set"},
		{"prefix without slash", KindRoute, route("prefix: api"), m + `.prefix: must start with "/"`},
		{"path empty", KindRoute, route("path: {}"), m + ".path: exactly one of exact or regex must be set"},
		{"path both", KindRoute, route("path: {exact: /a, regex: /a}"), m + ".path: exactly one of exact or regex must be set"},
		{"path exact empty", KindRoute, route("path: {exact: ''}"), m + ".path.exact: is required"},
		{"path exact without slash", KindRoute, route("path: {exact: order}"), m + `.path.exact: must start with "/"`},
		{"path exact too long", KindRoute, route("path: {exact: /" + strings.Repeat("p", 255) + "}"), m + ".path.exact: must be between 1 and 255 characters"},
		{"path regex invalid", KindRoute, route("path: {regex: '/a('}"), m + ".path.regex: must be a valid RE2 regular expression"},
		{"path regex look-ahead", KindRoute, route("path: {regex: '/(?=a)'}"), m + ".path.regex: must be a valid RE2 regular expression"},
		{"method", KindRoute, route("prefix: /, method: PATCH"), ""},
		{"method bad", KindRoute, route("prefix: /, method: FETCH"), m + ".method: must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH"},
		{"scheme in http2Route", KindRoute, httpRouteSpec("http2Route", "prefix: /, scheme: https", ""), ""},
		{"scheme bad", KindRoute, httpRouteSpec("http2Route", "prefix: /, scheme: ftp", ""), "spec.http2Route.match.scheme: must be one of http, https"},
		{"scheme in httpRoute", KindRoute, route("prefix: /, scheme: http"), m + ".scheme: is only allowed in http2Route"},
		{"port", KindRoute, route("prefix: /, port: 8080"), ""},
		{"port 0", KindRoute, route("prefix: /, port: 0"), m + ".port: must be between 1 and 65535"},
		{"query", KindRoute, route("prefix: /, queryParameters: [{name: beta, match: {exact: 'true'}}, {name: debug}]"), ""},
		{"query empty list is absent", KindRoute, route("prefix: /, queryParameters: []"), ""},
		{"query 11", KindRoute, route("prefix: /, queryParameters: [" + repeatList("{name: q}", 11) + "]"), m + ".queryParameters: must have between 1 and 10 items"},
		{"query name missing", KindRoute, route("prefix: /, queryParameters: [{match: {exact: a}}]"), m + ".queryParameters[0].name: is required"},
		{"query match without exact", KindRoute, route("prefix: /, queryParameters: [{name: a, match: {}}]"), m + ".queryParameters[0].match.exact: is required"},
	})
}

func TestValidateHeaderMatch(t *testing.T) {
	const h = "spec.httpRoute.match.headers"
	route := func(headers string) string {
		return httpRouteSpec("httpRoute", "prefix: /, headers: ["+headers+"]", "")
	}
	runSpecCases(t, []specCase{
		{"presence", KindRoute, route("{name: x-canary}"), ""},
		{"every matcher", KindRoute, route("{name: a, match: {exact: x}}, {name: b, match: {prefix: x}}, {name: c, match: {suffix: x}}, {name: d, match: {regex: '.*x'}}, {name: e, match: {range: {start: -5, end: 5}}, invert: true}"), ""},
		{"ten", KindRoute, route(repeatList("{name: a}", 10)), ""},
		{"empty list is absent", KindRoute, httpRouteSpec("httpRoute", "prefix: /, headers: []", ""), ""},
		{"eleven", KindRoute, route(repeatList("{name: a}", 11)), h + ": must have between 1 and 10 items"},
		{"name missing", KindRoute, route("{match: {exact: a}}"), h + "[0].name: is required"},
		{"name 51", KindRoute, route("{name: " + strings.Repeat("n", 51) + "}"), h + "[0].name: must be between 1 and 50 characters"},
		{"matcher empty", KindRoute, route("{name: a, match: {}}"), h + "[0].match: exactly one of exact, prefix, suffix, regex or range must be set"},
		{"two matchers", KindRoute, route("{name: a, match: {exact: a, prefix: a}}"), h + "[0].match: exactly one of exact, prefix, suffix, regex or range must be set"},
		{"exact empty", KindRoute, route("{name: a, match: {exact: ''}}"), h + "[0].match.exact: is required"},
		{"prefix too long", KindRoute, route("{name: a, match: {prefix: " + strings.Repeat("p", 256) + "}}"), h + "[0].match.prefix: must be between 1 and 255 characters"},
		{"suffix too long", KindRoute, route("{name: a, match: {suffix: " + strings.Repeat("s", 256) + "}}"), h + "[0].match.suffix: must be between 1 and 255 characters"},
		{"regex invalid", KindRoute, route("{name: a, match: {regex: '[a'}}"), h + "[0].match.regex: must be a valid RE2 regular expression"},
		{"regex back-reference", KindRoute, route(`{name: a, match: {regex: '(a)\1'}}`), h + "[0].match.regex: must be a valid RE2 regular expression"},
		{"range start missing", KindRoute, route("{name: a, match: {range: {end: 5}}}"), h + "[0].match.range.start: is required"},
		{"range end missing", KindRoute, route("{name: a, match: {range: {start: 5}}}"), h + "[0].match.range.end: is required"},
		{"range empty", KindRoute, route("{name: a, match: {range: {start: 5, end: 5}}}"), h + "[0].match.range.end: must be greater than start"},
		{"range reversed", KindRoute, route("{name: a, match: {range: {start: 6, end: 5}}}"), h + "[0].match.range.end: must be greater than start"},
	})
}

func TestValidateWeightedTargets(t *testing.T) {
	const wt = "spec.httpRoute.action.weightedTargets"
	runSpecCases(t, []specCase{
		{"canary 90/10", KindRoute, targetsSpec("{virtualNode: blue, weight: 90}, {virtualNode: green, weight: 10}"), ""},
		{"single weight 1", KindRoute, targetsSpec("{virtualNode: blue, weight: 1}"), ""},
		{"zero and one", KindRoute, targetsSpec("{virtualNode: blue, weight: 0}, {virtualNode: green, weight: 1}"), ""},
		{"same node other port", KindRoute, targetsSpec("{virtualNode: blue, weight: 50, port: 8080}, {virtualNode: blue, weight: 50, port: 9090}"), ""},
		{"ten", KindRoute, targetsSpec(strings.Join([]string{"{virtualNode: a0, weight: 10}", "{virtualNode: a1, weight: 10}", "{virtualNode: a2, weight: 10}", "{virtualNode: a3, weight: 10}", "{virtualNode: a4, weight: 10}", "{virtualNode: a5, weight: 10}", "{virtualNode: a6, weight: 10}", "{virtualNode: a7, weight: 10}", "{virtualNode: a8, weight: 10}", "{virtualNode: a9, weight: 10}"}, ", ")), ""},
		{"none", KindRoute, targetsSpec(""), wt + ": must have between 1 and 10 items"},
		{"eleven", KindRoute, targetsSpec(repeatList("{virtualNode: a, weight: 1}", 11)), wt + ": must have between 1 and 10 items"},
		{"node missing", KindRoute, targetsSpec("{weight: 1}"), wt + "[0].virtualNode: is required"},
		{"node name bad", KindRoute, targetsSpec("{virtualNode: 'a b', weight: 1}"), wt + "[0].virtualNode: must contain only letters, digits, '.', '_' and '-'"},
		{"weight missing", KindRoute, targetsSpec("{virtualNode: a}"), wt + "[0].weight: is required"},
		{"weight 101", KindRoute, targetsSpec("{virtualNode: a, weight: 101}"), wt + "[0].weight: must be between 0 and 100"},
		{"weight negative", KindRoute, targetsSpec("{virtualNode: a, weight: -1}, {virtualNode: b, weight: 5}"), wt + "[0].weight: must be between 0 and 100"},
		{"sum 0", KindRoute, targetsSpec("{virtualNode: a, weight: 0}"), wt + ": sum of weights must be between 1 and 100 (is 0)"},
		{"sum 150", KindRoute, targetsSpec("{virtualNode: a, weight: 100}, {virtualNode: b, weight: 50}"), wt + ": sum of weights must be between 1 and 100 (is 150)"},
		{"port 0", KindRoute, targetsSpec("{virtualNode: a, weight: 1, port: 0}"), wt + "[0].port: must be between 1 and 65535"},
		{"duplicate node", KindRoute, targetsSpec("{virtualNode: a, weight: 50}, {virtualNode: a, weight: 50}"), wt + "[1]: must be unique (same as weightedTargets[0])"},
		{"duplicate node and port", KindRoute, targetsSpec("{virtualNode: a, weight: 50, port: 80}, {virtualNode: b, weight: 10}, {virtualNode: a, weight: 40, port: 80}"), wt + "[2]: must be unique (same as weightedTargets[0])"},
		{"grpc targets", KindRoute, "grpcRoute: {match: {}, action: {weightedTargets: [{virtualNode: a, weight: 0}]}}", "spec.grpcRoute.action.weightedTargets: sum of weights must be between 1 and 100 (is 0)"},
		{"tcp targets", KindRoute, "tcpRoute: {action: {weightedTargets: []}}", "spec.tcpRoute.action.weightedTargets: must have between 1 and 10 items"},
	})
}

func TestValidateRetryPolicy(t *testing.T) {
	const rp = "spec.httpRoute.retryPolicy"
	httpRetry := func(policy string) string {
		return httpRouteSpec("httpRoute", "prefix: /", "retryPolicy: {"+policy+"}")
	}
	const basics = "maxRetries: 2, perRetryTimeout: {unit: ms, value: 2000}"
	runSpecCases(t, []specCase{
		{"http events", KindRoute, httpRetry(basics + ", httpRetryEvents: [server-error, gateway-error, client-error, stream-error]"), ""},
		{"tcp events only", KindRoute, httpRetry(basics + ", tcpRetryEvents: [connection-error]"), ""},
		{"zero retries", KindRoute, httpRetry("maxRetries: 0, perRetryTimeout: {unit: s, value: 1}, tcpRetryEvents: [connection-error]"), ""},
		{"max retries missing", KindRoute, httpRetry("perRetryTimeout: {unit: s, value: 1}, tcpRetryEvents: [connection-error]"), rp + ".maxRetries: is required"},
		{"max retries negative", KindRoute, httpRetry("maxRetries: -1, perRetryTimeout: {unit: s, value: 1}, tcpRetryEvents: [connection-error]"), rp + ".maxRetries: must be between 0 and 4294967295"},
		{"per retry timeout missing", KindRoute, httpRetry("maxRetries: 1, tcpRetryEvents: [connection-error]"), rp + ".perRetryTimeout: is required"},
		{"per retry timeout unit missing", KindRoute, httpRetry("maxRetries: 1, perRetryTimeout: {value: 1}, tcpRetryEvents: [connection-error]"), rp + ".perRetryTimeout.unit: is required"},
		{"no events", KindRoute, httpRetry(basics), rp + ": at least one of httpRetryEvents or tcpRetryEvents must be set"},
		{"http events empty", KindRoute, httpRetry(basics + ", httpRetryEvents: []"), rp + ": at least one of httpRetryEvents or tcpRetryEvents must be set"},
		{"http events 26", KindRoute, httpRetry(basics + ", httpRetryEvents: [" + repeatList("server-error", 26) + "]"), rp + ".httpRetryEvents: must have between 1 and 25 items"},
		{"http event bad", KindRoute, httpRetry(basics + ", httpRetryEvents: [5xx]"), rp + ".httpRetryEvents[0]: must be one of server-error, gateway-error, client-error, stream-error"},
		{"http event twice", KindRoute, httpRetry(basics + ", httpRetryEvents: [gateway-error, stream-error, gateway-error]"), rp + ".httpRetryEvents[2]: must be unique (same as httpRetryEvents[0])"},
		{"tcp events two", KindRoute, httpRetry(basics + ", tcpRetryEvents: [connection-error, connection-error]"), rp + ".tcpRetryEvents: must have exactly 1 item"},
		{"tcp event bad", KindRoute, httpRetry(basics + ", tcpRetryEvents: [reset]"), rp + ".tcpRetryEvents[0]: must be one of connection-error"},
		{"http2 policy", KindRoute, httpRouteSpec("http2Route", "prefix: /", "retryPolicy: {"+basics+"}"), "spec.http2Route.retryPolicy: at least one of httpRetryEvents or tcpRetryEvents must be set"},
		{"route timeout", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "timeout: {perRequest: {unit: s, value: 10}, idle: {unit: s, value: 0}}"), ""},
		{"route timeout value missing", KindRoute, httpRouteSpec("httpRoute", "prefix: /", "timeout: {perRequest: {unit: s}}"), "spec.httpRoute.timeout.perRequest.value: is required"},
	})
}

func TestValidateGRPCRoute(t *testing.T) {
	const m = "spec.grpcRoute.match"
	const rp = "spec.grpcRoute.retryPolicy"
	const basics = "maxRetries: 3, perRetryTimeout: {unit: s, value: 5}"
	grpcRetry := func(policy string) string { return grpcRouteSpec("", "retryPolicy: {"+policy+"}") }
	runSpecCases(t, []specCase{
		{"any call", KindRoute, grpcRouteSpec("", ""), ""},
		{"service and method", KindRoute, grpcRouteSpec("serviceName: color.ColorService, methodName: GetColor, port: 9090", ""), ""},
		{"method without service", KindRoute, grpcRouteSpec("methodName: GetColor", ""), m + ".methodName: requires serviceName"},
		{"method too long", KindRoute, grpcRouteSpec("serviceName: s, methodName: "+strings.Repeat("m", 51), ""), m + ".methodName: must be between 1 and 50 characters"},
		{"method empty", KindRoute, grpcRouteSpec("serviceName: s, methodName: ''", ""), m + ".methodName: is required"},
		{"service empty", KindRoute, grpcRouteSpec("serviceName: ''", ""), m + ".serviceName: is required"},
		{"port 65536", KindRoute, grpcRouteSpec("port: 65536", ""), m + ".port: must be between 1 and 65535"},
		{"metadata", KindRoute, grpcRouteSpec("metadata: [{name: x-tenant, match: {prefix: acme-}}, {name: x-debug, invert: true}]", ""), ""},
		{"metadata empty is absent", KindRoute, grpcRouteSpec("metadata: []", ""), ""},
		{"metadata eleven", KindRoute, grpcRouteSpec("metadata: ["+repeatList("{name: a}", 11)+"]", ""), m + ".metadata: must have between 1 and 10 items"},
		{"metadata name missing", KindRoute, grpcRouteSpec("metadata: [{match: {exact: a}}]", ""), m + ".metadata[0].name: is required"},
		{"metadata two matchers", KindRoute, grpcRouteSpec("metadata: [{name: a, match: {suffix: a, regex: a}}]", ""), m + ".metadata[0].match: exactly one of exact, prefix, suffix, regex or range must be set"},
		{"metadata regex invalid", KindRoute, grpcRouteSpec("metadata: [{name: a, match: {regex: '*'}}]", ""), m + ".metadata[0].match.regex: must be a valid RE2 regular expression"},
		{"grpc events", KindRoute, grpcRetry(basics + ", grpcRetryEvents: [cancelled, deadline-exceeded, internal, resource-exhausted, unavailable]"), ""},
		{"every event list", KindRoute, grpcRetry(basics + ", grpcRetryEvents: [unavailable], httpRetryEvents: [stream-error], tcpRetryEvents: [connection-error]"), ""},
		{"no events", KindRoute, grpcRetry(basics), rp + ": at least one of grpcRetryEvents, httpRetryEvents or tcpRetryEvents must be set"},
		{"grpc events six", KindRoute, grpcRetry(basics + ", grpcRetryEvents: [cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, cancelled]"), rp + ".grpcRetryEvents: must have between 1 and 5 items"},
		{"grpc event bad", KindRoute, grpcRetry(basics + ", grpcRetryEvents: [UNAVAILABLE]"), rp + ".grpcRetryEvents[0]: must be one of cancelled, deadline-exceeded, internal, resource-exhausted, unavailable"},
		{"grpc event twice", KindRoute, grpcRetry(basics + ", grpcRetryEvents: [internal, internal]"), rp + ".grpcRetryEvents[1]: must be unique (same as grpcRetryEvents[0])"},
		{"grpc http event bad", KindRoute, grpcRetry(basics + ", httpRetryEvents: [unavailable]"), rp + ".httpRetryEvents[0]: must be one of server-error, gateway-error, client-error, stream-error"},
		{"grpc max retries missing", KindRoute, grpcRetry("perRetryTimeout: {unit: s, value: 5}, grpcRetryEvents: [internal]"), rp + ".maxRetries: is required"},
		{"grpc timeout", KindRoute, grpcRouteSpec("", "timeout: {perRequest: {unit: s, value: 20}, idle: {unit: m, value: 1}}"), "spec.grpcRoute.timeout.idle.unit: must be one of s, ms"},
	})
}
