#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Refreshes the vendored BPF headers of bpf/include. Run it on the pinned
# development machine (Debian 12, docs/development.md) and commit the result;
# `make generate` compiles against these copies only, so the objects do not
# depend on what a contributor has installed.
#
#   vmlinux.h  bpftool btf dump file /sys/kernel/btf/vmlinux format c
#              (the running 6.18 kernel; programs use CO-RE, so the kernel
#              they load on may differ)
#   bpf/*.h    libbpf's BPF-side headers from the Debian package libbpf-dev
#              (/usr/include/bpf), version recorded in bpf/VERSION
set -euo pipefail
cd "$(dirname "$0")"

bpftool btf dump file /sys/kernel/btf/vmlinux format c >vmlinux.h.tmp
mv vmlinux.h.tmp vmlinux.h

for h in bpf_helpers.h bpf_helper_defs.h bpf_endian.h bpf_core_read.h; do
	cp "/usr/include/bpf/$h" "bpf/$h"
done
{
	echo "libbpf-dev $(dpkg-query -W -f='${Version}' libbpf-dev)"
	echo "kernel $(uname -r) (vmlinux.h)"
	echo "bpftool $(bpftool version | head -1)"
} >bpf/VERSION
