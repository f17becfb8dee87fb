// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Defaults of Config.
const (
	// DefaultPinPath is where the datapath pins its maps and links.
	DefaultPinPath = "/sys/fs/bpf/weft"
	// DefaultProxyAddr is the node proxy's listener, on the node-local
	// dummy interface.
	DefaultProxyAddr = "169.254.100.1:15001"
	// DefaultDNSListen is where the agent answers DNS.
	DefaultDNSListen = "169.254.100.2:53"
	// DefaultMetricsListen serves /metrics, /healthz, /readyz and /debug/.
	DefaultMetricsListen = "127.0.0.1:9465"
	// DefaultMaxLabelSets caps the TCP telemetry label sets.
	DefaultMaxLabelSets = 512
	// DefaultMaxConnections caps the connections whose last report the
	// telemetry keeps.
	DefaultMaxConnections = 65536
)

// Config configures the agent. It is read from a YAML or JSON file with
// these field names (LoadConfigFile); flags of weft-agent override some of
// them. SetDefaults fills what is left empty, Validate checks the result.
type Config struct {
	// NodeName is this node's name; a state file for another node is
	// refused. Default: the host name.
	NodeName string `json:"nodeName"`
	// CgroupRoot is the cgroup v2 directory the datapath attaches to;
	// workload cgroup paths are relative to it. Default: the cgroup2 mount
	// found in /proc/self/mountinfo.
	CgroupRoot string `json:"cgroupRoot"`
	// PinPath is the bpffs directory of the pinned maps and links. Default
	// /sys/fs/bpf/weft. When it lies under /sys/fs/bpf and no bpffs is
	// mounted there, the agent mounts one.
	PinPath string `json:"pinPath"`
	// StateFile is the node state (protojson weft.nodeapi.v1.NodeState) the
	// agent applies; it is reread when it changes. Either StateFile or
	// XDS.Server is required.
	StateFile string `json:"stateFile"`
	// XDS takes the node state from the controller over ADS, and registers
	// this node's workloads with the controller's endpoint registry.
	XDS XDSConfig `json:"xds"`
	// MetricsListen serves /metrics, /healthz, /readyz and /debug/.
	// Default 127.0.0.1:9465.
	MetricsListen string `json:"metricsListen"`
	// Proxy says where L7 traffic goes and how the proxy's own connections
	// are recognised.
	Proxy ProxyConfig `json:"proxy"`
	// DNS configures the agent's resolver.
	DNS DNSConfig `json:"dns"`
	// Telemetry bounds the TCP telemetry.
	Telemetry TelemetryConfig `json:"telemetry"`
	// Accelerate turns on same-node sk_msg acceleration (off by default).
	Accelerate bool `json:"accelerate"`
	// KeepNodeSysctls leaves the node's network settings alone. By default
	// the agent sets net.ipv4.tcp_migrate_req=1 at start (SetNodeSysctls),
	// so that a proxy hand-over resets no queued connection.
	KeepNodeSysctls bool `json:"keepNodeSysctls"`
	// Workloads are the VM workloads: cgroups (systemd services, say) joined
	// to virtual nodes by this file. They win over the state file's
	// workloads of the same cgroup.
	Workloads []VMWorkload `json:"workloads"`
}

// DefaultXDSCacheFile is where the agent keeps the last node state it got
// from the controller.
const DefaultXDSCacheFile = "/var/lib/weft/agent-xds-cache.json"

// XDSConfig connects the agent to the controller.
type XDSConfig struct {
	// Server is the controller's xDS address (host:port). Setting it makes
	// the controller the source of the node state, instead of StateFile.
	Server string `json:"server"`
	// NodeID is this node's id on ADS and in the registry. Default:
	// NodeName.
	NodeID string `json:"nodeID"`
	// CacheFile keeps the last node state received, so that the agent
	// starts with it while the controller is down. Default
	// /var/lib/weft/agent-xds-cache.json.
	CacheFile string `json:"cacheFile"`
	// TokenFile holds the bearer token presented to the controller (its
	// first line); empty sends none.
	TokenFile string `json:"tokenFile"`
	// NodeAddress is this node's address, registered as the address of the
	// configuration's VM workloads (they serve on the host's network).
	// Required with Server when a configured workload has no Addresses.
	NodeAddress string `json:"nodeAddress"`
}

// ProxyConfig is the node proxy as the datapath sees it.
type ProxyConfig struct {
	// Address is the proxy's listener, the target of L7 redirection.
	// Default 169.254.100.1:15001.
	Address string `json:"address"`
	// CgroupPath is the proxy's cgroup, relative to CgroupRoot; its
	// connections are not redirected. The cgroup id is read once at start.
	CgroupPath string `json:"cgroupPath"`
	// Mark exempts sockets carrying this SO_MARK from redirection (0: none).
	Mark uint32 `json:"mark"`
	// TunnelAddress is where the node's proxy serves its tunnel listener
	// (weft-proxy -tunnel-listen), as other nodes reach it: ip:port. The
	// agent registers it with the node's workloads, so that callers on
	// other nodes reach the workloads whose listeners terminate TLS
	// through it. Empty: the proxy serves no tunnel.
	TunnelAddress string `json:"tunnelAddress"`
}

