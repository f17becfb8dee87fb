// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"log/slog"

	"github.com/weft-mesh/weft/agent/datapath"
)

// NewDatapath loads the datapath that cfg describes, or adopts the one a
// previous agent left pinned under cfg.PinPath. It does not mount bpffs;
// see MountBPFFS.
func NewDatapath(cfg Config, log *slog.Logger) (Datapath, error) {
	dc, err := DatapathConfig(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := datapath.New(dc, log.With(keyComponent, "datapath"))
	if err != nil {
		return nil, err
	}
	return d, nil
}
