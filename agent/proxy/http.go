// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// reqCtx is the per-request routing state.
type reqCtx struct {
	scheme   string
	path     string // normalised path without the query
	full     string
	haveFull bool
	r        *http.Request
}

// fullPath is :path: the path with the query.
func (rq *reqCtx) fullPath(r *http.Request) string {
	if !rq.haveFull {
		rq.full, rq.haveFull = rq.path, true
		if r.URL.RawQuery != "" {
			rq.full = rq.path + "?" + r.URL.RawQuery
		}
	}
	return rq.full
}

// errStreamIdle cancels a request whose stream stayed idle too long.
var errStreamIdle = errors.New("stream idle timeout")

// ServeHTTP is the request path of every HTTP connection manager.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	start := time.Now()
	p.m.activeRequests.Inc()
	defer p.m.activeRequests.Dec()

	rq := reqCtx{scheme: "http", path: r.URL.EscapedPath(), r: r}
	if r.TLS != nil {
		rq.scheme = "https"
	}
	if ci.hcm.merge || ci.hcm.normalize {
		rq.path = normalizePath(rq.path, ci.hcm.merge, ci.hcm.normalize)
	}
	e := logEntry{
		start: start, method: r.Method, scheme: rq.scheme, protocol: protoName(r),
		reqHeader: r.Header, remote: ci.remote, local: ci.local, serverName: ci.serverName, respDuration: -1,
	}
	var stats *clusterStats
	var observe interface{ Observe(float64) }
	defer func() {
		e.duration = time.Since(start)
		e.authority = r.Host
		if e.path == "" {
			e.path = rq.fullPath(r)
		}
		if stats != nil {
			stats.count(e.status)
		}
		if observe != nil {
			observe.Observe(e.duration.Seconds())
		}
		writeLogs(ci.hcm.logs, &e, &p.logPool)
	}()

	rt := ci.hcm.inline
	if rt == nil {
		if nc := p.state.Load().nodes[ci.nodeID]; nc != nil {
			rt = nc.routes[ci.hcm.rds]
		}
	}
	if rt == nil {
		e.flags |= flagNoRoute
		e.status = p.localReply(w, r, http.StatusNotFound, "")
		return
	}
	vh := rt.vhostFor(r.Host)
	if vh == nil {
		e.flags |= flagNoRoute
		stats = rt.none
		e.status = p.localReply(w, r, http.StatusNotFound, "")
		return
	}
	observe = vh.duration
	route := vh.match(r, &rq)
	if route == nil {
		e.flags |= flagNoRoute
		stats = vh.noRoute
		e.status = p.localReply(w, r, http.StatusNotFound, "")
		return
	}
	wc := route.pick()
	stats = wc.stats
	e.routeName, e.upstreamCluster = route.name, wc.name
	p.forward(w, r, ci, route, wc, &rq, &e, start)
}

// Shared X-Forwarded-Proto values: the header map they go into is the
// outgoing request's, read by the transport and dropped, and nothing
// writes into a header value in place.
var (
	valueHTTP  = []string{"http"}
	valueHTTPS = []string{"https"}
)

func schemeValue(scheme string) []string {
	if scheme == "https" {
		return valueHTTPS
	}
	return valueHTTP
}

func protoName(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return r.Proto
}

