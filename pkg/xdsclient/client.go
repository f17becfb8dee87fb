// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// Backoff defaults.
const (
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultMaxHold bounds how long a configuration that Config.Consistent
	// refuses is held before it is applied all the same.
	DefaultMaxHold = 2 * time.Second
)

// Log keys.
const (
	keyNodeID  = "nodeID"
	keyType    = "type"
	keyVersion = "version"
	keyError   = "error"
	keyRetryIn = "retryIn"
	keyPath    = "path"
	keyCount   = "resources"
	keyHeld    = "held"
)

// Resources are the resources of one type at one version.
type Resources struct {
	Version string
	// Items are the resources as the controller sent them.
	Items []*anypb.Any
}

// Update is a whole configuration for the ApplyFunc: every subscribed type.
type Update struct {
	// Config holds every subscribed type URL.
	Config map[string]Resources
	// Changed are the type URLs whose version changed since the last
	// configuration applied (all of them at the first).
	Changed []string
	// FromCache is true for the configuration loaded from the cache file
	// at start.
	FromCache bool
}

// ApplyFunc puts a configuration in force. An error rejects it: the client
// NACKs the change with the error and keeps the last good configuration.
// It runs on the client's Run goroutine, one call at a time.
type ApplyFunc func(ctx context.Context, u Update) error

// Config configures a Client.
type Config struct {
	// NodeID is the stream's node id: a virtual node's or gateway's ARN
	// path for a proxy, the node name for an agent.
	NodeID string
	// Cluster is node.cluster (optional).
	Cluster string
	// TypeURLs are the types subscribed to, each as a wildcard.
	TypeURLs []string
	// CacheFile keeps the last good configuration; "" keeps none.
	CacheFile string
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// after each failed stream (with jitter) and starts over after a stream
	// that received a response. Defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// OnConnected, when set, is called each time a stream is open and its
	// requests are sent (the agent then renews its registration at once).
	// It does not wait for a response: a server whose versions equal the
	// ones the client names (a restarted controller with the same world)
	// rightly sends none.
	OnConnected func()
	// Consistent, when set, checks every whole configuration before the
	// ApplyFunc sees it. An error means the configuration refers to
	// something that another type's response has not brought yet: a route
	// to a cluster CDS has not sent, a cluster CDS dropped while a route
	// still sends to it. The client then holds the response, not yet
	// acknowledged, and applies it together with the responses that
	// complete it, in one ApplyFunc call: the ordering and warming Envoy
	// gets from ADS (CDS, EDS, LDS, RDS), on the client's side, since the
	// server sends the types of one change in no fixed order. After
	// MaxHold it applies what it holds all the same (a request to a
	// missing cluster then gets a 503, as in Envoy).
	Consistent func(map[string]Resources) error
	// MaxHold is the longest a response is held (default DefaultMaxHold).
	MaxHold time.Duration
}

// Stats count what a Client did.
type Stats struct {
	// Applied counts configurations applied (the cache's included).
	Applied int
	// Rejected counts configurations the ApplyFunc refused (NACKs).
	Rejected int
	// Connects counts streams that received a response.
	Connects int
	// Responses counts the responses received and answered.
	Responses int
	// Held counts the responses held for a configuration Consistent
	// refused; Forced counts the configurations applied after MaxHold
	// although Consistent still refused them.
	Held, Forced int
}

// Client is one ADS stream for one node id. See the package doc.
type Client struct {
	conn  grpc.ClientConnInterface
	cfg   Config
	apply ApplyFunc
	log   *slog.Logger

	mu        sync.Mutex
	current   map[string]Resources // last good, by type (possibly incomplete)
	connected bool
	stats     Stats
}

// New returns a client over conn (Dial); Run starts it.
func New(conn grpc.ClientConnInterface, cfg Config, apply ApplyFunc, log *slog.Logger) (*Client, error) {
	var errs []error
	if conn == nil || apply == nil {
		errs = append(errs, errors.New("a connection and an apply function are required"))
	}
	if cfg.NodeID == "" {
		errs = append(errs, errors.New("node id: is required"))
	}
	if len(cfg.TypeURLs) == 0 {
		errs = append(errs, errors.New("type urls: at least one is required"))
	}
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || (cfg.MaxBackoff > 0 && cfg.MinBackoff > cfg.MaxBackoff) {
		errs = append(errs, errors.New("backoff: want 0 <= min <= max"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new xds client: %w", err)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
		if cfg.MaxBackoff > 0 {
			cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
		}
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = DefaultMaxHold
	}
	cfg.TypeURLs = slices.Clone(cfg.TypeURLs)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{conn: conn, cfg: cfg, apply: apply, log: log.With(keyNodeID, cfg.NodeID), current: map[string]Resources{}}, nil
}

// Connected reports whether a stream is up and has received a response.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Versions returns the version of every type the client holds.
func (c *Client) Versions() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.current))
	for t, r := range c.current {
		out[t] = r.Version
	}
	return out
}

