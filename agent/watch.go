// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/agent/datapath"
	nodeapiv1 "github.com/weft-mesh/weft/pkg/nodeapi/v1"
)

// fileKey tells whether a file changed: its size, modification time and
// inode (an atomic rename gives a new inode).
type fileKey struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func keyOf(fi fs.FileInfo) fileKey {
	k := fileKey{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ino = st.Ino
	}
	return k
}

// watcher is the state of the watch loop.
type watcher struct {
	loaded     fileKey // of the last file read successfully
	failed     fileKey // of the last file refused, so it is logged once
	missing    bool
	fileWls    []Workload   // the good state's workloads, without cgroup ids
	found      [][]Workload // per source, its last answer
	srcErrs    []string     // per source, its last error
	resolveErr string       // the last error resolving the file's cgroups
	lastMiss   []string     // cgroups of the state file not found
	workloads  []Workload
	nsGen      uint64 // of the last node state taken from ADS
}

// watch polls the state file (or takes the node state the ADS client
// delivered) and the workload sources, and triggers a reconcile when either
// changed. A state file that cannot be read or is refused is logged once,
// and the last good one stays in force.
func (a *Agent) watch(ctx context.Context) error {
	w := &watcher{found: make([][]Workload, len(a.sources)), srcErrs: make([]string, len(a.sources))}
	t := time.NewTicker(a.poll)
	defer t.Stop()
	for {
		var changed bool
		if a.xclient != nil {
			changed = a.takeNodeState(w)
		} else {
			changed = a.pollStateFile(w)
		}
		if a.pollWorkloads(ctx, w) {
			changed = true
			a.kickRegistrar()
		}
		if !a.polled.Swap(true) {
			a.kickRegistrar() // the workloads are known: register them
		}
		if changed {
			select {
			case a.trigger <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.nsChanged:
		}
	}
}

// pollStateFile rereads the state file if it changed and reports whether a
// new good state was taken.
func (a *Agent) pollStateFile(w *watcher) bool {
	log := a.log.With(keyPath, a.cfg.StateFile)
	fi, err := os.Stat(a.cfg.StateFile)
	if err != nil {
		if !w.missing {
			w.missing = true
			if errors.Is(err, fs.ErrNotExist) {
				log.Warn("state file does not exist; keeping the last good state")
			} else {
				log.Warn("stat state file; keeping the last good state", keyError, err)
			}
		}
		return false
	}
	w.missing = false
	k := keyOf(fi)
	if k == w.loaded {
		return false
	}
	b, err := os.ReadFile(a.cfg.StateFile)
	var ns *nodeapiv1.NodeState
	if err == nil {
		ns, err = parseNodeState(b, a.cfg.NodeName, a.dnsAddr)
	}
	if err != nil {
		// A file being written may be caught half-way: it is read again at
		// the next poll, but reported only once per version.
		if k != w.failed {
			w.failed = k
			a.metrics.stateLoads.WithLabelValues(resultError).Inc()
			log.Error("refused state file; keeping the last good state", keyError, err)
		}
		return false
	}
	fileWls, _ := fileWorkloads(ns) // checked by parseNodeState
	w.loaded, w.failed = k, fileKey{}
	w.fileWls = fileWls
	a.metrics.stateLoads.WithLabelValues(resultOK).Inc()
	log.Info("read state file", keyVersion, ns.GetVersion(), "services", len(ns.GetServices()), "workloads", len(ns.GetWorkloads()))
	a.mu.Lock()
	a.ns = ns
	a.mu.Unlock()
	return true
}

// pollWorkloads asks the sources, resolves the state file's cgroups, and
// reports whether the merged workloads changed.
func (a *Agent) pollWorkloads(ctx context.Context, w *watcher) bool {
	for i, src := range a.sources {
		wls, err := src.Workloads(ctx)
		if err != nil {
			if msg := err.Error(); msg != w.srcErrs[i] {
				w.srcErrs[i] = msg
				a.log.Warn("discover workloads; keeping the last answer", keyError, err)
			}
			continue
		}
		w.srcErrs[i] = ""
		w.found[i] = wls
	}
	fileWls, missing, err := resolveCgroups(a.cfg.CgroupRoot, w.fileWls)
	if err != nil {
		if msg := err.Error(); msg != w.resolveErr {
			w.resolveErr = msg
			a.log.Warn("resolve workload cgroups; keeping the last workloads", keyError, err)
		}
		return false
	}
	w.resolveErr = ""
	if !slices.Equal(missing, w.lastMiss) {
		for _, p := range missing {
			if !slices.Contains(w.lastMiss, p) {
				a.log.Info("workload cgroup does not exist (yet); left out", keyWorkload, p)
			}
		}
		w.lastMiss = missing
	}
	merged := mergeWorkloads(fileWls, w.found)
	if equalWorkloads(merged, w.workloads) {
		return false
	}
	w.workloads = merged
	a.mu.Lock()
	a.workloads = merged
	a.mu.Unlock()
	return true
}

// reconcileLoop reconciles the datapath when the watcher says something
// changed (after a short debounce), every resync period, and after a
// failure with backoff.
func (a *Agent) reconcileLoop(ctx context.Context) error {
	resync := time.NewTicker(a.resync)
	defer resync.Stop()
	var retry <-chan time.Time
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.trigger:
			// Let a burst of changes (a file written in pieces, several
			// cgroups appearing) settle into one reconcile.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(a.bounce):
			}
			select {
			case <-a.trigger:
			default:
			}
		case <-resync.C:
		case <-retry:
		}
		retry = nil
		if err := a.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.log.Error("reconcile datapath", keyError, err, keyRetryIn, backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
	}
}