// forward sends the request to the route's cluster, with retries and
// timeouts, and copies the response back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, ci *connInfo, route *route, wc *weightedCluster, rq *reqCtx, e *logEntry, start time.Time) {
	cl, ok := p.deps.Clusters.Get(ci.nodeID, wc.name)
	if !ok {
		e.flags |= flagNoCluster
		e.status = p.localReply(w, r, http.StatusServiceUnavailable, "cluster not found")
		return
	}
	upgrade := ci.hcm.websocket && isWebsocket(r)

	// The request as it goes upstream: the downstream's header map is
	// reused (the server gave it to this handler).
	h := r.Header
	removeHopByHop(h, upgrade)
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		h["X-Forwarded-Proto"] = schemeValue(rq.scheme)
	}
	e.traceID = propagateTrace(h)
	upPath := rq.path
	if np, rewritten := route.rewritePath(rq.path); rewritten {
		h["X-Envoy-Original-Path"] = []string{rq.fullPath(r)}
		upPath = np
	}
	host := r.Host
	if route.hostRewrite != "" {
		host = route.hostRewrite
		r.Host = host
	}
	e.path = upPath
	if r.URL.RawQuery != "" {
		e.path = upPath + "?" + r.URL.RawQuery
	}
	u := url.URL{Scheme: "http", Path: upPath, RawQuery: r.URL.RawQuery}
	if strings.IndexByte(upPath, '%') >= 0 {
		if dec, err := url.PathUnescape(upPath); err == nil {
			u.Path, u.RawPath = dec, upPath
		}
	}

	// Timeouts: the route timeout bounds the whole exchange; the idle
	// timeout cancels a stream without activity.
	ctx := r.Context()
	var cancelRoute context.CancelFunc
	if route.timeout > 0 && !upgrade {
		ctx, cancelRoute = context.WithTimeout(ctx, route.timeout)
		defer cancelRoute()
	}
	var idle *idleWatch
	if route.idleTimeout > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		idle = newIdleWatch(route.idleTimeout, func() { cancel(errStreamIdle) })
		defer idle.stop()
		defer cancel(nil)
	}

	policy := route.retry
	maxRetries := 0
	if policy != nil {
		maxRetries = policy.num
	}
	var body *replayBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		limit := p.cfg.RetryBufferBytes
		if maxRetries == 0 || upgrade {
			limit = 0
		}
		body = newReplayBody(r.Body, limit, &p.bodyPool)
		if idle != nil {
			body.onRead = idle.touch
		}
		defer func() {
			e.bytesReceived = body.bytesRead()
			body.finish()
		}()
	}

	// The hosts of earlier attempts; nil (no allocation) until a retry.
	var avoid []string
	retried := false
	for attempt := 0; ; attempt++ {
		e.attempts = attempt + 1
		lease, err := cl.Acquire(ctx, Hints{OriginalDst: ci.dst, Attempt: attempt, Avoid: avoid})
		if err != nil {
			switch {
			case errors.Is(err, ErrOverflow):
				wc.stats.overflows.Inc()
				e.flags |= flagOverflow
				e.status = p.localReply(w, r, http.StatusServiceUnavailable, "upstream overflow")
			case ctx.Err() != nil:
				p.contextFailure(ctx, w, r, e)
			default:
				e.flags |= flagNoHealthyUpstream
				e.status = p.localReply(w, r, http.StatusServiceUnavailable, "no healthy upstream")
			}
			return
		}
		e.upstreamHost = lease.Host()
		attemptCtx, cancelAttempt := ctx, context.CancelFunc(nil)
		if policy != nil && policy.perTry > 0 && !upgrade {
			attemptCtx, cancelAttempt = context.WithTimeout(ctx, policy.perTry)
		}
		// A URL per attempt: a failed attempt's transport may still read
		// its own.
		au := u
		au.Host = lease.Host()
		out := http.Request{
			Method: r.Method, URL: &au, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: h, Body: http.NoBody, ContentLength: r.ContentLength, Host: host, Trailer: r.Trailer,
		}
		if route.autoHost {
			out.Host = lease.Host()
		}
		if body != nil {
			b, ok := body.attempt()
			if !ok {
				// Cannot happen: attempts after the first are only
				// started when the body is replayable.
				b = http.NoBody
			}
			out.Body = b
		}
		resp, err := lease.Transport().RoundTrip(out.WithContext(attemptCtx))
		if err != nil {
			f := classify(err)
			if attemptCtx.Err() != nil && ctx.Err() == nil {
				f = failPerTryTimeout
			}
			if cancelAttempt != nil {
				cancelAttempt()
			}
			if ctx.Err() != nil {
				lease.Done(0, context.Cause(ctx))
				p.contextFailure(ctx, w, r, e)
				return
			}
			lease.Done(0, err)
			if policy != nil && attempt < maxRetries && policy.retriable(0, -1, f) && (body == nil || body.replayable()) {
				if p.retryWait(ctx, policy, attempt+1) {
					wc.stats.retries.Inc()
					retried = true
					avoid = append(avoid, lease.Host())
					continue
				}
				p.contextFailure(ctx, w, r, e)
				return
			}
			if retried && policy.retriable(0, -1, f) {
				e.flags |= flagRetryLimit
			}
			switch f {
			case failConnect:
				e.flags |= flagUpstreamConnFailure
				e.details = "upstream_reset_before_response_started{connection_failure}"
				e.status = p.localReply(w, r, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
			case failPerTryTimeout:
				e.flags |= flagUpstreamTimeout
				e.details = "upstream_per_try_timeout"
				e.status = p.localReply(w, r, http.StatusGatewayTimeout, "upstream request timeout")
			default:
				e.flags |= flagUpstreamReset
				e.details = "upstream_reset_before_response_started"
				e.status = p.localReply(w, r, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: remote reset")
			}
			return
		}
		if idle != nil {
			idle.touch()
		}
		grpcStatus := -1
		if gs := resp.Header["Grpc-Status"]; len(gs) == 1 {
			if n, err := strconv.Atoi(gs[0]); err == nil {
				grpcStatus = n
			}
		}
		if policy != nil && policy.retriable(resp.StatusCode, grpcStatus, failNone) {
			if attempt < maxRetries && (body == nil || body.replayable()) && !upgrade {
				discard(resp.Body)
				lease.Done(resp.StatusCode, nil)
				if cancelAttempt != nil {
					cancelAttempt()
				}
				if p.retryWait(ctx, policy, attempt+1) {
					wc.stats.retries.Inc()
					retried = true
					avoid = append(avoid, lease.Host())
					continue
				}
				p.contextFailure(ctx, w, r, e)
				return
			}
			if retried {
				e.flags |= flagRetryLimit
			}
		}
		if upgrade && resp.StatusCode == http.StatusSwitchingProtocols {
			p.tunnelUpgrade(w, resp, lease, e, idle)
			if cancelAttempt != nil {
				cancelAttempt()
			}
			return
		}
		e.respDuration = time.Since(start)
		err = p.copyResponse(w, resp, e, start, idle)
		if cancelAttempt != nil {
			cancelAttempt()
		}
		if err != nil {
			lease.Done(resp.StatusCode, err)
			switch {
			case errors.Is(context.Cause(ctx), errStreamIdle):
				e.flags |= flagStreamIdleTimeout
			case ctx.Err() != nil && r.Context().Err() == nil:
				e.flags |= flagUpstreamTimeout
			case r.Context().Err() != nil:
				e.flags |= flagDownstreamTerminated
			default:
				e.flags |= flagUpstreamTerminated
			}
			// The status line is gone: abort the stream so that the
			// client sees a truncated response, not a complete one.
			panic(http.ErrAbortHandler)
		}
		lease.Done(resp.StatusCode, nil)
		return
	}
}

// retryWait sleeps the back-off before retry n; false when the request's
// context ended meanwhile.
func (p *Proxy) retryWait(ctx context.Context, policy *retryPolicy, n int) bool {
	return sleepCtx(ctx, policy.backoff(n)) == nil
}

// contextFailure answers a request whose context ended: the route timeout
// (504), the stream idle timeout (408), or the downstream going away.
func (p *Proxy) contextFailure(ctx context.Context, w http.ResponseWriter, r *http.Request, e *logEntry) {
	switch {
	case r.Context().Err() != nil:
		e.flags |= flagDownstreamTerminated
		e.details = "downstream_remote_disconnect"
		e.status = 0
	case errors.Is(context.Cause(ctx), errStreamIdle):
		e.flags |= flagStreamIdleTimeout
		e.details = "stream_idle_timeout"
		e.status = p.localReply(w, r, http.StatusRequestTimeout, "stream timeout")
	default:
		e.flags |= flagUpstreamTimeout
		e.details = "upstream_response_timeout"
		e.status = p.localReply(w, r, http.StatusGatewayTimeout, "upstream request timeout")
	}
}

// discard drains a little of a response body (so the connection can be
// reused) and closes it.
func discard(b io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, b, 4<<10)
	_ = b.Close()
}

