// SPDX-License-Identifier: Apache-2.0

// Package version holds the version of the running weft binary.
//
// The Makefile's build target sets Version at link time from
// `git describe --always --dirty`:
//
//	go build -ldflags "-X github.com/weft-mesh/weft/pkg/version.Version=v0.1.0-3-gabcdef0" ./cmd/...
//
// Binaries built without that flag (go run, go test) report "dev".
package version

// Version is the version of this build. The linker sets it; nothing else may
// write it.
var Version = "dev"
