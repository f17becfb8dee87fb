// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Pool is the request path's HTTP/1.1 client of one host: keep-alive
// connections used by one request at a time, the request written and the
// response read on the caller's goroutine. net/http's Transport runs a read
// and a write goroutine per connection and hands every request and
// response between them and the caller over channels; under load that
// hand-over, its allocations and the scheduling it causes cost more CPU than
// the request's own work. The pool serves GET, HEAD, OPTIONS and TRACE
// requests without a body that do not upgrade the connection (h1Eligible);
// the others (and HTTP/2) go through the host's http.Transport
// (pool.RoundTrip chooses).
//
// Semantics kept from net/http's Transport: at most maxConns connections
// (requests beyond wait for one, within their context), idle connections
// closed after idleTimeout, a request on a reused connection that the
// server had closed meanwhile sent again on another one (nothing of the
// response read yet), the context cancelling the exchange and the body
// read (context.Canceled or DeadlineExceeded, as the Transport reports
// them), 1xx responses skipped, Connection: close and bodies delimited by
// the connection's end honoured.
type h1Pool struct {
	dial        func(context.Context) (net.Conn, error)
	idleTimeout time.Duration
	maxIdle     int
	// slots has one token per open connection of the host, this pool's
	// and the host's http.Transport's (dialShared): max_connections
	// bounds both together. nil: unlimited.
	slots chan struct{}
	// evict closes the Transport's idle connections, to free their slots
	// for a request of this pool that found none.
	evict func()

	// probeAfter is how long a connection may stay idle before it is
	// checked (usable) when taken from the pool.
	probeAfter time.Duration

	mu      sync.Mutex
	idle    []*h1Conn // most recently used last
	waiters []chan *h1Conn
}

// maxInformational bounds the 1xx responses skipped before the final one,
// as net/http's Transport does.
const maxInformational = 5

func newH1Pool(dial func(context.Context) (net.Conn, error), idleTimeout time.Duration, maxConns int64) *h1Pool {
	p := &h1Pool{dial: dial, idleTimeout: idleTimeout, maxIdle: 1024, probeAfter: time.Second}
	if !unlimited(maxConns) && maxConns > 0 {
		p.slots = make(chan struct{}, maxConns)
		p.maxIdle = int(maxConns)
	}
	return p
}

// h1Conn is one upstream connection with its buffers.
type h1Conn struct {
	p      *h1Pool
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func (c *h1Conn) close() {
	_ = c.conn.Close()
	if c.p.slots != nil {
		<-c.p.slots
	}
}

// h1Eligible tells the requests h1Pool serves: GET, HEAD, OPTIONS and
// TRACE without a body and without an upgrade, with a Host it can write as
// it is. Only those, because the pool does not watch its idle connections
// (the Transport's read goroutine does): a request that meets one the
// server has closed meanwhile is sent again on a new connection, which
// only an idempotent request may be.
func h1Eligible(req *http.Request) bool {
	if !idempotent(req.Method) || (req.Body != nil && req.Body != http.NoBody) {
		return false
	}
	if _, up := req.Header["Upgrade"]; up {
		return false
	}
	return req.Host != "" && !strings.ContainsAny(req.Host, " \r\n")
}

// roundTrip sends req (h1Eligible) and reads the response headers; the
// body reads from the connection, which returns to the pool at its end.
func (p *h1Pool) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, reused, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, retry, err := c.exchange(ctx, req, reused)
		if err == nil {
			return resp, nil
		}
		if !retry {
			return nil, err
		}
	}
}

// exchange writes req on c and reads the response's headers. retry is set
// when the request may go again on another connection: c was reused and
// failed before any byte of the response (the server closed it while it
// was idle).
func (c *h1Conn) exchange(ctx context.Context, req *http.Request, reused bool) (resp *http.Response, retry bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		c.close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, false, cerr
		}
		return nil, false, err
	}
	if err := writeH1Request(c.bw, req); err != nil {
		resp, _, err := fail(err)
		return resp, reused && ctx.Err() == nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		resp, _, err := fail(err)
		return resp, reused && ctx.Err() == nil, err
	}
	for n := 0; ; n++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == maxInformational {
			return fail(errors.New("too many 1xx informational responses"))
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Not asked for: h1Eligible requests do not upgrade.
		return fail(errors.New("unexpected 101 switching protocols"))
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		c.release(stop, keep)
		return resp, false, nil
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, ctx: ctx, stop: stop, keep: keep}
	return resp, false, nil
}

// usable checks a connection that was idle for probeAfter or longer before
// it carries a request: the server must not have closed it or sent
// anything meanwhile (the Transport's read goroutine sees both as they
// happen; this pool looks when it needs the connection). A connection used
// more recently is taken as it is, without the probe's syscalls: one the
// server closed since is found out when the request is sent, and the
// request goes again on another connection.
func (c *h1Conn) usable(probeAfter time.Duration) bool {
	if time.Since(c.idleAt) < probeAfter {
		return true
	}
	if c.br.Buffered() > 0 {
		return false
	}
	conn := c.conn
	if cc, ok := conn.(*countedConn); ok {
		conn = cc.Conn
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		// TLS: a record may be pending (a session ticket) that is no
		// answer; the send finds out.
		return true
	}
	return idleIntact(sc)
}

