// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"strings"
	"testing"
)

// gatewayWith is a gateway spec with one listener on 8088 of protocol proto
// and the extra listener fields.
func gatewayWith(proto, fields string) string {
	if fields != "" {
		fields = ", " + fields
	}
	return "listeners: [{portMapping: {port: 8088, protocol: " + proto + "}" + fields + "}]"
}

// httpGatewayRoute is a gateway httpRoute with the given match and extra
// action members.
func httpGatewayRoute(match, action string) string {
	if action != "" {
		action = ", " + action
	}
	return "httpRoute: {match: {" + match + "}, action: {target: {virtualService: {virtualServiceName: color.local}}" + action + "}}"
}

func TestValidateVirtualGateway(t *testing.T) {
	const l0 = "spec.listeners[0]"
	const hc = "healthCheck: {protocol: %s, healthyThreshold: 2, unhealthyThreshold: 2, intervalMillis: 5000, timeoutMillis: 2000}"
	health := func(proto string) string { return strings.Replace(hc, "%s", proto, 1) }
	const cert = "certificate: {file: {certificateChain: /c.pem, privateKey: /k.pem}}"
	runSpecCases(t, []specCase{
		{"http", KindVirtualGateway, gatewayWith("http", "connectionPool: {http: {maxConnections: 1024, maxPendingRequests: 2048}}"), ""},
		{"http2", KindVirtualGateway, gatewayWith("http2", "connectionPool: {http2: {maxRequests: 1}}, "+health("http2")), ""},
		{"grpc", KindVirtualGateway, gatewayWith("grpc", "connectionPool: {grpc: {maxRequests: 1}}, "+health("grpc")+", tls: {mode: STRICT, "+cert+", validation: {trust: {sds: {secretName: ca}}}}"), ""},
		{"several listeners", KindVirtualGateway, "listeners: [{portMapping: {port: 8088, protocol: http}}, {portMapping: {port: 9088, protocol: grpc}}]", ""},
		{"no listeners", KindVirtualGateway, "{}", "spec.listeners: must have at least 1 item"},
		{"protocol tcp", KindVirtualGateway, gatewayWith("tcp", ""), l0 + ".portMapping.protocol: must be one of http, http2, grpc"},
		{"duplicate port", KindVirtualGateway, "listeners: [{portMapping: {port: 8088, protocol: http}}, {portMapping: {port: 8088, protocol: grpc}}]", "spec.listeners[1].portMapping.port: must be unique (same as listeners[0])"},
		{"port missing", KindVirtualGateway, "listeners: [{portMapping: {protocol: http}}]", l0 + ".portMapping.port: is required"},
		{"health check tcp", KindVirtualGateway, gatewayWith("http", health("tcp")), l0 + ".healthCheck.protocol: must be one of http, http2, grpc"},
		{"health check port differs", KindVirtualGateway, gatewayWith("http", strings.Replace(health("http"), "}", ", port: 80}", 1)), l0 + ".healthCheck.port: must equal the listener port 8088"},
		{"health check interval", KindVirtualGateway, gatewayWith("http", strings.Replace(health("http"), "5000", "1000", 1)), l0 + ".healthCheck.intervalMillis: must be between 5000 and 300000"},
		{"pool empty", KindVirtualGateway, gatewayWith("http", "connectionPool: {}"), l0 + ".connectionPool: exactly one of http, http2 or grpc must be set"},
		// A gateway pool has no tcp member: decoding drops it.
		{"pool tcp", KindVirtualGateway, gatewayWith("http", "connectionPool: {tcp: {maxConnections: 1}}"), l0 + ".connectionPool: exactly one of http, http2 or grpc must be set"},
		{"pool protocol mismatch", KindVirtualGateway, gatewayWith("grpc", "connectionPool: {http: {maxConnections: 1}}"), l0 + ".connectionPool.http: must match the listener protocol (grpc)"},
		{"pool max requests 0", KindVirtualGateway, gatewayWith("http2", "connectionPool: {http2: {maxRequests: 0}}"), l0 + ".connectionPool.http2.maxRequests: must be at least 1"},
		{"tls mode missing", KindVirtualGateway, gatewayWith("http", "tls: {"+cert+"}"), l0 + ".tls.mode: is required"},
		{"tls certificate missing", KindVirtualGateway, gatewayWith("http", "tls: {mode: PERMISSIVE}"), l0 + ".tls.certificate: is required"},
		{"tls acm certificate", KindVirtualGateway, gatewayWith("http", "tls: {mode: STRICT, certificate: {acm: {certificateArn: 'arn:aws:acm:x'}}}"), ""},
		// A gateway listener trust has no acm member in the API.
		{"tls trust acm", KindVirtualGateway, gatewayWith("http", "tls: {mode: STRICT, "+cert+", validation: {trust: {acm: {certificateAuthorityArns: ['arn:x']}}}}"), l0 + ".tls.validation.trust: exactly one of file or sds must be set"},
		{"backend defaults", KindVirtualGateway, gatewayWith("http", "") + "\nbackendDefaults: {clientPolicy: {tls: {ports: [443], validation: {trust: {acm: {certificateAuthorityArns: ['arn:ca']}}}}}}", ""},
		{"backend defaults validation missing", KindVirtualGateway, gatewayWith("http", "") + "\nbackendDefaults: {clientPolicy: {tls: {}}}", "spec.backendDefaults.clientPolicy.tls.validation: is required"},
		{"backend defaults wildcard", KindVirtualGateway, gatewayWith("http", "") + "\nbackendDefaults: {clientPolicy: {tls: {validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: ['*']}}}}}}", "spec.backendDefaults.clientPolicy.tls.validation.subjectAlternativeNames.match.exact[0]: must not contain a wildcard when the client policy enforces TLS"},
		{"logging", KindVirtualGateway, gatewayWith("http", "") + "\nlogging: {accessLog: {file: {path: /dev/stdout, format: {json: [{key: path, value: '%REQ(:PATH)%'}]}}}}", ""},
		{"logging path missing", KindVirtualGateway, gatewayWith("http", "") + "\nlogging: {accessLog: {file: {format: {text: a}}}}", "spec.logging.accessLog.file.path: is required"},
	})
}

