// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package meshbed

import "github.com/weft-mesh/weft/test/netsim"

// Programs returns no programs outside Linux: the mesh needs Linux.
func Programs() netsim.Programs { return nil }
