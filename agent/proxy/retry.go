// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// retryOn is the set of retry_on conditions of a policy.
type retryOn uint32

const (
	ro5xx retryOn = 1 << iota
	roGatewayError
	roReset
	roConnectFailure
	roRefusedStream
	roRetriable4xx
	roRetriableStatusCodes
	roCancelled
	roDeadlineExceeded
	roInternal
	roResourceExhausted
	roUnavailable
)

// retryTokens are the retry_on tokens the proxy implements.
func retryToken(tok string) (retryOn, bool) {
	switch tok {
	case "5xx":
		return ro5xx, true
	case "gateway-error":
		return roGatewayError, true
	case "reset":
		return roReset, true
	case "connect-failure":
		return roConnectFailure, true
	case "refused-stream":
		return roRefusedStream, true
	case "retriable-4xx":
		return roRetriable4xx, true
	case "retriable-status-codes":
		return roRetriableStatusCodes, true
	case "cancelled":
		return roCancelled, true
	case "deadline-exceeded":
		return roDeadlineExceeded, true
	case "internal":
		return roInternal, true
	case "resource-exhausted":
		return roResourceExhausted, true
	case "unavailable":
		return roUnavailable, true
	}
	return 0, false
}

// retryPolicy is a compiled RetryPolicy.
type retryPolicy struct {
	on                      retryOn
	codes                   []int
	num                     int
	perTry                  time.Duration
	backoffBase, backoffMax time.Duration
}

func compileRetryPolicy(p *routev3.RetryPolicy) (*retryPolicy, error) {
	rp := &retryPolicy{num: 1, backoffBase: envoyBackoffBase}
	for _, tok := range strings.Split(p.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		f, ok := retryToken(tok)
		if !ok {
			return nil, fmt.Errorf("retry_on %q is not supported", tok)
		}
		rp.on |= f
	}
	if n := p.GetNumRetries(); n != nil {
		rp.num = int(n.GetValue())
	}
	for _, c := range p.GetRetriableStatusCodes() {
		rp.codes = append(rp.codes, int(c))
	}
	rp.perTry = durationOr(p.GetPerTryTimeout(), 0)
	if b := p.GetRetryBackOff(); b != nil {
		rp.backoffBase = durationOr(b.GetBaseInterval(), envoyBackoffBase)
		rp.backoffMax = durationOr(b.GetMaxInterval(), 0)
	}
	if rp.backoffMax == 0 {
		rp.backoffMax = 10 * rp.backoffBase
	}
	switch {
	case len(p.GetRetryHostPredicate()) > 0, len(p.GetRetriableHeaders()) > 0, len(p.GetRetriableRequestHeaders()) > 0,
		p.GetRateLimitedRetryBackOff() != nil, p.GetRetryPriority() != nil:
		return nil, errors.New("retry policy: only retry_on, num_retries, per_try_timeout, retriable_status_codes and retry_back_off are supported")
	}
	return rp, nil
}

// backoff is Envoy's fully jittered exponential back-off before retry n
// (1-based).
func (p *retryPolicy) backoff(n int) time.Duration {
	ceil := p.backoffBase << min(n-1, 16)
	if ceil > p.backoffMax || ceil <= 0 {
		ceil = p.backoffMax
	}
	return rand.N(ceil) + 1
}

// failure is how an attempt failed before it had response headers.
type failure uint8

const (
	failNone failure = iota
	failConnect
	failRefused
	failReset
	failPerTryTimeout
)

// classify maps an upstream error to a failure (see Lease.Transport).
func classify(err error) failure {
	if errors.Is(err, ErrConnectFailure) {
		return failConnect
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return failConnect
	}
	if errors.Is(err, ErrRefusedStream) || strings.Contains(err.Error(), "REFUSED_STREAM") {
		return failRefused
	}
	return failReset
}

// gRPC status codes retry_on names.
const (
	grpcCancelled         = 1
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcInternal          = 13
	grpcUnavailable       = 14
)