// Run applies the cache file's configuration, if any, then keeps an ADS
// stream open until ctx ends, reconnecting with backoff. It returns nil
// when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	c.loadCache(ctx)
	backoff := c.cfg.MinBackoff
	for {
		responded, err := c.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if responded {
			backoff = c.cfg.MinBackoff
		}
		// Full jitter on the upper half: [backoff/2, backoff].
		d := backoff/2 + rand.N(backoff/2+1)
		c.log.Warn("ads stream ended; keeping the last good configuration", keyError, err, keyRetryIn, d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// stream runs one ADS stream until it fails; responded tells whether it
// received anything.
func (c *Client) stream(ctx context.Context) (responded bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("open ads stream: %w", err)
	}
	defer c.setConnected(false)
	node := &corev3.Node{Id: c.cfg.NodeID, Cluster: c.cfg.Cluster, UserAgentName: "weft"}
	versions := c.Versions()
	for i, t := range c.cfg.TypeURLs {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, VersionInfo: versions[t]}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			return false, fmt.Errorf("send request: %w", err)
		}
	}
	// gRPC opens a stream only on a ready connection (streams fail fast),
	// so the stream is connected once its requests are out.
	c.setConnected(true)
	c.log.Info("ads stream connected")
	if c.cfg.OnConnected != nil {
		c.cfg.OnConnected()
	}
	// Recv runs on a goroutine of its own so that a held response is
	// released after MaxHold even when nothing else arrives.
	type received struct {
		resp *discoveryv3.DiscoveryResponse
		err  error
	}
	recv := make(chan received)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			select {
			case recv <- received{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	h := &holder{pending: map[string]*discoveryv3.DiscoveryResponse{}}
	var timer <-chan time.Time
	for {
		var acks []*discoveryv3.DiscoveryRequest
		select {
		case r := <-recv:
			if r.err != nil {
				return responded, fmt.Errorf("receive: %w", r.err)
			}
			responded = true
			acks = c.handle(ctx, h, r.resp)
			c.mu.Lock()
			c.stats.Responses++
			c.mu.Unlock()
		case <-timer:
			acks = c.release(ctx, h, true)
		case <-sctx.Done():
			return responded, sctx.Err()
		}
		for _, a := range acks {
			if err := st.Send(a); err != nil {
				return true, fmt.Errorf("send ack: %w", err)
			}
		}
		switch {
		case len(h.pending) == 0:
			timer = nil
		case timer == nil:
			timer = time.After(c.cfg.MaxHold)
		}
	}
}

// holder holds, for one stream, the responses not applied yet because the
// configuration they make is not consistent (Config.Consistent).
type holder struct {
	pending map[string]*discoveryv3.DiscoveryResponse
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v && !c.connected {
		c.stats.Connects++
	}
	c.connected = v
}

// handle takes one response and returns the ACKs or NACKs to send: none
// while it is held, several when it releases held ones.
func (c *Client) handle(ctx context.Context, h *holder, resp *discoveryv3.DiscoveryResponse) []*discoveryv3.DiscoveryRequest {
	t := resp.GetTypeUrl()
	if !slices.Contains(c.cfg.TypeURLs, t) {
		c.log.Warn("ignored a type not subscribed to", keyType, t)
		return []*discoveryv3.DiscoveryRequest{ack(resp, nil)}
	}
	c.mu.Lock()
	cur, have := c.current[t]
	c.mu.Unlock()
	if have && cur.Version == resp.GetVersionInfo() {
		// A held newer version of this type, if any, is withdrawn: the
		// server went back to what is in force.
		delete(h.pending, t)
		c.log.Debug("configuration unchanged", keyType, t, keyVersion, cur.Version)
		return append(c.release(ctx, h, false), ack(resp, nil))
	}
	c.log.Info("configuration received", keyType, t, keyVersion, resp.GetVersionInfo(), keyCount, len(resp.GetResources()))
	h.pending[t] = resp // supersedes a held response of the same type
	return c.release(ctx, h, false)
}

// release applies the held responses with the configuration in force when
// the result is whole and consistent, or when forced (MaxHold passed), and
// returns their ACKs (NACKs when the ApplyFunc refused). An incomplete
// configuration (the first one, before every type arrived) is kept and
// acknowledged without a call, as before any holding.
func (c *Client) release(ctx context.Context, h *holder, force bool) []*discoveryv3.DiscoveryRequest {
	if len(h.pending) == 0 {
		return nil
	}
	current := c.currentCopy()
	candidate := maps.Clone(current)
	types := slices.Sorted(maps.Keys(h.pending))
	for _, t := range types {
		r := h.pending[t]
		candidate[t] = Resources{Version: r.GetVersionInfo(), Items: r.GetResources()}
	}
	acks := func(err error) []*discoveryv3.DiscoveryRequest {
		out := make([]*discoveryv3.DiscoveryRequest, 0, len(types))
		for _, t := range types {
			out = append(out, ack(h.pending[t], err))
		}
		clear(h.pending)
		return out
	}
	complete := c.complete(candidate)
	if !complete {
		c.mu.Lock()
		c.current = candidate
		c.mu.Unlock()
		return acks(nil)
	}
	if c.cfg.Consistent != nil {
		if err := c.cfg.Consistent(candidate); err != nil {
			if !force {
				c.mu.Lock()
				c.stats.Held++
				c.mu.Unlock()
				c.log.Debug("holding a configuration until the types it refers to arrive", keyHeld, types, keyError, err)
				return nil
			}
			c.mu.Lock()
			c.stats.Forced++
			c.mu.Unlock()
			c.log.Warn("applying a configuration whose references do not resolve: the rest did not arrive in time",
				keyHeld, types, keyError, err, "maxHold", c.cfg.MaxHold)
		}
	}
	changed := types
	if !c.complete(current) {
		changed = slices.Clone(c.cfg.TypeURLs) // the first whole configuration
	}
	if err := c.apply(ctx, Update{Config: candidate, Changed: changed}); err != nil {
		c.mu.Lock()
		c.stats.Rejected++
		c.mu.Unlock()
		c.log.Warn("rejected configuration; keeping the last good one", keyType, types, keyError, err)
		return acks(err)
	}
	c.mu.Lock()
	c.current = candidate
	c.stats.Applied++
	c.mu.Unlock()
	if c.cfg.CacheFile != "" {
		if err := writeCache(c.cfg.CacheFile, c.cfg.NodeID, candidate); err != nil {
			c.log.Warn("write cache file", keyPath, c.cfg.CacheFile, keyError, err)
		}
	}
	return acks(nil)
}

// ack is the ACK of resp, or its NACK with err as detail.
//
// A NACK names the rejected version, not the last good one the protocol
// suggests: go-control-plane's snapshot cache answers a request whose
// version differs from its snapshot's at once, so naming the last good
// version would bring the same configuration straight back, in a loop.
// This way the cache waits for the next change; the client keeps applying
// the last good configuration either way.
func ack(resp *discoveryv3.DiscoveryResponse, err error) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	if err != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
	}
	return req
}

