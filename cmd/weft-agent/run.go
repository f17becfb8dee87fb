// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/pkg/logging"
	"github.com/weft-mesh/weft/pkg/version"
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		lf          logging.Flags
		cfg         agent.Config
		configFile  string
		showVersion bool
		printConfig bool
		over        agent.Config // flag values that override the file
	)
	lf.Register(fs)
	fs.StringVar(&configFile, "config", "", "configuration file (YAML or JSON); see docs/agent.md")
	fs.StringVar(&over.StateFile, "state-file", "", "node state to apply (protojson weft.nodeapi.v1.NodeState); reread when it changes")
	fs.StringVar(&over.NodeName, "node-name", "", "this node's name (default: the host name)")
	fs.StringVar(&over.CgroupRoot, "cgroup-root", "", "cgroup v2 directory the datapath attaches to (default: the cgroup2 mount)")
	fs.StringVar(&over.PinPath, "pin-path", "", "bpffs directory of the pinned maps and links (default "+agent.DefaultPinPath+")")
	fs.StringVar(&over.Proxy.TunnelAddress, "tunnel-address", "", "the node proxy's tunnel listener as other nodes reach it, ip:port (overrides proxy.tunnelAddress)")
	fs.StringVar(&over.MetricsListen, "metrics-listen", "", "address of /metrics, /healthz, /readyz and /debug/ (default "+agent.DefaultMetricsListen+")")
	fs.BoolVar(&printConfig, "print-config", false, "print the effective configuration (file, flags and defaults) and exit")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if showVersion {
		_, err := fmt.Fprintln(stdout, version.Version)
		return err
	}
	if configFile != "" {
		if err := agent.LoadConfigFile(configFile, &cfg); err != nil {
			return err
		}
	}
	for _, o := range []struct {
		dst *string
		v   string
	}{
		{&cfg.StateFile, over.StateFile},
		{&cfg.NodeName, over.NodeName},
		{&cfg.CgroupRoot, over.CgroupRoot},
		{&cfg.PinPath, over.PinPath},
		{&cfg.MetricsListen, over.MetricsListen},
		{&cfg.Proxy.TunnelAddress, over.Proxy.TunnelAddress},
	} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	defaultsErr := cfg.SetDefaults()
	if printConfig {
		j, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		if _, err := stdout.Write(y); err != nil {
			return err
		}
		return errors.Join(defaultsErr, cfg.Validate())
	}
	if err := errors.Join(defaultsErr, cfg.Validate()); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	log, err := lf.Logger(stderr)
	if err != nil {
		return err
	}
	// Start-up binds sockets and loads programs: quick, and not worth
	// cancelling half-way.
	a, err := agent.NewDefault(cfg, log) //nolint:contextcheck // see above
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
