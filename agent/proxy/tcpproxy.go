// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// pick chooses a cluster by weight.
func (t *tcpProxy) pick() *tcpCluster {
	if len(t.clusters) == 1 {
		return &t.clusters[0]
	}
	n := rand.Uint32N(t.totalWeight)
	for i := range t.clusters {
		if n < t.clusters[i].cum {
			return &t.clusters[i]
		}
	}
	return &t.clusters[len(t.clusters)-1]
}

// serveTCP proxies a connection to its tcp_proxy cluster, both ways, with
// half-close and the idle timeout, and logs it when it ends.
func (p *Proxy) serveTCP(c *meshConn, tp *tcpProxy) {
	start := time.Now()
	info := c.info
	tc := tp.pick()
	e := logEntry{
		start: start, remote: info.remote, local: info.local, serverName: info.serverName,
		upstreamCluster: tc.name, respDuration: -1,
	}
	defer func() {
		_ = c.Close()
		e.duration = time.Since(start)
		writeLogs(tp.logs, &e, &p.logPool)
	}()
	cl, ok := p.deps.Clusters.Get(info.nodeID, tc.name)
	if !ok {
		tc.stats.noCluster.Inc()
		e.flags |= flagNoCluster
		return
	}
	var (
		lease Lease
		up    net.Conn
		err   error
	)
	for attempt := 0; attempt < tp.attempts; attempt++ {
		e.attempts = attempt + 1
		lease, err = cl.Acquire(p.baseCtx, Hints{OriginalDst: info.dst, Attempt: attempt})
		if err != nil {
			if errors.Is(err, ErrOverflow) {
				tc.stats.overflow.Inc()
				e.flags |= flagOverflow
			} else {
				e.flags |= flagNoHealthyUpstream
			}
			return
		}
		e.upstreamHost = lease.Host()
		up, err = lease.Dial(p.baseCtx)
		if err == nil {
			break
		}
		lease.Done(0, err)
		lease = nil
	}
	if lease == nil {
		tc.stats.connectFailure.Inc()
		e.flags |= flagUpstreamConnFailure
		return
	}
	tc.stats.ok.Inc()
	p.m.activeTCP.Inc()
	defer p.m.activeTCP.Dec()
	untrack := p.trackTCP(c, up)
	defer untrack()
	sent, recv, idled, err := pipe(c, up, tp.idle, &p.bufPool)
	tc.stats.up.Add(float64(recv))
	tc.stats.down.Add(float64(sent))
	e.bytesReceived, e.bytesSent = recv, sent
	if idled {
		e.flags |= flagStreamIdleTimeout
	}
	lease.Done(0, err)
}

// pipe copies both ways until both directions ended. An EOF from one side
// half-closes the other (CloseWrite); an error, or idle for idle, closes
// both. sent is what went downstream, recv what came from it.
func pipe(down, up net.Conn, idle time.Duration, pool *sync.Pool) (sent, recv int64, idled bool, err error) {
	base := time.Now()
	var last atomic.Int64
	var closeOnce sync.Once
	var idleFired atomic.Bool
	closeBoth := func() {
		closeOnce.Do(func() {
			_ = down.Close()
			_ = up.Close()
		})
	}
	var timer *time.Timer
	if idle > 0 {
		check := func() {
			quiet := time.Since(base) - time.Duration(last.Load())
			if quiet >= idle {
				idleFired.Store(true)
				closeBoth()
				return
			}
			timer.Reset(idle - quiet)
		}
		timer = time.AfterFunc(idle, check)
		defer timer.Stop()
	}
	touch := func() { last.Store(int64(time.Since(base))) }
	var upErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		recv, upErr = copyHalf(up, down, pool, touch)
		if upErr != nil {
			closeBoth()
		}
	})
	var downErr error
	sent, downErr = copyHalf(down, up, pool, touch)
	if downErr != nil {
		closeBoth()
	}
	wg.Wait()
	closeBoth()
	err = errors.Join(upErr, downErr)
	if idleFired.Load() {
		return sent, recv, true, nil
	}
	return sent, recv, false, err
}

// copyHalf copies src to dst until EOF, then half-closes dst.
func copyHalf(dst, src net.Conn, pool *sync.Pool, touch func()) (int64, error) {
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			touch()
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				} else {
					_ = dst.Close()
				}
				return n, nil
			}
			return n, rerr
		}
	}
}

// trackTCP records a proxied pair so that a drain that runs out of time can
// close it.
func (p *Proxy) trackTCP(down, up net.Conn) func() {
	p.tcpMu.Lock()
	id := p.tcpNext
	p.tcpNext++
	p.tcpConns[id] = [2]net.Conn{down, up}
	p.tcpMu.Unlock()
	return func() {
		p.tcpMu.Lock()
		delete(p.tcpConns, id)
		p.tcpMu.Unlock()
	}
}
