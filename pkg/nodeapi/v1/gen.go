// SPDX-License-Identifier: Apache-2.0

// Package nodeapiv1 holds the node state message: the desired datapath state
// of one node, sent by the controller and applied by the agent. The Go code
// is generated from nodeapi.proto by `make generate` (Debian's protoc 3.21
// and the protoc-gen-go tool of go.mod) and committed.
package nodeapiv1

//go:generate protoc --plugin=protoc-gen-go=../../../bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative nodeapi.proto