// aLongTimeAgo is a deadline in the past: it makes blocked reads and
// writes on a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// release ends c's exchange: back to the pool when keep and the context's
// cancellation did not touch the connection, closed otherwise.
func (c *h1Conn) release(stop func() bool, keep bool) {
	// Bytes after the answer are not an answer to anything: such a
	// connection is not reused.
	if !stop() || !keep || c.br.Buffered() > 0 {
		c.close()
		return
	}
	c.p.put(c)
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// get returns an idle connection (reused) or a new one, waiting for one
// while all maxConns are open.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, bool, error) {
	p.mu.Lock()
	for c := p.popIdleLocked(); c != nil; c = p.popIdleLocked() {
		p.mu.Unlock()
		if c.usable(p.probeAfter) {
			return c, true, nil
		}
		c.close()
		p.mu.Lock()
	}
	if p.slots == nil {
		p.mu.Unlock()
		c, err := p.newConn(ctx)
		return c, false, err
	}
	select {
	case p.slots <- struct{}{}:
		p.mu.Unlock()
		c, err := p.newConnSlot(ctx)
		return c, false, err
	default:
	}
	w := make(chan *h1Conn, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	if p.evict != nil {
		// Idle connections of the Transport may hold the slots.
		p.evict()
	}
	select {
	case c := <-w:
		return c, true, nil
	case p.slots <- struct{}{}:
		if !p.removeWaiter(w) {
			// A connection was handed over meanwhile: use it.
			<-p.slots
			return <-w, true, nil
		}
		c, err := p.newConnSlot(ctx)
		return c, false, err
	case <-ctx.Done():
		if !p.removeWaiter(w) {
			p.put(<-w)
		}
		return nil, false, ctx.Err()
	}
}

// newConnSlot dials with a slot taken, giving it back on failure.
func (p *h1Pool) newConnSlot(ctx context.Context) (*h1Conn, error) {
	c, err := p.newConn(ctx)
	if err != nil {
		<-p.slots
	}
	return c, err
}

func (p *h1Pool) newConn(ctx context.Context) (*h1Conn, error) {
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &h1Conn{p: p, conn: conn, br: bufio.NewReaderSize(conn, 4<<10), bw: bufio.NewWriterSize(conn, 4<<10)}, nil
}

// dialShared dials (with dial: plain TCP, the Transport does TLS itself)
// a connection for the host's http.Transport within the
// slots shared with this pool: when all are taken it closes this pool's
// idle connections to free one, else waits for one within ctx. Closing
// the connection gives its slot back.
func (p *h1Pool) dialShared(ctx context.Context, dial func(context.Context) (net.Conn, error)) (net.Conn, error) {
	if p.slots == nil {
		return dial(ctx)
	}
	select {
	case p.slots <- struct{}{}:
	default:
		p.closeIdle()
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	conn, err := dial(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return &countedConn{Conn: conn, release: func() { <-p.slots }}, nil
}

// removeWaiter takes w off the waiters; false when put already handed it
// a connection.
func (p *h1Pool) removeWaiter(w chan *h1Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// popIdleLocked returns the most recently used idle connection that has
// not been idle too long, closing the expired ones.
func (p *h1Pool) popIdleLocked() *h1Conn {
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if p.idleTimeout > 0 && time.Since(c.idleAt) >= p.idleTimeout {
			c.close()
			continue
		}
		return c
	}
	return nil
}

// put makes c idle, or hands it to a waiting request.
func (p *h1Pool) put(c *h1Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w <- c
		return
	}
	if len(p.idle) >= p.maxIdle {
		c.close()
		return
	}
	c.idleAt = time.Now()
	// The least recently used connection expires first.
	if p.idleTimeout > 0 && len(p.idle) > 0 && c.idleAt.Sub(p.idle[0].idleAt) >= p.idleTimeout {
		p.idle[0].close()
		p.idle = append(p.idle[:0], p.idle[1:]...)
	}
	p.idle = append(p.idle, c)
}

// closeIdle closes the idle connections (pool.retire).
func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// h1Body is a response body read from a pooled connection: the connection
// goes back to the pool at the body's end, and is closed when the body is
// closed before it.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	ctx  context.Context
	stop func() bool
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		b.done = true
		b.c.release(b.stop, b.keep)
	default:
		b.done = true
		b.stop()
		b.c.close()
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.c.close()
	}
	return nil
}

// writeH1Request writes req's head (it has no body) as net/http's
// Transport does: the request line, Host, User-Agent when it has a
// non-empty value, the header without the fields the framing decides,
// Connection: close when req.Close, and Content-Length: 0 for the methods
// that expect a body.
func writeH1Request(bw *bufio.Writer, req *http.Request) error {
	b := bw.AvailableBuffer()
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		b = appendField(b, "User-Agent", ua[0])
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, v)
		}
	}
	if req.Close {
		b = append(b, "Connection: close\r\n"...)
	}
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		b = append(b, "Content-Length: 0\r\n"...)
	}
	b = append(b, "\r\n"...)
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
}

// appendField appends one header line; line breaks in the value become
// spaces, as net/http writes them.
func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	if strings.ContainsAny(v, "\r\n") {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	b = append(b, strings.TrimSpace(v)...)
	return append(b, "\r\n"...)
}
