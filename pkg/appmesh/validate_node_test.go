// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"strings"
	"testing"
)

// listenerNode is a node spec with DNS discovery and one listener on port 8080
// with protocol proto and the extra listener fields (YAML flow members).
func listenerNode(proto, fields string) string {
	if fields != "" {
		fields = ", " + fields
	}
	return "listeners: [{portMapping: {port: 8080, protocol: " + proto + "}" + fields + "}]\n" +
		"serviceDiscovery: {dns: {hostname: a.local}}"
}

// backendNode is a node spec with one backend with the given client policy.
func backendNode(policy string) string {
	return "backends: [{virtualService: {virtualServiceName: a.local, clientPolicy: " + policy + "}}]"
}

const fileTrust = "trust: {file: {certificateChain: /ca.pem}}"

func TestValidateNodeListeners(t *testing.T) {
	const l0 = "spec.listeners[0]"
	runSpecCases(t, []specCase{
		{"client only", KindVirtualNode, "{}", ""},
		{"one listener", KindVirtualNode, listenerNode("http", ""), ""},
		{"every protocol", KindVirtualNode, "listeners: [{portMapping: {port: 1, protocol: http}}, {portMapping: {port: 2, protocol: http2}}, {portMapping: {port: 3, protocol: grpc}}, {portMapping: {port: 65535, protocol: tcp}}]\nserviceDiscovery: {dns: {hostname: a.local}}", ""},
		{"port mapping missing", KindVirtualNode, "listeners: [{}]\nserviceDiscovery: {dns: {hostname: a.local}}", l0 + ".portMapping: is required"},
		{"port missing", KindVirtualNode, "listeners: [{portMapping: {protocol: http}}]\nserviceDiscovery: {dns: {hostname: a.local}}", l0 + ".portMapping.port: is required"},
		{"port 0", KindVirtualNode, "listeners: [{portMapping: {port: 0, protocol: http}}]\nserviceDiscovery: {dns: {hostname: a.local}}", l0 + ".portMapping.port: must be between 1 and 65535"},
		{"port 65536", KindVirtualNode, "listeners: [{portMapping: {port: 65536, protocol: http}}]\nserviceDiscovery: {dns: {hostname: a.local}}", l0 + ".portMapping.port: must be between 1 and 65535"},
		{"protocol missing", KindVirtualNode, "listeners: [{portMapping: {port: 80}}]\nserviceDiscovery: {dns: {hostname: a.local}}", l0 + ".portMapping.protocol: is required"},
		{"protocol bad", KindVirtualNode, listenerNode("https", ""), l0 + ".portMapping.protocol: must be one of http, http2, grpc, tcp"},
		{"duplicate port", KindVirtualNode, "listeners: [{portMapping: {port: 80, protocol: http}}, {portMapping: {port: 81, protocol: http}}, {portMapping: {port: 80, protocol: grpc}}]\nserviceDiscovery: {dns: {hostname: a.local}}", "spec.listeners[2].portMapping.port: must be unique (same as listeners[0])"},
		{"service discovery missing", KindVirtualNode, "listeners: [{portMapping: {port: 80, protocol: http}}]", "spec.serviceDiscovery: is required when listeners are set"},
		{"service discovery without listeners", KindVirtualNode, "serviceDiscovery: {dns: {hostname: a.local}}", ""},
	})
}