// reconcile translates the current desired state and hands it, whole, to
// the datapath, which changes what differs. It returns an error only when
// the datapath failed, which is worth a retry.
func (a *Agent) reconcile(ctx context.Context) error {
	a.mu.Lock()
	ns, wls := a.ns, a.workloads
	a.mu.Unlock()
	if ns == nil {
		// Without a state there is nothing to apply, and applying nothing
		// would flush what a previous agent left pinned.
		return nil
	}
	d, err := a.tr.translate(ns, wls, a.dnsAddr)
	if err != nil {
		// The state file was checked, so this is a workload problem; the
		// datapath keeps its state until the next change.
		a.metrics.reconciles.WithLabelValues(resultInvalid).Inc()
		a.log.Error("translate desired state; datapath left as is", keyError, err)
		return nil
	}
	prev := a.applied.Load()
	for _, s := range d.Skipped {
		if prev == nil || !slices.Contains(prev.Skipped, s) {
			a.log.Warn("workload left out", keyWorkload, s.CgroupPath, keyReason, s.Reason)
		}
	}
	ch, err := a.dp.Reconcile(ctx, d.State)
	if err != nil {
		a.metrics.reconciles.WithLabelValues(resultError).Inc()
		return err
	}
	a.metrics.reconciles.WithLabelValues(resultOK).Inc()
	d.source = ns
	a.applied.Store(d)
	if prev == nil || !sameWorkloadIDs(prev.Workloads, d.Workloads) {
		a.kickRegistrar() // register the ids assigned to new workloads
	}
	a.namedOnce.Do(func() { close(a.named) })
	a.dns.SetRecords(d.Records)
	a.metrics.applied(d)
	if !a.ready.Swap(true) {
		a.log.Info("datapath ready", keyVersion, d.Version)
	}
	lvl := slog.LevelDebug // a resync that found nothing to do
	if ch != (datapath.Changes{}) {
		lvl = slog.LevelInfo
	}
	a.log.Log(ctx, lvl, "reconciled datapath", keyVersion, d.Version,
		"servicesUpserted", ch.ServicesUpserted, "servicesDeleted", ch.ServicesDeleted,
		"workloadsUpserted", ch.WorkloadsUpserted, "workloadsDeleted", ch.WorkloadsDeleted,
		"egressUpserted", ch.EgressUpserted, "egressDeleted", ch.EgressDeleted)
	return nil
}
