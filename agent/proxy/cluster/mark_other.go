// SPDX-License-Identifier: Apache-2.0

//go:build !linux

package cluster

import "errors"

func setMark(uintptr, uint32) error {
	return errors.New("SO_MARK is supported on Linux only")
}
