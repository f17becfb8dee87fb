// SPDX-License-Identifier: Apache-2.0

package xds

import (
	"context"
	"fmt"
	"log/slog"

	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
)

// Logger adapts a *slog.Logger to go-control-plane's printf-style
// log.Logger: each line becomes one record with the constant message
// "go-control-plane" and the formatted text under "detail".
type Logger struct{ Log *slog.Logger }

var _ gcplog.Logger = Logger{}

// Debugf implements log.Logger.
func (l Logger) Debugf(format string, args ...any) { l.log(slog.LevelDebug, format, args) }

// Infof implements log.Logger.
func (l Logger) Infof(format string, args ...any) { l.log(slog.LevelInfo, format, args) }

// Warnf implements log.Logger.
func (l Logger) Warnf(format string, args ...any) { l.log(slog.LevelWarn, format, args) }

// Errorf implements log.Logger.
func (l Logger) Errorf(format string, args ...any) { l.log(slog.LevelError, format, args) }

func (l Logger) log(lvl slog.Level, format string, args []any) {
	if l.Log == nil || !l.Log.Enabled(context.Background(), lvl) {
		return
	}
	l.Log.Log(context.Background(), lvl, "go-control-plane", "detail", fmt.Sprintf(format, args...))
}
