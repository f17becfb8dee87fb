// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"

	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// Results of weft_agent_xds_updates_total besides ok and error.
const resultCache = "cache"

// newXDS sets up the controller connection when XDS.Server is configured:
// the ADS client of the node state and the registrar of the node's
// workloads. The connection is lazy; nothing is dialled before Run.
func (a *Agent) newXDS() error {
	x := a.cfg.XDS
	if x.Server == "" {
		return nil
	}
	if x.NodeAddress != "" {
		a.nodeAddr, _ = netip.ParseAddr(x.NodeAddress) // checked by Validate
		a.nodeAddr = a.nodeAddr.Unmap()
	}
	dc := xdsclient.DialConfig{Server: x.Server}
	if x.TokenFile != "" {
		tok, err := readToken(x.TokenFile)
		if err != nil {
			return err
		}
		dc.Token = tok
	}
	conn, err := xdsclient.Dial(dc)
	if err != nil {
		return err
	}
	log := a.log.With(keyComponent, "xds")
	reg, err := xdsclient.NewRegistrar(conn, xdsclient.RegistrarConfig{NodeID: x.NodeID, TunnelAddress: a.cfg.Proxy.TunnelAddress, Instances: a.instances}, log)
	if err != nil {
		_ = conn.Close()
		return err
	}
	cl, err := xdsclient.SubscribeNodeState(conn, xdsclient.Config{
		NodeID:      x.NodeID,
		CacheFile:   x.CacheFile,
		OnConnected: reg.Kick, // perhaps a restarted controller: register at once
	}, a.takeFromADS, log)
	if err != nil {
		_ = conn.Close()
		return err
	}
	a.xconn, a.xclient, a.registrar = conn, cl, reg
	return nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read xds token: %w", err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	tok := string(bytes.TrimSpace(line))
	if tok == "" {
		return "", fmt.Errorf("xds token file %s is empty", path)
	}
	return tok, nil
}

// takeFromADS checks a node state the controller sent (or the cache held)
// like a state file and hands it to the watcher. An error makes the client
// NACK it; the last good state stays in force.
func (a *Agent) takeFromADS(_ context.Context, ns *nodeapiv1.NodeState, fromCache bool) error {
	if err := checkNodeState(ns, a.cfg.XDS.NodeID, a.dnsAddr); err != nil {
		a.metrics.xdsUpdates.WithLabelValues(resultError).Inc()
		a.log.Error("refused node state from the controller; keeping the last good state", keyVersion, ns.GetVersion(), keyError, err)
		return err
	}
	wls, _ := fileWorkloads(ns) // checked by checkNodeState
	res := resultOK
	if fromCache {
		res = resultCache
	}
	a.metrics.xdsUpdates.WithLabelValues(res).Inc()
	a.log.Info("took node state", keyVersion, ns.GetVersion(), "cached", fromCache,
		"services", len(ns.GetServices()), "workloads", len(ns.GetWorkloads()))
	a.mu.Lock()
	a.ns, a.nsWls = ns, wls
	a.nsGen++
	a.mu.Unlock()
	select {
	case a.nsChanged <- struct{}{}:
	default:
	}
	return nil
}

// takeNodeState gives the watcher the node state's workloads when the ADS
// client took a new state, and reports whether it did.
func (a *Agent) takeNodeState(w *watcher) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nsGen == w.nsGen {
		return false
	}
	w.nsGen, w.fileWls = a.nsGen, a.nsWls
	return true
}

func (a *Agent) kickRegistrar() {
	if a.registrar != nil {
		a.registrar.Kick()
	}
}

// instances are this node's workloads as the registry takes them: every
// merged workload, with the id the datapath knows it by, its own addresses
// or else the node's (VM workloads serve on the host), its listener ports,
// healthy.
// Until the watcher merged the workloads once they are unknown.
func (a *Agent) instances() ([]*nodeapiv1.Instance, bool) {
	if !a.polled.Load() {
		return nil, false
	}
	a.mu.Lock()
	wls := a.workloads
	a.mu.Unlock()
	ids := map[string]uint32{}
	if d := a.applied.Load(); d != nil {
		for _, w := range d.Workloads {
			ids[w.CgroupPath] = w.ID
		}
	}
	out := make([]*nodeapiv1.Instance, 0, len(wls))
	for _, w := range wls {
		if w.Mesh == "" || w.VirtualNode == "" {
			continue
		}
		id := w.ID
		if id == 0 {
			id = ids[w.CgroupPath]
		}
		in := &nodeapiv1.Instance{
			Id: id, CgroupPath: w.CgroupPath, Mesh: w.Mesh, VirtualNode: w.VirtualNode,
			Ports: slices.Clone(w.ListenerPorts), Healthy: true, Attributes: maps.Clone(w.Attributes),
		}
		switch {
		case len(w.Addresses) > 0:
			in.Addresses = slices.Clone(w.Addresses)
		case a.nodeAddr.IsValid():
			in.Addresses = []string{a.nodeAddr.String()}
		}
		out = append(out, in)
	}
	return out, true
}

// sameWorkloadIDs reports whether two applied workload lists give the same
// ids to the same cgroups.
func sameWorkloadIDs(a, b []Workload) bool {
	return slices.EqualFunc(a, b, func(x, y Workload) bool { return x.ID == y.ID && x.CgroupPath == y.CgroupPath })
}