// DNSConfig configures the agent's DNS responder.
type DNSConfig struct {
	// Listen is the UDP and TCP address the agent answers on; meshed
	// workloads' DNS is redirected there. Default 169.254.100.2:53.
	Listen string `json:"listen"`
	// Upstreams answer every name that is not a mesh service ("ip" or
	// "ip:port", tried in order). Default: the nameservers of
	// /etc/resolv.conf, leaving out the agent's own address.
	Upstreams []string `json:"upstreams"`
}

// TelemetryConfig bounds the TCP telemetry.
type TelemetryConfig struct {
	// Interval is how often the datapath reports long connections
	// (default: the datapath's, 10s).
	Interval Duration `json:"interval"`
	// MaxLabelSets caps the (mesh, source virtual node, destination virtual
	// service) label sets; connections beyond it are counted under "other".
	// Default 512.
	MaxLabelSets int `json:"maxLabelSets"`
	// MaxConnections caps the open connections whose last report is kept to
	// turn periodic reports into increments. Default 65536.
	MaxConnections int `json:"maxConnections"`
}

// VMWorkload joins a cgroup to a virtual node.
type VMWorkload struct {
	// CgroupPath is relative to the cgroup root
	// ("system.slice/orders.service").
	CgroupPath  string `json:"cgroupPath"`
	Mesh        string `json:"mesh"`
	VirtualNode string `json:"virtualNode"`
	// ListenerPorts are the ports the workload serves on.
	ListenerPorts []uint32 `json:"listenerPorts"`
	// Addresses, when set, are the workload's own IP addresses, registered
	// as its endpoint addresses instead of XDS.NodeAddress: a workload with
	// a network of its own (a pod's network namespace, say).
	Addresses []string `json:"addresses,omitempty"`
	// Attributes are registered with the workload: its Cloud Map
	// attributes (a virtual node whose serviceDiscovery.awsCloudMap lists
	// attributes takes only the workloads that carry all of them), as the
	// labels of a pod would be.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Duration is a time.Duration written as a string ("10s") in the file.
type Duration time.Duration

// UnmarshalJSON reads "10s" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string such as \"10s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// LoadConfigFile reads a YAML or JSON configuration file into cfg, refusing
// unknown fields so that a misspelt setting is never silently ignored.
func LoadConfigFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(b, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func decodeConfig(b []byte, cfg *Config) error {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one document")
	}
	return nil
}

// SetDefaults fills the empty fields from the host (the host name, the
// cgroup2 mount of /proc/self/mountinfo) and the constant defaults.
func (c *Config) SetDefaults() error {
	var errs []error
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			errs = append(errs, fmt.Errorf("nodeName: default to the host name: %w", err))
		}
		c.NodeName = h
	}
	if c.CgroupRoot == "" {
		f, err := os.Open("/proc/self/mountinfo")
		if err == nil {
			c.CgroupRoot, err = cgroup2Mount(f)
			_ = f.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cgroupRoot: find the cgroup2 mount: %w", err))
		}
	}
	c.setConstDefaults()
	return errors.Join(errs...)
}

// setConstDefaults fills the defaults that do not depend on the host.
func (c *Config) setConstDefaults() {
	if c.PinPath == "" {
		c.PinPath = DefaultPinPath
	}
	if c.MetricsListen == "" {
		c.MetricsListen = DefaultMetricsListen
	}
	if c.Proxy.Address == "" {
		c.Proxy.Address = DefaultProxyAddr
	}
	if c.DNS.Listen == "" {
		c.DNS.Listen = DefaultDNSListen
	}
	if c.Telemetry.MaxLabelSets == 0 {
		c.Telemetry.MaxLabelSets = DefaultMaxLabelSets
	}
	if c.Telemetry.MaxConnections == 0 {
		c.Telemetry.MaxConnections = DefaultMaxConnections
	}
	if c.XDS.Server != "" {
		if c.XDS.NodeID == "" {
			c.XDS.NodeID = c.NodeName
		}
		if c.XDS.CacheFile == "" {
			c.XDS.CacheFile = DefaultXDSCacheFile
		}
	}
}

