// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// nodeSysctl is a setting of the node's network namespace the mesh needs.
type nodeSysctl struct {
	name, want, why string
}

// nodeSysctls are the settings SetNodeSysctls makes.
var nodeSysctls = []nodeSysctl{{
	name: "net.ipv4.tcp_migrate_req",
	want: "1",
	why: "a proxy hand-over moves the connections queued on the old process's listener " +
		"to the new one instead of resetting them",
}}

// SetNodeSysctls makes the settings of the node's network namespace that
// the mesh needs, reading and writing them under procSys (/proc/sys), and
// returns what it changed. Today that is net.ipv4.tcp_migrate_req=1
// (Linux 5.14 and later): when weft-proxy hands its listeners over to a new
// process (SO_REUSEPORT), connections that completed their handshake but
// were not accepted yet by the old process move to the new one instead of
// being reset. A setting that cannot be read or written (an older kernel, a
// read-only /proc/sys in a container) is logged and left: it narrows a
// window, nothing depends on it. Config.KeepNodeSysctls skips this.
func SetNodeSysctls(procSys string, log *slog.Logger) (changed []string) {
	for _, s := range nodeSysctls {
		path := filepath.Join(procSys, filepath.FromSlash(strings.ReplaceAll(s.name, ".", "/")))
		cur, err := os.ReadFile(path)
		if err != nil {
			log.Warn("cannot read a node setting; leaving it", keySysctl, s.name, keyError, err, keyReason, s.why)
			continue
		}
		if string(bytes.TrimSpace(cur)) == s.want {
			continue
		}
		if err := writeSysctl(path, s.want); err != nil {
			log.Warn("cannot set a node setting; leaving it", keySysctl, s.name, keyValue, s.want, keyError, err, keyReason, s.why)
			continue
		}
		log.Info("set a node setting", keySysctl, s.name, keyValue, s.want, keyWas, string(bytes.TrimSpace(cur)), keyReason, s.why)
		changed = append(changed, s.name+"="+s.want)
	}
	return changed
}

func writeSysctl(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(v)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
