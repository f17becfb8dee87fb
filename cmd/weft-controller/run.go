// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/xds/server"
	"github.com/weft-mesh/weft/pkg/logging"
	"github.com/weft-mesh/weft/pkg/version"
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		lf          logging.Flags
		cfg         controlplane.Config
		configFile  string
		showVersion bool
		dataDir     string
		apiListen   string
		xdsListen   string
	)
	lf.Register(fs)
	fs.StringVar(&configFile, "config", "", "configuration file (YAML or JSON): account, region, quotas, auth, registry")
	fs.StringVar(&dataDir, "data-dir", "", "directory of the store (overrides the file's dataDir)")
	fs.StringVar(&apiListen, "api-listen", "", "address of the API, /healthz, /readyz and /metrics (default 127.0.0.1:7480)")
	fs.StringVar(&xdsListen, "xds-listen", "", "address of ADS and the endpoint registry, gRPC (default 127.0.0.1:7481)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if showVersion {
		_, err := fmt.Fprintln(stdout, version.Version)
		return err
	}
	if configFile != "" {
		if err := controlplane.LoadConfigFile(configFile, &cfg); err != nil {
			return err
		}
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if apiListen != "" {
		cfg.APIListen = apiListen
	}
	if cfg.APIListen == "" {
		cfg.APIListen = "127.0.0.1:7480"
	}
	if xdsListen != "" {
		cfg.XDSListen = xdsListen
	}
	if cfg.XDSListen == "" {
		cfg.XDSListen = server.DefaultListen
	}
	log, err := lf.Logger(stderr)
	if err != nil {
		return err
	}
	c, err := controlplane.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