func TestValidateNodeHealthCheck(t *testing.T) {
	const hc = "spec.listeners[0].healthCheck"
	check := func(fields string) string {
		return listenerNode("http", "healthCheck: {"+fields+"}")
	}
	const full = "protocol: http, path: /ping, healthyThreshold: 2, unhealthyThreshold: 10, intervalMillis: 5000, timeoutMillis: 60000"
	runSpecCases(t, []specCase{
		{"full", KindVirtualNode, check(full + ", port: 8080"), ""},
		{"upper bounds", KindVirtualNode, check("protocol: tcp, healthyThreshold: 10, unhealthyThreshold: 2, intervalMillis: 300000, timeoutMillis: 2000"), ""},
		{"every protocol", KindVirtualNode, check("protocol: grpc, healthyThreshold: 2, unhealthyThreshold: 2, intervalMillis: 5000, timeoutMillis: 2000"), ""},
		{"http2", KindVirtualNode, check("protocol: http2, healthyThreshold: 2, unhealthyThreshold: 2, intervalMillis: 5000, timeoutMillis: 2000"), ""},
		{"empty", KindVirtualNode, check(""), hc + ".protocol: is required; " + hc + ".healthyThreshold: is required; " + hc + ".unhealthyThreshold: is required; " + hc + ".intervalMillis: is required; " + hc + ".timeoutMillis: is required"},
		{"protocol bad", KindVirtualNode, check(strings.Replace(full, "http", "udp", 1)), hc + ".protocol: must be one of http, tcp, http2, grpc"},
		{"path without slash", KindVirtualNode, check(strings.Replace(full, "/ping", "ping", 1)), hc + `.path: must start with "/"`},
		{"port differs", KindVirtualNode, check(full + ", port: 9090"), hc + ".port: must equal the listener port 8080"},
		{"port 0", KindVirtualNode, check(full + ", port: 0"), hc + ".port: must be between 1 and 65535"},
		{"healthy threshold 1", KindVirtualNode, check(strings.Replace(full, "healthyThreshold: 2", "healthyThreshold: 1", 1)), hc + ".healthyThreshold: must be between 2 and 10"},
		{"unhealthy threshold 11", KindVirtualNode, check(strings.Replace(full, "unhealthyThreshold: 10", "unhealthyThreshold: 11", 1)), hc + ".unhealthyThreshold: must be between 2 and 10"},
		{"interval 4999", KindVirtualNode, check(strings.Replace(full, "intervalMillis: 5000", "intervalMillis: 4999", 1)), hc + ".intervalMillis: must be between 5000 and 300000"},
		{"interval 300001", KindVirtualNode, check(strings.Replace(full, "intervalMillis: 5000", "intervalMillis: 300001", 1)), hc + ".intervalMillis: must be between 5000 and 300000"},
		{"timeout 1999", KindVirtualNode, check(strings.Replace(full, "timeoutMillis: 60000", "timeoutMillis: 1999", 1)), hc + ".timeoutMillis: must be between 2000 and 60000"},
		{"timeout 60001", KindVirtualNode, check(strings.Replace(full, "timeoutMillis: 60000", "timeoutMillis: 60001", 1)), hc + ".timeoutMillis: must be between 2000 and 60000"},
	})
}

func TestValidateNodeOutlierDetection(t *testing.T) {
	const od = "spec.listeners[0].outlierDetection"
	check := func(fields string) string {
		return listenerNode("http", "outlierDetection: {"+fields+"}")
	}
	const full = "maxServerErrors: 1, interval: {unit: s, value: 10}, baseEjectionDuration: {unit: ms, value: 30000}, maxEjectionPercent: 0"
	runSpecCases(t, []specCase{
		{"full", KindVirtualNode, check(full), ""},
		{"upper bounds", KindVirtualNode, check("maxServerErrors: 4294967295, interval: {unit: s, value: 1}, baseEjectionDuration: {unit: s, value: 1}, maxEjectionPercent: 100"), ""},
		{"empty", KindVirtualNode, check(""), od + ".maxServerErrors: is required; " + od + ".interval: is required; " + od + ".baseEjectionDuration: is required; " + od + ".maxEjectionPercent: is required"},
		{"max server errors 0", KindVirtualNode, check(strings.Replace(full, "maxServerErrors: 1", "maxServerErrors: 0", 1)), od + ".maxServerErrors: must be between 1 and 4294967295"},
		{"interval 0", KindVirtualNode, check(strings.Replace(full, "value: 10", "value: 0", 1)), od + ".interval.value: must be greater than 0"},
		{"base ejection unit missing", KindVirtualNode, check(strings.Replace(full, "unit: ms, ", "", 1)), od + ".baseEjectionDuration.unit: is required"},
		{"max ejection 101", KindVirtualNode, check(strings.Replace(full, "maxEjectionPercent: 0", "maxEjectionPercent: 101", 1)), od + ".maxEjectionPercent: must be between 0 and 100"},
	})
}