// copyResponse writes the upstream response downstream: headers, body
// (flushed as it comes when its length is unknown) and trailers.
func (p *Proxy) copyResponse(w http.ResponseWriter, resp *http.Response, e *logEntry, start time.Time, idle *idleWatch) error {
	defer resp.Body.Close()
	dst := w.Header()
	for k, vv := range resp.Header {
		if isHopByHop(k) {
			continue
		}
		dst[k] = vv
	}
	dst["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(time.Since(start).Milliseconds(), 10)}
	e.respHeader = dst
	e.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0
	var flusher http.Flusher
	if stream {
		flusher, _ = w.(http.Flusher)
	}
	bp := p.bufPool.Get().(*[]byte)
	defer p.bufPool.Put(bp)
	buf := *bp
	var err error
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if idle != nil {
				idle.touch()
			}
			wn, werr := w.Write(buf[:n])
			e.bytesSent += int64(wn)
			if werr != nil {
				err = werr
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				err = rerr
			}
			break
		}
	}
	if err != nil {
		return err
	}
	if len(resp.Trailer) > 0 {
		for k, vv := range resp.Trailer {
			dst[http.TrailerPrefix+k] = vv
		}
		e.respTrailer = resp.Trailer
	}
	return nil
}

// localReply answers a request the proxy could not forward; gRPC requests
// get a trailers-only gRPC status instead. It returns the HTTP status the
// logs and metrics record.
func (p *Proxy) localReply(w http.ResponseWriter, r *http.Request, status int, msg string) int {
	h := w.Header()
	if isGRPC(r) {
		h["Content-Type"] = []string{"application/grpc"}
		h["Grpc-Status"] = []string{strconv.Itoa(grpcStatusFor(status))}
		if msg != "" {
			h["Grpc-Message"] = []string{url.PathEscape(msg)}
		}
		w.WriteHeader(http.StatusOK)
		return status
	}
	if msg == "" {
		w.WriteHeader(status)
		return status
	}
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(msg))}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
	return status
}