func TestValidateHTTPGatewayRoute(t *testing.T) {
	const m = "spec.httpRoute.match"
	const a = "spec.httpRoute.action"
	runSpecCases(t, []specCase{
		{"prefix", KindGatewayRoute, httpGatewayRoute("prefix: /colors/", ""), ""},
		{"path", KindGatewayRoute, httpGatewayRoute("path: {regex: '/v[0-9]+/.*'}", ""), ""},
		{"hostname only", KindGatewayRoute, httpGatewayRoute("hostname: {exact: shop.example.com}", ""), ""},
		{"everything", KindGatewayRoute, httpGatewayRoute("prefix: /, hostname: {suffix: .example.com}, headers: [{name: a}], method: GET, queryParameters: [{name: q}], port: 8088", "rewrite: {hostname: {defaultTargetHostname: DISABLED}, prefix: {defaultPrefix: ENABLED}}"), ""},
		{"http2", KindGatewayRoute, strings.Replace(httpGatewayRoute("prefix: /", ""), "httpRoute", "http2Route", 1), ""},
		{"no route", KindGatewayRoute, "priority: 1", "spec: exactly one of httpRoute, http2Route or grpcRoute must be set"},
		{"two routes", KindGatewayRoute, httpGatewayRoute("prefix: /", "") + "\ngrpcRoute: {match: {serviceName: a}, action: {target: {virtualService: {virtualServiceName: a}}}}", "spec: exactly one of httpRoute, http2Route or grpcRoute must be set"},
		{"priority 1001", KindGatewayRoute, httpGatewayRoute("prefix: /", "") + "\npriority: 1001", "spec.priority: must be between 0 and 1000"},
		{"match missing", KindGatewayRoute, "httpRoute: {action: {target: {virtualService: {virtualServiceName: a}}}}", m + ": is required"},
		{"match empty", KindGatewayRoute, httpGatewayRoute("method: GET", ""), m + ": at least one of prefix, path or hostname must be set"},
		{"prefix and path", KindGatewayRoute, httpGatewayRoute("prefix: /, path: {exact: /a}", ""), m + ".path: must not be set together with prefix"},
		{"prefix without slash", KindGatewayRoute, httpGatewayRoute("prefix: colors", ""), m + `.prefix: must start with "/"`},
		{"prefix reserved", KindGatewayRoute, httpGatewayRoute("prefix: /aws-appmesh/stats", ""), m + ".prefix: must not start with /aws-appmesh or /aws-app-mesh"},
		{"prefix reserved hyphen", KindGatewayRoute, httpGatewayRoute("prefix: /aws-app-mesh", ""), m + ".prefix: must not start with /aws-appmesh or /aws-app-mesh"},
		{"prefix near reserved", KindGatewayRoute, httpGatewayRoute("prefix: /aws-apps", ""), ""},
		{"path empty", KindGatewayRoute, httpGatewayRoute("path: {}", ""), m + ".path: exactly one of exact or regex must be set"},
		{"hostname empty", KindGatewayRoute, httpGatewayRoute("hostname: {}", ""), m + ".hostname: exactly one of exact or suffix must be set"},
		{"hostname both", KindGatewayRoute, httpGatewayRoute("hostname: {exact: a, suffix: b}", ""), m + ".hostname: exactly one of exact or suffix must be set"},
		{"hostname too long", KindGatewayRoute, httpGatewayRoute("hostname: {exact: "+strings.Repeat("h", 254)+"}", ""), m + ".hostname.exact: must be between 1 and 253 characters"},
		{"hostname suffix empty", KindGatewayRoute, httpGatewayRoute("hostname: {suffix: ''}", ""), m + ".hostname.suffix: is required"},
		{"header matcher", KindGatewayRoute, httpGatewayRoute("prefix: /, headers: [{name: a, match: {range: {start: 2, end: 1}}}]", ""), m + ".headers[0].match.range.end: must be greater than start"},
		{"method bad", KindGatewayRoute, httpGatewayRoute("prefix: /, method: get", ""), m + ".method: must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH"},
		{"query match", KindGatewayRoute, httpGatewayRoute("prefix: /, queryParameters: [{name: fish, match: {}}]", ""), m + ".queryParameters[0].match.exact: is required"},
		{"port 0", KindGatewayRoute, httpGatewayRoute("prefix: /, port: 0", ""), m + ".port: must be between 1 and 65535"},
		{"action missing", KindGatewayRoute, "httpRoute: {match: {prefix: /}}", a + ": is required"},
		{"target missing", KindGatewayRoute, "httpRoute: {match: {prefix: /}, action: {}}", a + ".target: is required"},
		{"target service missing", KindGatewayRoute, "httpRoute: {match: {prefix: /}, action: {target: {port: 8080}}}", a + ".target.virtualService: is required"},
		{"target name missing", KindGatewayRoute, "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {}}}}", a + ".target.virtualService.virtualServiceName: is required"},
		{"target name bad", KindGatewayRoute, "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: a_b}}}}", a + ".target.virtualService.virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"target port", KindGatewayRoute, "httpRoute: {match: {prefix: /}, action: {target: {virtualService: {virtualServiceName: a}, port: 65536}}}", a + ".target.port: must be between 1 and 65535"},
	})
}

func TestValidateGatewayRewrite(t *testing.T) {
	const r = "spec.httpRoute.action.rewrite"
	prefixRoute := func(rewrite string) string { return httpGatewayRoute("prefix: /maroon/", "rewrite: "+rewrite) }
	pathRoute := func(rewrite string) string { return httpGatewayRoute("path: {exact: /status}", "rewrite: "+rewrite) }
	runSpecCases(t, []specCase{
		{"prefix value", KindGatewayRoute, prefixRoute("{prefix: {value: /blue/}}"), ""},
		{"prefix value root", KindGatewayRoute, prefixRoute("{prefix: {value: /}}"), ""},
		{"default prefix disabled", KindGatewayRoute, prefixRoute("{prefix: {defaultPrefix: DISABLED}}"), ""},
		{"path", KindGatewayRoute, pathRoute("{path: {exact: /ping}}"), ""},
		{"hostname", KindGatewayRoute, pathRoute("{hostname: {defaultTargetHostname: ENABLED}}"), ""},
		{"empty", KindGatewayRoute, prefixRoute("{}"), r + ": at least one of prefix, path or hostname must be set"},
		{"hostname default bad", KindGatewayRoute, prefixRoute("{hostname: {defaultTargetHostname: 'ON'}}"), r + ".hostname.defaultTargetHostname: must be one of ENABLED, DISABLED"},
		{"prefix empty", KindGatewayRoute, prefixRoute("{prefix: {}}"), r + ".prefix: exactly one of defaultPrefix or value must be set"},
		{"prefix both", KindGatewayRoute, prefixRoute("{prefix: {defaultPrefix: ENABLED, value: /a/}}"), r + ".prefix: exactly one of defaultPrefix or value must be set"},
		{"default prefix bad", KindGatewayRoute, prefixRoute("{prefix: {defaultPrefix: 'YES'}}"), r + ".prefix.defaultPrefix: must be one of ENABLED, DISABLED"},
		{"prefix value no leading slash", KindGatewayRoute, prefixRoute("{prefix: {value: blue/}}"), r + `.prefix.value: must start and end with "/"`},
		{"prefix value no trailing slash", KindGatewayRoute, prefixRoute("{prefix: {value: /blue}}"), r + `.prefix.value: must start and end with "/"`},
		{"prefix value too long", KindGatewayRoute, prefixRoute("{prefix: {value: /" + strings.Repeat("v", 254) + "/}}"), r + ".prefix.value: must be between 1 and 255 characters"},
		{"prefix rewrite on path match", KindGatewayRoute, pathRoute("{prefix: {value: /a/}}"), r + ".prefix: requires a prefix match"},
		{"prefix rewrite on hostname match", KindGatewayRoute, httpGatewayRoute("hostname: {exact: a.com}", "rewrite: {prefix: {value: /a/}}"), r + ".prefix: requires a prefix match"},
		{"path rewrite on prefix match", KindGatewayRoute, prefixRoute("{path: {exact: /a}}"), r + ".path: requires a path match"},
		{"prefix and path", KindGatewayRoute, prefixRoute("{prefix: {value: /a/}, path: {exact: /a}}"), r + ".path: must not be set together with prefix; " + r + ".path: requires a path match"},
		{"path exact missing", KindGatewayRoute, pathRoute("{path: {}}"), r + ".path.exact: is required"},
		{"path exact without slash", KindGatewayRoute, pathRoute("{path: {exact: ping}}"), r + `.path.exact: must start with "/"`},
	})
}

func TestValidateGRPCGatewayRoute(t *testing.T) {
	const m = "spec.grpcRoute.match"
	route := func(match, action string) string {
		if action != "" {
			action = ", " + action
		}
		return "grpcRoute: {match: {" + match + "}, action: {target: {virtualService: {virtualServiceName: color-grpc.local}}" + action + "}}"
	}
	runSpecCases(t, []specCase{
		{"service", KindGatewayRoute, route("serviceName: color.ColorService, metadata: [{name: a, match: {exact: b}}], port: 9088", "rewrite: {hostname: {defaultTargetHostname: DISABLED}}"), ""},
		{"hostname", KindGatewayRoute, route("hostname: {suffix: .example.com}", ""), ""},
		{"neither", KindGatewayRoute, route("port: 9088", ""), m + ": at least one of serviceName or hostname must be set"},
		{"service empty", KindGatewayRoute, route("serviceName: ''", ""), m + ".serviceName: is required"},
		{"service reserved", KindGatewayRoute, route("serviceName: aws.appmesh", ""), m + ".serviceName: must not be aws.appmesh or start with aws.app-mesh"},
		{"service reserved prefix", KindGatewayRoute, route("serviceName: aws.app-mesh.Stats", ""), m + ".serviceName: must not be aws.appmesh or start with aws.app-mesh"},
		{"hostname empty", KindGatewayRoute, route("hostname: {}", ""), m + ".hostname: exactly one of exact or suffix must be set"},
		{"metadata empty is absent", KindGatewayRoute, route("serviceName: a, metadata: []", ""), ""},
		{"metadata eleven", KindGatewayRoute, route("serviceName: a, metadata: ["+repeatList("{name: a}", 11)+"]", ""), m + ".metadata: must have between 1 and 10 items"},
		{"port 0", KindGatewayRoute, route("serviceName: a, port: 0", ""), m + ".port: must be between 1 and 65535"},
		{"match missing", KindGatewayRoute, "grpcRoute: {action: {target: {virtualService: {virtualServiceName: a}}}}", m + ": is required"},
		{"action missing", KindGatewayRoute, "grpcRoute: {match: {serviceName: a}}", "spec.grpcRoute.action: is required"},
		{"target missing", KindGatewayRoute, "grpcRoute: {match: {serviceName: a}, action: {}}", "spec.grpcRoute.action.target: is required"},
		{"rewrite hostname bad", KindGatewayRoute, route("serviceName: a", "rewrite: {hostname: {defaultTargetHostname: 'true'}}"), "spec.grpcRoute.action.rewrite.hostname.defaultTargetHostname: must be one of ENABLED, DISABLED"},
	})
}
