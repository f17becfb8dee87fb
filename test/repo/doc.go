// SPDX-License-Identifier: Apache-2.0

// Package repo holds no code: its tests check rules that span the whole
// repository.
//
//   - Every Go package has exactly one package doc comment (house style item
//     21), and every Go file that is not generated starts with the line
//     "// SPDX-License-Identifier: Apache-2.0".
//   - controlplane/... depends neither on github.com/cilium/ebpf nor on
//     github.com/weft-mesh/weft/agent/..., directly or through another
//     package, and builds for an operating system other than Linux (house
//     style item 5: the controller runs unprivileged, anywhere).
//
// The tests walk the source tree from the module root and run the go
// command found on PATH.
package repo