// retriable decides whether an attempt's outcome is retried: an HTTP
// status (with the grpc-status of a trailers-only response, -1 when none)
// or a failure.
func (p *retryPolicy) retriable(status, grpcStatus int, f failure) bool {
	on := p.on
	switch f {
	case failConnect:
		return on&(ro5xx|roGatewayError|roReset|roConnectFailure) != 0
	case failRefused:
		return on&(ro5xx|roGatewayError|roReset|roRefusedStream) != 0
	case failReset, failPerTryTimeout:
		return on&(ro5xx|roGatewayError|roReset) != 0
	}
	switch {
	case on&ro5xx != 0 && status >= 500 && status <= 599:
		return true
	case on&roGatewayError != 0 && (status == 502 || status == 503 || status == 504):
		return true
	case on&roRetriable4xx != 0 && status == 409:
		return true
	case on&roRetriableStatusCodes != 0:
		for _, c := range p.codes {
			if c == status {
				return true
			}
		}
	}
	switch grpcStatus {
	case grpcCancelled:
		return on&roCancelled != 0
	case grpcDeadlineExceeded:
		return on&roDeadlineExceeded != 0
	case grpcResourceExhausted:
		return on&roResourceExhausted != 0
	case grpcInternal:
		return on&roInternal != 0
	case grpcUnavailable:
		return on&roUnavailable != 0
	}
	return false
}

// replayBody lets a request body be sent again on a retry: it records what
// the attempts read from the downstream, up to a limit. Past the limit
// nothing more is recorded and the body can no longer be replayed. It is
// safe for a stale attempt's transport goroutine to keep reading: a
// superseded attempt gets an error.
type replayBody struct {
	mu       sync.Mutex
	src      io.ReadCloser
	buf      []byte
	limit    int
	overflow bool
	eof      bool
	srcErr   error
	done     bool
	current  *attemptBody
	pool     *sync.Pool
	read     int64 // bytes read from the downstream
	onRead   func()
}

var errAttemptSuperseded = errors.New("request body superseded by a retry")

// attemptBody is one attempt's view of a replayBody.
type attemptBody struct {
	rb  *replayBody
	off int
}

func newReplayBody(src io.ReadCloser, limit int, pool *sync.Pool) *replayBody {
	rb := &replayBody{src: src, limit: limit, pool: pool}
	if limit <= 0 {
		rb.overflow = true
		return rb
	}
	if b, ok := pool.Get().(*[]byte); ok {
		rb.buf = (*b)[:0]
	}
	return rb
}

// attempt returns a body for a new attempt; ok is false when the body
// cannot be replayed (it outgrew the limit after an attempt read past it).
func (rb *replayBody) attempt() (io.ReadCloser, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.current != nil && rb.overflow {
		return nil, false
	}
	a := &attemptBody{rb: rb}
	rb.current = a
	return a, true
}

// replayable reports whether another attempt can still send the body.
func (rb *replayBody) replayable() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return !rb.overflow
}

// bytesRead is how much the downstream sent.
func (rb *replayBody) bytesRead() int64 {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.read
}

// finish ends the request: later reads fail and the buffer is recycled.
func (rb *replayBody) finish() {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	rb.done = true
	if rb.buf != nil && cap(rb.buf) <= 64<<10 {
		b := rb.buf[:0]
		rb.pool.Put(&b)
	}
	rb.buf = nil
}

func (a *attemptBody) Read(p []byte) (int, error) {
	rb := a.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.done || rb.current != a {
		return 0, errAttemptSuperseded
	}
	if a.off < len(rb.buf) && !rb.overflow {
		n := copy(p, rb.buf[a.off:])
		a.off += n
		return n, nil
	}
	if rb.eof {
		return 0, io.EOF
	}
	if rb.srcErr != nil {
		return 0, rb.srcErr
	}
	n, err := rb.src.Read(p)
	rb.read += int64(n)
	if rb.onRead != nil {
		rb.onRead()
	}
	if !rb.overflow {
		if len(rb.buf)+n > rb.limit {
			rb.overflow = true
		} else {
			rb.buf = append(rb.buf, p[:n]...)
			a.off += n
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		rb.eof = true
	case err != nil:
		rb.srcErr = err
	}
	return n, err
}

func (a *attemptBody) Close() error { return nil }

// sleepCtx waits d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
