// SPDX-License-Identifier: Apache-2.0

// Package agent is weft-agent: the node component that keeps this node's
// eBPF datapath (package agent/datapath) equal to the desired state, answers
// DNS for mesh names (package agent/dns), and exports the datapath's
// decisions and kernel TCP telemetry as Prometheus metrics.
//
// # Desired state
//
// The desired state is the node state (weft.nodeapi.v1.NodeState, read as
// protojson from Config.StateFile, or received from the controller over
// ADS with Config.XDS.Server) merged with the workloads that the
// WorkloadSources discover. With ADS the agent also registers its merged
// workloads with the controller's endpoint registry and renews the lease
// (pkg/xdsclient), and keeps the last node state in Config.XDS.CacheFile to
// start from while the controller is down; a node state that fails the
// checks below is NACKed. The agent polls the file's size, modification
// time and inode every second; a changed file is decoded strictly and
// checked as a whole, and a file that fails is logged and ignored: the last
// good state stays in force. Workloads are joined by cgroup path, and a
// discovered workload wins over the state file's (it keeps the file's id).
// A workload whose cgroup does not exist is left out until it appears; one
// whose mesh is not in the node state is left out with a warning.
//
// The translation into a datapath.State is pure (translator.translate):
// each address of a service times each of its ports is one datapath
// service, with an id that stays the same for as long as that address and
// port exist; L4 backends are parsed from "ip:port" and split by address
// family, and weight-0 backends (drained targets) are left out; workloads
// take their mesh's id and egress filter; every DROP_ALL mesh gets its
// allowed destinations and the agent's own DNS address as egress rules.
// Service names and their addresses become the DNS records.
//
// # Lifecycle
//
// New checks the Config, binds the HTTP listener and takes ownership of
// Deps.Datapath; NewDefault does the same with the real datapath and DNS
// responder. Run starts, under one errgroup, the watcher (state file and
// sources), the reconciler, the DNS responder, the telemetry reader and the
// HTTP server. The reconciler waits for a change (debounced), then passes
// the whole datapath state to Datapath.Reconcile, which changes only what
// differs; it also reconciles once a minute to repair drift and retries a
// failed reconcile with backoff. The agent is ready (/readyz) after its
// first successful reconcile. Before a good state file was read it applies
// nothing at all: an empty state would flush what a previous agent left.
//
// # Static stability
//
// When Run returns, or the process dies, the datapath's programs stay
// attached and its maps stay pinned under Config.PinPath (default
// /sys/fs/bpf/weft): the datapath's Close releases the agent's handles
// without detaching or unpinning. Workloads keep connecting with the last
// state while no agent runs, and the next agent adopts the pinned objects
// and reconciles them by difference, never flushing. Removing weft from a
// node is therefore an explicit step (deleting the pin directory), not a
// side effect of stopping the agent.
//
// # HTTP
//
// Config.MetricsListen (default 127.0.0.1:9465) serves /metrics (the agent's
// own registry), /healthz, /readyz, /debug/datapath (the loader's Dump) and
// /debug/state (the applied desired state as JSON). weftctl datapath dump
// and weftctl datapath state print the last two.
//
// # Metrics
//
// The datapath's decision counters are read at scrape time by a custom
// collector. Connection reports from the datapath's ring buffer are
// aggregated per (mesh, source virtual node, destination virtual service),
// named from the applied state ("unknown" when an id is not in it), with at
// most Config.Telemetry.MaxLabelSets label sets; further ones are counted
// under "other". See docs/agent.md for the list.
//
// # Adding a Kubernetes workload source
//
// Workload discovery sits behind WorkloadSource, which the agent polls once
// a second. VMSource serves the configuration's VM workloads. A Kubernetes
// source (planned, agent/k8s) will watch the pods of this node with a
// field-selected informer (spec.nodeName), join a pod to a virtual node by
// the virtual nodes' podSelector (from the node state, or the App Mesh
// annotations), and find the pod's cgroup under the cgroup root from the pod
// UID and QoS class (kubepods.slice/kubepods-<qos>.slice/
// kubepods-<qos>-pod<uid>.slice with the systemd driver, kubepods/<qos>/
// pod<uid> with cgroupfs; Guaranteed pods sit directly under kubepods),
// reading its id with CgroupID. Its Workloads method answers from the informer's cache, so
// polling stays cheap; if a second of latency between pod start and meshing
// is too much, the interface gains an optional Changed() <-chan struct{}
// that the watcher selects on. NewDefault then passes
// Deps.Sources = {VMSource, k8s source}: configured VM workloads still win.
package agent
