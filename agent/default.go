// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weft-mesh/weft/agent/datapath"
)

// DatapathConfig derives the datapath loader's configuration from cfg: the
// cgroup root and pin path, the proxy's address and exemptions (its cgroup
// id is read now: a proxy whose cgroup is recreated needs an agent restart,
// which a socket mark does not), the DNS address and the telemetry interval.
func DatapathConfig(cfg Config) (datapath.Config, error) {
	cfg.setConstDefaults()
	proxy, err := netip.ParseAddrPort(cfg.Proxy.Address)
	if err != nil {
		return datapath.Config{}, fmt.Errorf("proxy.address: %w", err)
	}
	dns, err := netip.ParseAddrPort(cfg.DNS.Listen)
	if err != nil {
		return datapath.Config{}, fmt.Errorf("dns.listen: %w", err)
	}
	dc := datapath.Config{
		CgroupPath:        cfg.CgroupRoot,
		PinPath:           cfg.PinPath,
		ProxyAddr:         netip.AddrPortFrom(proxy.Addr().Unmap(), proxy.Port()),
		ProxyMark:         cfg.Proxy.Mark,
		DNSAddr:           netip.AddrPortFrom(dns.Addr().Unmap(), dns.Port()),
		TelemetryInterval: time.Duration(cfg.Telemetry.Interval),
		Accelerate:        cfg.Accelerate,
	}
	if cfg.Proxy.CgroupPath != "" {
		dc.ProxyCgroupID, err = CgroupID(filepath.Join(cfg.CgroupRoot, filepath.FromSlash(path.Clean(cfg.Proxy.CgroupPath))))
		if err != nil {
			return datapath.Config{}, fmt.Errorf("proxy cgroup: %w", err)
		}
	}
	return dc, nil
}

// NewDefault builds the agent with its real collaborators: it makes the
// node's network settings (SetNodeSysctls, unless cfg.KeepNodeSysctls),
// mounts bpffs if needed (MountBPFFS), loads or adopts the datapath (NewDatapath), and
// creates the DNS responder (NewDNS). cfg should have been through
// SetDefaults.
func NewDefault(cfg Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.setConstDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if !cfg.KeepNodeSysctls {
		SetNodeSysctls("/proc/sys", log)
	}
	if err := MountBPFFS(cfg.PinPath, log); err != nil {
		return nil, err
	}
	dns, err := NewDNS(cfg, log)
	if err != nil {
		return nil, err
	}
	dp, err := NewDatapath(cfg, log)
	if err != nil {
		dns.Close()
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	a, err := New(cfg, Deps{Datapath: dp, DNS: dns, Collectors: []prometheus.Collector{dns.Collector()}}, log)
	if err != nil {
		dns.Close()
		return nil, errors.Join(err, dp.Close())
	}
	return a, nil
}