// Validate checks the configuration after SetDefaults and reports every
// problem at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeName == "" {
		add("nodeName: is required")
	}
	if c.CgroupRoot == "" || !filepath.IsAbs(c.CgroupRoot) {
		add("cgroupRoot: want an absolute path, got %q", c.CgroupRoot)
	}
	if c.PinPath == "" || !filepath.IsAbs(c.PinPath) {
		add("pinPath: want an absolute path, got %q", c.PinPath)
	}
	switch {
	case c.StateFile == "" && c.XDS.Server == "":
		add("stateFile: is required (the node state to apply), unless xds.server names the controller")
	case c.StateFile != "" && c.XDS.Server != "":
		add("stateFile and xds.server: choose one source of the node state")
	}
	if c.XDS.Server != "" {
		if _, _, err := net.SplitHostPort(c.XDS.Server); err != nil {
			add("xds.server: %w", err)
		}
		if c.XDS.NodeAddress == "" && slices.ContainsFunc(c.Workloads, func(w VMWorkload) bool { return len(w.Addresses) == 0 }) {
			add("xds.nodeAddress: is required to register the endpoints of the configured workloads without addresses")
		}
	}
	if c.XDS.NodeAddress != "" {
		if a, err := netip.ParseAddr(c.XDS.NodeAddress); err != nil || a.IsUnspecified() {
			add("xds.nodeAddress: want this node's IP address, got %q", c.XDS.NodeAddress)
		}
	}
	if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		add("metricsListen: %w", err)
	}
	proxy, err := netip.ParseAddrPort(c.Proxy.Address)
	if err != nil {
		add("proxy.address: %w", err)
	} else if proxy.Addr().IsUnspecified() || proxy.Port() == 0 {
		add("proxy.address: %s is not an address a connect can be redirected to", proxy)
	}
	if c.Proxy.TunnelAddress != "" {
		if t, err := netip.ParseAddrPort(c.Proxy.TunnelAddress); err != nil || t.Addr().IsUnspecified() || t.Port() == 0 {
			add("proxy.tunnelAddress: want the proxy's tunnel listener as other nodes reach it (ip:port), got %q", c.Proxy.TunnelAddress)
		}
	}
	if c.Proxy.CgroupPath != "" {
		if err := checkCgroupPath(c.Proxy.CgroupPath); err != nil {
			add("proxy.cgroupPath: %w", err)
		}
	}
	dnsAddr, err := netip.ParseAddrPort(c.DNS.Listen)
	switch {
	case err != nil:
		add("dns.listen: %w", err)
	case dnsAddr.Addr().IsUnspecified() || dnsAddr.Port() == 0:
		add("dns.listen: %s is not an address a query can be redirected to", dnsAddr)
	case dnsAddr == proxy:
		add("dns.listen: is the proxy's address %s", proxy)
	}
	for i, u := range c.DNS.Upstreams {
		ap, err := ParseUpstream(u)
		if err != nil {
			add("dns.upstreams[%d]: %w", i, err)
		} else if ap == dnsAddr {
			add("dns.upstreams[%d]: %s is the agent's own listener", i, u)
		}
	}
	if c.Telemetry.Interval < 0 {
		add("telemetry.interval: must not be negative")
	}
	if c.Telemetry.MaxLabelSets < 1 {
		add("telemetry.maxLabelSets: want at least 1, got %d", c.Telemetry.MaxLabelSets)
	}
	if c.Telemetry.MaxConnections < 1 {
		add("telemetry.maxConnections: want at least 1, got %d", c.Telemetry.MaxConnections)
	}
	seen := map[string]int{}
	for i, w := range c.Workloads {
		name := fmt.Sprintf("workloads[%d]", i)
		if err := checkCgroupPath(w.CgroupPath); err != nil {
			add("%s.cgroupPath: %w", name, err)
		} else if j, dup := seen[path.Clean(w.CgroupPath)]; dup {
			add("%s.cgroupPath: %s is also workloads[%d]", name, w.CgroupPath, j)
		} else {
			seen[path.Clean(w.CgroupPath)] = i
		}
		if w.Mesh == "" {
			add("%s.mesh: is required", name)
		}
		if w.VirtualNode == "" {
			add("%s.virtualNode: is required", name)
		}
		for _, p := range w.ListenerPorts {
			if p == 0 || p > 65535 {
				add("%s.listenerPorts: %d is not a port", name, p)
			}
		}
		for _, a := range w.Addresses {
			if ip, err := netip.ParseAddr(a); err != nil || ip.IsUnspecified() {
				add("%s.addresses: want the workload's IP address, got %q", name, a)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(w.Attributes)) {
			if err := appmesh.CheckCloudMapAttribute(k, w.Attributes[k]); err != nil {
				add("%s.attributes[%q]: %v", name, k, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkCgroupPath accepts a relative, clean path that stays inside the
// cgroup root.
func checkCgroupPath(p string) error {
	switch {
	case p == "":
		return errors.New("is required")
	case path.IsAbs(p):
		return fmt.Errorf("%q must be relative to the cgroup root", p)
	case path.Clean(p) == "." || path.Clean(p) == ".." || strings.HasPrefix(path.Clean(p), "../"):
		return fmt.Errorf("%q leaves the cgroup root", p)
	}
	return nil
}

// ParseUpstream reads a DNS upstream, "ip" or "ip:port" (port 53 by default;
// IPv6 with a port in brackets).
func ParseUpstream(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want ip or ip:port, got %q", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// cgroup2Mount returns the mount point of the first cgroup2 file system in a
// /proc/self/mountinfo listing.
func cgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fstype := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fstype) == 0 || fstype[0] != "cgroup2" {
			continue
		}
		return unescapeMountinfo(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