// grpcStatusFor maps a local reply's HTTP status to a gRPC status.
func grpcStatusFor(status int) int {
	switch status {
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusTooManyRequests:
		return grpcUnavailable
	case http.StatusGatewayTimeout, http.StatusRequestTimeout:
		return grpcDeadlineExceeded
	}
	return 2 // UNKNOWN
}

// isHopByHop tells the headers that never cross the proxy.
func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Proxy-Authenticate", "Proxy-Authorization":
		return true
	}
	return false
}

// removeHopByHop strips the hop-by-hop headers of a request, keeping "TE:
// trailers" (gRPC) and, for an upgrade, Connection and Upgrade.
func removeHopByHop(h http.Header, upgrade bool) {
	if c := h["Connection"]; len(c) > 0 && !upgrade {
		for _, v := range c {
			for _, tok := range strings.Split(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" {
					delete(h, http.CanonicalHeaderKey(tok))
				}
			}
		}
	}
	for _, k := range [...]string{"Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Trailer", "Proxy-Authorization"} {
		delete(h, k)
	}
	if te, ok := h["Te"]; ok {
		trailers := false
		for _, v := range te {
			if strings.Contains(strings.ToLower(v), "trailers") {
				trailers = true
			}
		}
		if trailers {
			h["Te"] = []string{"trailers"}
		} else {
			delete(h, "Te")
		}
	}
	if upgrade {
		h["Connection"] = []string{"Upgrade"}
		return
	}
	delete(h, "Connection")
	delete(h, "Upgrade")
}

func isWebsocket(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	for _, v := range r.Header["Upgrade"] {
		if strings.EqualFold(strings.TrimSpace(v), "websocket") {
			return true
		}
	}
	return false
}

// tunnelUpgrade joins a downstream connection to an upstream one after a
// 101 Switching Protocols (WebSocket).
func (p *Proxy) tunnelUpgrade(w http.ResponseWriter, resp *http.Response, lease Lease, e *logEntry, idle *idleWatch) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		_ = resp.Body.Close()
		lease.Done(resp.StatusCode, errors.New("upgrade response body is not writable"))
		e.status = http.StatusBadGateway
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer up.Close()
	if idle != nil {
		idle.stop()
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		lease.Done(resp.StatusCode, err)
		e.status = http.StatusBadGateway
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer conn.Close()
	e.status = resp.StatusCode
	res := *resp
	res.Body = nil
	if err := res.Write(brw); err != nil || brw.Flush() != nil {
		lease.Done(resp.StatusCode, err)
		return
	}
	var recv atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, _ := io.Copy(up, brw)
		recv.Add(n)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	sent, _ := io.Copy(conn, up)
	_ = conn.Close()
	_ = up.Close()
	<-done
	e.bytesSent, e.bytesReceived = sent, recv.Load()
	lease.Done(resp.StatusCode, nil)
}

// idleWatch cancels a stream once no activity was seen for d.
type idleWatch struct {
	d     time.Duration
	base  time.Time
	last  atomic.Int64 // nanoseconds since base
	timer *time.Timer
	fire  func()
}

func newIdleWatch(d time.Duration, fire func()) *idleWatch {
	iw := &idleWatch{d: d, base: time.Now(), fire: fire}
	iw.timer = time.AfterFunc(d, iw.check)
	return iw
}

func (iw *idleWatch) touch() { iw.last.Store(int64(time.Since(iw.base))) }

func (iw *idleWatch) check() {
	idleFor := time.Since(iw.base) - time.Duration(iw.last.Load())
	if idleFor >= iw.d {
		iw.fire()
		return
	}
	iw.timer.Reset(iw.d - idleFor)
}

func (iw *idleWatch) stop() { iw.timer.Stop() }

// normalizePath merges slashes and removes dot segments (RFC 3986 5.2.4),
// as Envoy's normalize_path and merge_slashes do. Most paths are returned
// as they are, without allocating.
func normalizePath(p string, merge, dots bool) string {
	needMerge := merge && strings.Contains(p, "//")
	needDots := dots && (strings.Contains(p, "/.") || strings.Contains(p, "\\"))
	if !needMerge && !needDots {
		return p
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if needDots {
		p = strings.ReplaceAll(p, "\\", "/")
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case s == "" && merge && !last:
			continue
		case dots && s == ".":
			if last {
				out = append(out, "")
			}
			continue
		case dots && s == "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
			continue
		}
		out = append(out, s)
	}
	return "/" + strings.Join(out, "/")
}