func TestValidateNodeTimeoutAndPool(t *testing.T) {
	const l0 = "spec.listeners[0]"
	runSpecCases(t, []specCase{
		{"http timeout", KindVirtualNode, listenerNode("http", "timeout: {http: {perRequest: {unit: s, value: 60}, idle: {unit: s, value: 0}}}"), ""},
		{"http2 timeout", KindVirtualNode, listenerNode("http2", "timeout: {http2: {perRequest: {unit: s, value: 60}}}"), ""},
		{"grpc timeout", KindVirtualNode, listenerNode("grpc", "timeout: {grpc: {idle: {unit: ms, value: 100}}}"), ""},
		{"tcp timeout", KindVirtualNode, listenerNode("tcp", "timeout: {tcp: {idle: {unit: s, value: 3600}}}"), ""},
		{"timeout empty", KindVirtualNode, listenerNode("http", "timeout: {}"), l0 + ".timeout: exactly one of http, http2, grpc or tcp must be set"},
		{"timeout two members", KindVirtualNode, listenerNode("http", "timeout: {http: {}, tcp: {}}"), l0 + ".timeout: exactly one of http, http2, grpc or tcp must be set"},
		{"timeout protocol mismatch", KindVirtualNode, listenerNode("http", "timeout: {tcp: {idle: {unit: s, value: 1}}}"), l0 + ".timeout.tcp: must match the listener protocol (http)"},
		{"timeout http on http2", KindVirtualNode, listenerNode("http2", "timeout: {http: {}}"), l0 + ".timeout.http: must match the listener protocol (http2)"},
		{"timeout duration bad", KindVirtualNode, listenerNode("grpc", "timeout: {grpc: {perRequest: {value: 1}}}"), l0 + ".timeout.grpc.perRequest.unit: is required"},
		{"tcp pool", KindVirtualNode, listenerNode("tcp", "connectionPool: {tcp: {maxConnections: 1}}"), ""},
		{"http pool", KindVirtualNode, listenerNode("http", "connectionPool: {http: {maxConnections: 50, maxPendingRequests: 1}}"), ""},
		{"http2 pool", KindVirtualNode, listenerNode("http2", "connectionPool: {http2: {maxRequests: 200}}"), ""},
		{"grpc pool", KindVirtualNode, listenerNode("grpc", "connectionPool: {grpc: {maxRequests: 2147483647}}"), ""},
		{"pool empty", KindVirtualNode, listenerNode("http", "connectionPool: {}"), l0 + ".connectionPool: exactly one of tcp, http, http2 or grpc must be set"},
		{"pool two members", KindVirtualNode, listenerNode("http", "connectionPool: {http: {maxConnections: 1}, http2: {maxRequests: 1}}"), l0 + ".connectionPool: exactly one of tcp, http, http2 or grpc must be set"},
		{"pool protocol mismatch", KindVirtualNode, listenerNode("http", "connectionPool: {tcp: {maxConnections: 1}}"), l0 + ".connectionPool.tcp: must match the listener protocol (http)"},
		{"tcp max connections 0", KindVirtualNode, listenerNode("tcp", "connectionPool: {tcp: {maxConnections: 0}}"), l0 + ".connectionPool.tcp.maxConnections: must be at least 1"},
		{"http max connections missing", KindVirtualNode, listenerNode("http", "connectionPool: {http: {maxPendingRequests: 5}}"), l0 + ".connectionPool.http.maxConnections: is required"},
		{"http max pending 0", KindVirtualNode, listenerNode("http", "connectionPool: {http: {maxConnections: 5, maxPendingRequests: 0}}"), l0 + ".connectionPool.http.maxPendingRequests: must be at least 1"},
		{"http2 max requests missing", KindVirtualNode, listenerNode("http2", "connectionPool: {http2: {}}"), l0 + ".connectionPool.http2.maxRequests: is required"},
		{"grpc max requests 0", KindVirtualNode, listenerNode("grpc", "connectionPool: {grpc: {maxRequests: 0}}"), l0 + ".connectionPool.grpc.maxRequests: must be at least 1"},
	})
}

