// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"net/netip"
	"time"
)

// These are the types of the loader's API. They were written first, so that
// the agent could be built against them while the programs were written; the
// loader (datapath_linux.go) implements the methods that take and return
// them. They hold no kernel objects and build on any OS.

// Config configures the datapath.
type Config struct {
	// CgroupPath is the cgroup v2 directory the programs attach to (required).
	CgroupPath string
	// PinPath is the bpffs directory of the pinned maps and links (required).
	PinPath string
	// ProxyAddr is the L7 redirect target, the node proxy's listener. Zero:
	// connects to L7 services are refused with ECONNREFUSED and counted.
	ProxyAddr netip.AddrPort
	// ProxyCgroupID exempts the proxy's own connections from redirection
	// (0: none).
	ProxyCgroupID uint64
	// ProxyMark exempts sockets carrying this SO_MARK (0: none).
	ProxyMark uint32
	// DNSAddr is the agent's resolver; zero turns DNS redirection off.
	DNSAddr netip.AddrPort
	// TelemetryInterval is how often long connections are reported
	// (default 10s).
	TelemetryInterval time.Duration
	// Accelerate turns on same-node sk_msg acceleration (off by default):
	// TCP connections whose both ends are this host's, in one network
	// namespace, and seen by the programs (see the package documentation)
	// skip the TCP/IP stack. Needs Linux 6.10 (sockmap links).
	Accelerate bool
}

// Protocol is a transport protocol.
type Protocol uint8

// Protocols.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// Mode says how a service port is handled.
type Mode uint8

// Modes.
const (
	// ModeL4 balances connects over the backends in the kernel.
	ModeL4 Mode = 1
	// ModeL7 redirects connects to the node proxy.
	ModeL7 Mode = 2
)

// Backend is one endpoint of an L4 service with its weight.
type Backend struct {
	Addr   netip.AddrPort
	Weight uint32
}

// Service is one service address and port.
type Service struct {
	ID       uint32
	Addr     netip.Addr
	Port     uint16
	Proto    Protocol
	Mode     Mode
	Backends []Backend
}

// Workload is a meshed cgroup.
type Workload struct {
	CgroupID uint64
	ID       uint32
	MeshID   uint32
	DropAll  bool
}

// EgressRule allows a destination under DROP_ALL. Port 0 means any port.
type EgressRule struct {
	MeshID uint32
	Prefix netip.Prefix
	Port   uint16
}

// State is the whole desired content of the maps.
type State struct {
	Services  []Service
	Workloads []Workload
	Egress    []EgressRule
}

// Changes counts what a Reconcile changed.
type Changes struct {
	ServicesUpserted, ServicesDeleted   int
	WorkloadsUpserted, WorkloadsDeleted int
	EgressUpserted, EgressDeleted       int
}

// Counters are the datapath's decision counters, summed over CPUs. Each
// counts calls (connect, sendmsg, recvmsg, getpeername) or, for the
// telemetry fields, sockops callbacks.
type Counters struct {
	// RedirectedL7 counts connects to L7 services rewritten to the proxy.
	RedirectedL7 uint64
	// BalancedL4 counts connects and datagrams rewritten to a backend.
	BalancedL4 uint64
	// DeniedEgress counts connects and datagrams that DROP_ALL refused
	// with EPERM.
	DeniedEgress uint64
	// NoBackend counts connects and datagrams to L4 services without
	// backends, refused with ECONNREFUSED.
	NoBackend uint64
	// DNSRedirected counts port-53 connects and datagrams rewritten to
	// the agent's resolver.
	DNSRedirected uint64
	// RingbufFull counts telemetry records lost because the ring buffer
	// was full.
	RingbufFull uint64
	// L7NoProxy counts connects to L7 services refused with ECONNREFUSED
	// because no proxy is configured.
	L7NoProxy uint64
	// ProxyExempt counts connects and datagrams of the proxy (by cgroup
	// or mark) to service addresses, left untouched.
	ProxyExempt uint64
	// EgressAllowed counts destinations that DROP_ALL let through because
	// an egress rule allows them.
	EgressAllowed uint64
	// RevNAT counts recvmsg and getpeername answers rewritten back to the
	// address the application asked for.
	RevNAT uint64
	// FamilyMismatch counts IPv4 sockets whose target was IPv6, refused
	// with EHOSTUNREACH.
	FamilyMismatch uint64
	// OrigDstFailed counts original-destination records that could not be
	// written (the proxy will not find them).
	OrigDstFailed uint64
	// StorageFailed counts sockets of meshed workloads that got no socket
	// storage (no telemetry, no original destination, no UDP stickiness).
	StorageFailed uint64
	// Events counts telemetry records written to the ring buffer.
	Events uint64
	// UDPSticky counts datagrams sent to the backend their socket already
	// used.
	UDPSticky uint64
	// AccelInserted counts sockets inserted into the acceleration
	// sockhash (Config.Accelerate): connecting sockets of meshed
	// workloads and of the proxy, and the accepted peers of those.
	AccelInserted uint64
	// AccelInsertFailed counts insertions that failed (sockhash full, or
	// the key already present); the connection then takes the TCP path.
	AccelInsertFailed uint64
	// AccelRedirected counts sends (sk_msg calls) redirected straight
	// into the same-node peer's receive queue.
	AccelRedirected uint64
	// AccelPassed counts sends of inserted sockets left to TCP: the peer
	// was not in the sockhash (not a same-node leg we see, not inserted
	// yet at the first send, or closed).
	AccelPassed uint64
	// AccelBytes counts the bytes redirected.
	AccelBytes uint64
	// AccelRxFailed counts failures to record redirected bytes for
	// telemetry (or to create that record, which also keeps the peer out
	// of the sockhash).
	AccelRxFailed uint64
}

// ConnEvent is one TCP connection report from sockops.
type ConnEvent struct {
	Cookie        uint64
	WorkloadID    uint32
	ServiceID     uint32
	Src, Dst      netip.AddrPort
	BytesSent     uint64
	BytesReceived uint64
	SRTT          time.Duration
	Retransmits   uint32
	Duration      time.Duration
	Closed        bool
}
