// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultDrainTimeout          = 30 * time.Second
	DefaultRetryBufferBytes      = 1 << 20
	DefaultIdleTimeout           = time.Hour
	DefaultListenerFilterTimeout = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 10 * time.Second
)

// Config is the proxy's own configuration; what it routes comes from Update.
type Config struct {
	// OutboundListen is the address (host:port) of the listener the
	// datapath redirects L7 connections to. Empty means none.
	OutboundListen string
	// AdminListen is the address of /metrics, /ready and /config_dump.
	// Empty means none.
	AdminListen string
	// TunnelListen is the address (host:port) of the tunnel listener:
	// HTTP/2 CONNECT streams from other nodes' proxies to the local
	// workloads, served by their virtual nodes' inbound listeners. Empty
	// means none (inbound listeners are then not served).
	TunnelListen string
	// BindOverrides replaces, by listener name, the address a directly
	// bound listener (a virtual gateway's) binds, e.g. for tests or when
	// the port is taken on the host.
	BindOverrides map[string]string
	// DrainTimeout bounds how long Run waits for in-flight requests and
	// TCP connections once its context ends. Zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// RetryBufferBytes is how much of a request body is kept to replay it
	// on a retry; a larger body is not retried. Zero means
	// DefaultRetryBufferBytes; negative disables buffering.
	RetryBufferBytes int
	// IdleTimeout closes downstream connections idle that long. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ListenerFilterTimeout bounds the wait for the first bytes (a TLS
	// ClientHello) when a filter chain matches server names or a transport
	// protocol. Zero means
	// DefaultListenerFilterTimeout.
	ListenerFilterTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake of a filter chain with
	// a DownstreamTlsContext (unless the chain sets
	// transport_socket_connect_timeout). Zero means
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration
	// DisableReusePort binds without SO_REUSEPORT (which lets a new
	// process bind the same addresses before the old one drains).
	DisableReusePort bool
}

// SetDefaults fills in the zero fields.
func (c *Config) SetDefaults() {
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RetryBufferBytes == 0 {
		c.RetryBufferBytes = DefaultRetryBufferBytes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ListenerFilterTimeout == 0 {
		c.ListenerFilterTimeout = DefaultListenerFilterTimeout
	}
	if c.TLSHandshakeTimeout == 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	for name, addr := range map[string]string{"outbound listen": c.OutboundListen, "admin listen": c.AdminListen, "tunnel listen": c.TunnelListen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for name, addr := range c.BindOverrides {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("bind override of %s: %w", name, err))
		}
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, errors.New("drain timeout is negative"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, errors.New("idle timeout is negative"))
	}
	if c.ListenerFilterTimeout < 0 {
		errs = append(errs, errors.New("listener filter timeout is negative"))
	}
	if c.TLSHandshakeTimeout < 0 {
		errs = append(errs, errors.New("tls handshake timeout is negative"))
	}
	return errors.Join(errs...)
}

// Deps are the proxy's collaborators.
type Deps struct {
	// Clusters is the upstream cluster manager. Required.
	Clusters Clusters
	// OriginalDst recovers where redirected connections were going.
	// Required with Config.OutboundListen.
	OriginalDst OriginalDestination
	// Registerer receives the weft_proxy_* metrics; nil means a private
	// registry. Gatherer serves /metrics; nil means that registry (or
	// none when Registerer is not also a Gatherer).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// OpenLog opens an access log file by the path the configuration
	// names. Nil means append to the file (created 0644).
	OpenLog func(path string) (io.Writer, error)
	// Tunnel secures the tunnel listener (Identities): mutual TLS with
	// the mesh CA and the callers' identities for authorization. Nil
	// serves plaintext h2c and checks no caller.
	Tunnel TunnelSecurity
}

// TunnelSecurity is the tunnel listener's mutual TLS.
type TunnelSecurity interface {
	// ServerConfig is the listener's TLS configuration; it must require and
	// verify a client certificate.
	ServerConfig() *tls.Config
	// CallerID returns the node id (mesh/<mesh>/virtualNode/<name> or
	// virtualGateway/<name>) a verified client certificate stands for.
	CallerID(cs *tls.ConnectionState) (string, error)
}

func openLogFile(path string) (io.Writer, error) {
	switch path {
	case "/dev/stdout":
		return os.Stdout, nil
	case "/dev/stderr":
		return os.Stderr, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644) //nolint:gosec // the path comes from the mesh configuration
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return f, nil
}
