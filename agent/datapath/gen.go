// SPDX-License-Identifier: Apache-2.0

package datapath

// The BPF programs of bpf/sock, compiled with the pinned Debian clang and the
// vendored headers of bpf/include. The output (sock_bpfel.go, sock_bpfel.o)
// is committed; `make check-generate` regenerates and diffs it. Only bpfel
// is built: the agent ships for amd64 and arm64, both little-endian.
//
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror" -tags linux -target bpfel -type weft_conn_event -type weft_counter -type weft_kind -type weft_accel_state -type weft_decide_io sock ../../bpf/sock/sock.c -- -I../../bpf/include