func (c *Client) currentCopy() map[string]Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.current)
}

func (c *Client) complete(m map[string]Resources) bool {
	for _, t := range c.cfg.TypeURLs {
		if _, ok := m[t]; !ok {
			return false
		}
	}
	return true
}

// loadCache applies the cache file's configuration, if there is a whole
// one for this node id.
func (c *Client) loadCache(ctx context.Context) {
	if c.cfg.CacheFile == "" {
		return
	}
	log := c.log.With(keyPath, c.cfg.CacheFile)
	cfg, err := readCache(c.cfg.CacheFile, c.cfg.NodeID)
	if err != nil {
		log.Warn("ignored cache file", keyError, err)
		return
	}
	if cfg == nil {
		log.Info("no cache file; waiting for the controller")
		return
	}
	for t := range cfg {
		if !slices.Contains(c.cfg.TypeURLs, t) {
			delete(cfg, t)
		}
	}
	if !c.complete(cfg) {
		log.Warn("ignored cache file: it lacks subscribed types")
		return
	}
	if err := c.apply(ctx, Update{Config: cfg, Changed: slices.Clone(c.cfg.TypeURLs), FromCache: true}); err != nil {
		log.Warn("cached configuration rejected; waiting for the controller", keyError, err)
		return
	}
	c.mu.Lock()
	c.current = cfg
	c.stats.Applied++
	c.mu.Unlock()
	log.Info("applied the cached configuration while the controller is not connected")
}