func TestValidateNodeListenerTLS(t *testing.T) {
	const tls = "spec.listeners[0].tls"
	check := func(fields string) string { return listenerNode("http", "tls: {"+fields+"}") }
	const file = "certificate: {file: {certificateChain: /c.pem, privateKey: /k.pem}}"
	runSpecCases(t, []specCase{
		{"strict file", KindVirtualNode, check("mode: STRICT, " + file), ""},
		{"permissive acm", KindVirtualNode, check("mode: PERMISSIVE, certificate: {acm: {certificateArn: 'arn:aws:acm:eu-west-1:111122223333:certificate/x'}}"), ""},
		{"disabled sds", KindVirtualNode, check("mode: DISABLED, certificate: {sds: {secretName: cert}}"), ""},
		{"mutual", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: [a.local, '*.b.local']}}}"), ""},
		{"mutual sds", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {trust: {sds: {secretName: ca}}}"), ""},
		{"mode missing", KindVirtualNode, check(file), tls + ".mode: is required"},
		{"mode bad", KindVirtualNode, check("mode: ON, " + file), tls + ".mode: must be one of STRICT, PERMISSIVE, DISABLED"},
		{"certificate missing", KindVirtualNode, check("mode: STRICT"), tls + ".certificate: is required"},
		{"certificate empty", KindVirtualNode, check("mode: STRICT, certificate: {}"), tls + ".certificate: exactly one of acm, file or sds must be set"},
		{"certificate two sources", KindVirtualNode, check("mode: STRICT, certificate: {sds: {secretName: a}, file: {certificateChain: /c, privateKey: /k}}"), tls + ".certificate: exactly one of acm, file or sds must be set"},
		{"acm arn missing", KindVirtualNode, check("mode: STRICT, certificate: {acm: {}}"), tls + ".certificate.acm.certificateArn: is required"},
		{"acm arn bad", KindVirtualNode, check("mode: STRICT, certificate: {acm: {certificateArn: my-cert}}"), tls + `.certificate.acm.certificateArn: must be an ARN ("arn:...")`},
		{"file chain missing", KindVirtualNode, check("mode: STRICT, certificate: {file: {privateKey: /k}}"), tls + ".certificate.file.certificateChain: is required"},
		{"file key too long", KindVirtualNode, check("mode: STRICT, certificate: {file: {certificateChain: /c, privateKey: /" + strings.Repeat("k", 255) + "}}"), tls + ".certificate.file.privateKey: must be between 1 and 255 characters"},
		{"sds secret missing", KindVirtualNode, check("mode: STRICT, certificate: {sds: {}}"), tls + ".certificate.sds.secretName: is required"},
		{"trust missing", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {}"), tls + ".validation.trust: is required"},
		// The node listener trust has no acm member: decoding drops it.
		{"trust acm", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {trust: {acm: {certificateAuthorityArns: ['arn:x']}}}"), tls + ".validation.trust: exactly one of file or sds must be set"},
		{"trust file chain missing", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {trust: {file: {}}}"), tls + ".validation.trust.file.certificateChain: is required"},
		{"san match missing", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {" + fileTrust + ", subjectAlternativeNames: {}}"), tls + ".validation.subjectAlternativeNames.match: is required"},
		{"san exact empty", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: []}}}"), tls + ".validation.subjectAlternativeNames.match.exact: is required"},
		{"san too long", KindVirtualNode, check("mode: STRICT, " + file + ", validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: [a, " + strings.Repeat("s", 255) + "]}}}"), tls + ".validation.subjectAlternativeNames.match.exact[1]: must be between 1 and 254 characters"},
	})
}

func TestValidateNodeServiceDiscovery(t *testing.T) {
	const sd = "spec.serviceDiscovery"
	node := func(discovery string) string {
		return "listeners: [{portMapping: {port: 80, protocol: http}}]\nserviceDiscovery: " + discovery
	}
	const cm = "awsCloudMap: {namespaceName: shop.local, serviceName: inventory"
	runSpecCases(t, []specCase{
		{"dns", KindVirtualNode, node("{dns: {hostname: a.local, responseType: ENDPOINTS, ipPreference: IPv4_ONLY}}"), ""},
		{"dns load balancer", KindVirtualNode, node("{dns: {hostname: a.local, responseType: LOADBALANCER}}"), ""},
		{"cloud map", KindVirtualNode, node("{" + cm + ", attributes: [{key: 'a!~', value: v}], ipPreference: IPv6_ONLY}}"), ""},
		{"empty", KindVirtualNode, node("{}"), sd + ": exactly one of dns or awsCloudMap must be set"},
		{"both", KindVirtualNode, node("{dns: {hostname: a.local}, " + cm + "}}"), sd + ": exactly one of dns or awsCloudMap must be set"},
		{"dns hostname missing", KindVirtualNode, node("{dns: {}}"), sd + ".dns.hostname: is required"},
		{"dns response type bad", KindVirtualNode, node("{dns: {hostname: a.local, responseType: ROUNDROBIN}}"), sd + ".dns.responseType: must be one of LOADBALANCER, ENDPOINTS"},
		{"dns ip preference bad", KindVirtualNode, node("{dns: {hostname: a.local, ipPreference: ANY}}"), sd + ".dns.ipPreference: must be one of IPv6_PREFERRED, IPv4_PREFERRED, IPv4_ONLY, IPv6_ONLY"},
		{"cloud map names missing", KindVirtualNode, node("{awsCloudMap: {}}"), sd + ".awsCloudMap.namespaceName: is required; " + sd + ".awsCloudMap.serviceName: is required"},
		{"cloud map namespace too long", KindVirtualNode, node("{awsCloudMap: {namespaceName: " + strings.Repeat("n", 1025) + ", serviceName: s}}"), sd + ".awsCloudMap.namespaceName: must be between 1 and 1024 characters"},
		{"cloud map attribute key space", KindVirtualNode, node("{" + cm + ", attributes: [{key: 'a b', value: v}]}}"), sd + ".awsCloudMap.attributes[0].key: must match ^[a-zA-Z0-9!-~]+$"},
		{"cloud map attribute key too long", KindVirtualNode, node("{" + cm + ", attributes: [{key: " + strings.Repeat("k", 256) + ", value: v}]}}"), sd + ".awsCloudMap.attributes[0].key: must be between 1 and 255 characters"},
		{"cloud map attribute value missing", KindVirtualNode, node("{" + cm + ", attributes: [{key: k, value: ''}]}}"), sd + ".awsCloudMap.attributes[0].value: is required"},
		{"cloud map ip preference bad", KindVirtualNode, node("{" + cm + ", ipPreference: V4}}"), sd + ".awsCloudMap.ipPreference: must be one of IPv6_PREFERRED, IPv4_PREFERRED, IPv4_ONLY, IPv6_ONLY"},
	})
}

func TestValidateNodeBackends(t *testing.T) {
	const b = "spec.backends"
	runSpecCases(t, []specCase{
		{"backends", KindVirtualNode, "backends: [{virtualService: {virtualServiceName: a.local}}, {virtualService: {virtualServiceName: b.local}}]", ""},
		{"virtual service missing", KindVirtualNode, "backends: [{}]", b + "[0].virtualService: is required"},
		{"name missing", KindVirtualNode, "backends: [{virtualService: {}}]", b + "[0].virtualService.virtualServiceName: is required"},
		{"name not a hostname", KindVirtualNode, "backends: [{virtualService: {virtualServiceName: color_shop}}]", b + "[0].virtualService.virtualServiceName: must be a hostname: dot-separated labels of 1 to 63 letters, digits or '-', not starting or ending with '-'"},
		{"duplicate", KindVirtualNode, "backends: [{virtualService: {virtualServiceName: a.local}}, {virtualService: {virtualServiceName: b.local}}, {virtualService: {virtualServiceName: a.local}}]", b + "[2].virtualService.virtualServiceName: must be unique (same as backends[0])"},
	})
}

func TestValidateClientPolicy(t *testing.T) {
	const p = "spec.backends[0].virtualService.clientPolicy.tls"
	const cert = "certificate: {file: {certificateChain: /c.pem, privateKey: /k.pem}}"
	runSpecCases(t, []specCase{
		{"empty policy", KindVirtualNode, backendNode("{}"), ""},
		{"file trust", KindVirtualNode, backendNode("{tls: {enforce: true, ports: [1, 65535], " + cert + ", validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: [a.local]}}}}}"), ""},
		{"acm trust", KindVirtualNode, backendNode("{tls: {validation: {trust: {acm: {certificateAuthorityArns: ['arn:a', 'arn:b', 'arn:c']}}}}}"), ""},
		{"sds trust and certificate", KindVirtualNode, backendNode("{tls: {certificate: {sds: {secretName: me}}, validation: {trust: {sds: {secretName: ca}}}}}"), ""},
		{"wildcard san not enforced", KindVirtualNode, backendNode("{tls: {enforce: false, validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: ['*.a.local']}}}}}"), ""},
		{"validation missing", KindVirtualNode, backendNode("{tls: {}}"), p + ".validation: is required"},
		{"port 0", KindVirtualNode, backendNode("{tls: {ports: [80, 0], validation: {" + fileTrust + "}}}"), p + ".ports[1]: must be between 1 and 65535"},
		// A client certificate has no acm member: decoding drops it.
		{"certificate acm", KindVirtualNode, backendNode("{tls: {certificate: {acm: {certificateArn: 'arn:x'}}, validation: {" + fileTrust + "}}}"), p + ".certificate: exactly one of file or sds must be set"},
		{"trust empty", KindVirtualNode, backendNode("{tls: {validation: {trust: {}}}}"), p + ".validation.trust: exactly one of acm, file or sds must be set"},
		{"acm arns missing", KindVirtualNode, backendNode("{tls: {validation: {trust: {acm: {}}}}}"), p + ".validation.trust.acm.certificateAuthorityArns: is required"},
		{"acm arns empty", KindVirtualNode, backendNode("{tls: {validation: {trust: {acm: {certificateAuthorityArns: []}}}}}"), p + ".validation.trust.acm.certificateAuthorityArns: is required"},
		{"acm arns 4", KindVirtualNode, backendNode("{tls: {validation: {trust: {acm: {certificateAuthorityArns: ['arn:a', 'arn:b', 'arn:c', 'arn:d']}}}}}"), p + ".validation.trust.acm.certificateAuthorityArns: must have between 1 and 3 items"},
		{"acm arn bad", KindVirtualNode, backendNode("{tls: {validation: {trust: {acm: {certificateAuthorityArns: [ca]}}}}}"), p + `.validation.trust.acm.certificateAuthorityArns[0]: must be an ARN ("arn:...")`},
		{"file trust too long", KindVirtualNode, backendNode("{tls: {validation: {trust: {file: {certificateChain: " + strings.Repeat("c", 256) + "}}}}}"), p + ".validation.trust.file.certificateChain: must be between 1 and 255 characters"},
		{"sds trust secret missing", KindVirtualNode, backendNode("{tls: {validation: {trust: {sds: {}}}}}"), p + ".validation.trust.sds.secretName: is required"},
		{"wildcard san enforced by default", KindVirtualNode, backendNode("{tls: {validation: {" + fileTrust + ", subjectAlternativeNames: {match: {exact: ['*.a.local']}}}}}"), p + ".validation.subjectAlternativeNames.match.exact[0]: must not contain a wildcard when the client policy enforces TLS"},
		{"backend defaults", KindVirtualNode, "backendDefaults: {clientPolicy: {tls: {validation: {" + fileTrust + "}}}}", ""},
		{"backend defaults validation missing", KindVirtualNode, "backendDefaults: {clientPolicy: {tls: {enforce: true}}}", "spec.backendDefaults.clientPolicy.tls.validation: is required"},
		{"backend defaults empty", KindVirtualNode, "backendDefaults: {}", ""},
	})
}

func TestValidateLogging(t *testing.T) {
	const f = "spec.logging.accessLog.file"
	runSpecCases(t, []specCase{
		{"no access log", KindVirtualNode, "logging: {}", ""},
		{"path only", KindVirtualNode, "logging: {accessLog: {file: {path: /dev/stdout}}}", ""},
		{"text", KindVirtualNode, "logging: {accessLog: {file: {path: /dev/stdout, format: {text: '%START_TIME%'}}}}", ""},
		{"json", KindVirtualNode, "logging: {accessLog: {file: {path: /dev/stdout, format: {json: [{key: a, value: b}]}}}}", ""},
		{"file missing", KindVirtualNode, "logging: {accessLog: {}}", "spec.logging.accessLog.file: is required"},
		{"path missing", KindVirtualNode, "logging: {accessLog: {file: {}}}", f + ".path: is required"},
		{"path too long", KindVirtualNode, "logging: {accessLog: {file: {path: /" + strings.Repeat("p", 255) + "}}}", f + ".path: must be between 1 and 255 characters"},
		{"format empty", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {}}}}", f + ".format: exactly one of text or json must be set"},
		{"format both", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {text: a, json: [{key: a, value: b}]}}}}", f + ".format: exactly one of text or json must be set"},
		{"text empty", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {text: ''}}}}", f + ".format.text: is required"},
		{"text too long", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {text: " + strings.Repeat("t", 1001) + "}}}}", f + ".format.text: must be between 1 and 1000 characters"},
		{"json empty", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {json: []}}}}", f + ".format: exactly one of text or json must be set"},
		{"json key missing", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {json: [{key: '', value: b}]}}}}", f + ".format.json[0].key: is required"},
		{"json value too long", KindVirtualNode, "logging: {accessLog: {file: {path: /a, format: {json: [{key: a, value: " + strings.Repeat("v", 101) + "}]}}}}", f + ".format.json[0].value: must be between 1 and 100 characters"},
	})
}
