// SPDX-License-Identifier: Apache-2.0

// Package meshbed runs a whole weft mesh on simulated nodes (package
// test/netsim): the real weft-controller, weft-agent and weft-proxy
// binaries, pods with real servers and clients, weftctl, and the scraping
// of the nodes' metrics. The end-to-end tests (test/e2e) and `make demo`
// (test/demo) share it; the demo hands it a netsim.Standalone instead of a
// testing.T.
//
// # Topology
//
//	 fabric netns: bridge 10.220.0.254/24
//	   |                          |                          |
//	 node-a 10.220.0.1          node-b 10.220.0.2          ctrl 10.220.0.3
//	+--------------------+     +--------------------+     +------------------+
//	| weft-agent         |     | weft-agent         |     | weft-controller  |
//	|  DNS :53, 9465     |     |  DNS :53, 9465     |     |  API  :7480      |
//	| weft-proxy         |     | weft-proxy         |     |  xDS  :7481      |
//	|  :15001, :15008,   |     |  :15001, :15008,   |     | weftctl          |
//	|  15090             |     |  15090             |     |                  |
//	|  pods (AddPod)     |     |  pods (AddPod)     |     +------------------+
//	+--------------------+     +--------------------+
//
// New builds the three nodes and the token file; AddPod adds the meshed
// pods, each registered by its node's agent at its own address;
// StartController, Weftctl and StartServer prepare the mesh; StartNodes
// starts each node's agent (host network, a cgroup of its own) and then its
// proxy (host network, the agent's proxy.cgroupPath, so that its upstream
// connections are never redirected), and waits until every proxy has
// subscribed to the configuration of its node's pods. test/e2e/doc.go tells
// the whole story.
//
// StartGateway runs a weft-proxy serving a virtual gateway on a node (no
// node state, the gateway's listeners bound on the node's address);
// DNSServers, set before StartController, points the controller's DNS
// discovery at a DNS server of the test's.
//
// Programs is the table of workload programs (servers and clients) that
// the test binary or the demo hands to netsim.Main or netsim.RunMain.
//
// Everything belongs to the testing.TB given to New: processes are stopped
// by pid at its cleanup, and netsim removes namespaces, mounts and cgroups.
package meshbed
