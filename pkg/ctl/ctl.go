// SPDX-License-Identifier: Apache-2.0

// Package ctl implements weftctl, the command-line client of the weft
// controller: apply, get, describe and delete, over the files and forms that
// package manifest reads (weft documents, App Mesh Kubernetes resources and App
// Mesh API JSON).
package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/weft-mesh/weft/pkg/client"
	"github.com/weft-mesh/weft/pkg/version"
)

// DefaultServer is the controller address used when neither --server nor
// WEFT_SERVER says otherwise.
const DefaultServer = "http://127.0.0.1:7480"

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

// globals are the flags every command takes.
type globals struct {
	server   string
	token    string
	tokenF   string
	caFile   string
	certFile string
	keyFile  string
	timeout  time.Duration
}

func newGlobals() *globals {
	g := &globals{server: os.Getenv("WEFT_SERVER"), token: os.Getenv("WEFT_TOKEN"), timeout: 30 * time.Second}
	if g.server == "" {
		g.server = DefaultServer
	}
	return g
}

// register adds the global flags to fs with their current values as
// defaults, so that a command's flag set keeps what the top level parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "controller URL (env WEFT_SERVER)")
	fs.StringVar(&g.token, "token", g.token, "bearer token (env WEFT_TOKEN)")
	fs.StringVar(&g.tokenF, "token-file", g.tokenF, "file holding the bearer token")
	fs.StringVar(&g.caFile, "ca-file", g.caFile, "CA bundle that signs the controller's certificate")
	fs.StringVar(&g.certFile, "cert-file", g.certFile, "client certificate for mTLS")
	fs.StringVar(&g.keyFile, "key-file", g.keyFile, "client key for mTLS")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "timeout of each request")
}

func (g *globals) client() (*client.Client, error) {
	tok := g.token
	if g.tokenF != "" {
		b, err := os.ReadFile(g.tokenF)
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return client.New(g.server, client.Options{Token: tok, CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile, Timeout: g.timeout})
}

const usage = `weftctl: the weft mesh command line

Usage:
  weftctl [global flags] <command> [flags] [args]

Commands:
  apply -f PATH...         create or update resources from files, directories or - (stdin)
  get KIND [NAME]          list or show resources (-o table|yaml|json)
  describe KIND NAME       show one resource with its metadata
  delete KIND NAME         delete a resource (or delete -f PATH... in reverse order)
  datapath dump|state      print a node agent's BPF maps or applied state (--agent URL,
                           env WEFT_AGENT, default http://127.0.0.1:9465)
  version                  print the version

KIND is mesh, virtualnode, virtualservice, virtualrouter, route, virtualgateway
or gatewayroute (singular or plural, any case). Resources other than meshes need
--mesh; routes take --router and gateway routes --gateway.

Global flags (accepted before or after the command):
  --server URL   --token T   --token-file F   --ca-file F   --cert-file F   --key-file F   --timeout D
`

// Run runs weftctl with args (without the program name).
func Run(ctx context.Context, args []string, stdio IO) error {
	g := newGlobals()
	fs := flag.NewFlagSet("weftctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = io.WriteString(stdio.Out, usage)
			return nil
		}
		return usageError(err.Error())
	}
	rest := fs.Args()
	if len(rest) == 0 {
		_, _ = io.WriteString(stdio.Err, usage)
		return usageError("no command given")
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "apply":
		return runApply(ctx, g, rest, stdio)
	case "get":
		return runGet(ctx, g, rest, stdio)
	case "describe":
		return runDescribe(ctx, g, rest, stdio)
	case "delete":
		return runDelete(ctx, g, rest, stdio)
	case "datapath":
		return runDatapath(ctx, g, rest, stdio)
	case "version":
		_, err := fmt.Fprintln(stdio.Out, version.Version)
		return err
	case "help":
		_, _ = io.WriteString(stdio.Out, usage)
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", cmd))
}

// UsageError is a wrong invocation; the main maps it to exit code 2.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usageError(msg string) error { return &UsageError{msg: msg} }

// parseInterleaved parses flags that may stand before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
