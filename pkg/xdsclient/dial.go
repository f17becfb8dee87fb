// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Connection tuning, explicit like the server's (controlplane/xds/server).
const (
	// keepaliveTime is how often an idle connection is pinged; the server
	// accepts pings every 15s or slower.
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	// maxRecvMsgSize bounds one discovery response: a large mesh's clusters
	// or listeners of one virtual node can exceed grpc-go's 4 MiB default.
	maxRecvMsgSize = 64 << 20
)

// DialConfig says how to reach the controller.
type DialConfig struct {
	// Server is the controller's xDS address, host:port.
	Server string
	// Token, when set, is sent as "authorization: Bearer <token>".
	Token string
	// TLS, when set, secures the connection; nil is plaintext.
	TLS *tls.Config
	// Options are more dial options (tests).
	Options []grpc.DialOption
}

// Dial returns a connection to the controller. It connects lazily and
// reconnects by itself; the caller closes it.
func Dial(cfg DialConfig) (*grpc.ClientConn, error) {
	if cfg.Server == "" {
		return nil, errors.New("dial controller: no server address")
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: cfg.Token, secure: cfg.TLS != nil}))
	}
	conn, err := grpc.NewClient(cfg.Server, append(opts, cfg.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("dial controller %s: %w", cfg.Server, err)
	}
	return conn, nil
}

// bearer sends a bearer token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false so that a token also works on a
// loopback controller without TLS.
func (b bearer) RequireTransportSecurity() bool { return b.secure }
