// SPDX-License-Identifier: Apache-2.0

// Package testutil holds the helpers that weft's tests share: the gates of the
// privileged tier, private network namespaces, bpffs and cgroup v2 scratch
// directories, and small polling and port helpers.
//
// # Privileged tests
//
// A test that touches the kernel (loads BPF programs, creates links, mounts
// bpffs, moves processes between cgroups) starts with
//
//	testutil.RequirePrivileged(t)
//	testutil.SkipOnOldKernel(t, "6.6", "tcx")
//
// Each gate skips the test with its reason when the machine cannot run it,
// and fails it instead when the environment variable WEFT_REQUIRE_PRIVILEGED
// is set to a true value ("1"), so a CI run cannot pass by skipping. In -short
// mode RequirePrivileged always skips: `make test-unit` asks for unit tests
// only.
//
// # Isolation
//
// Kernel-touching tests never change the host's network namespace or pin
// objects in the host's bpffs. NewNetNS gives a test a fresh network
// namespace whose Do method runs code inside it on a dedicated OS thread;
// MountBPFFS mounts a private bpffs instance and TempCgroup creates a
// scratch cgroup v2 directory. Each is removed by the test's Cleanup.
//
// The Linux implementations live in *_linux.go files; on other systems the
// same functions skip (or fail, as above) and the methods return
// ErrNotSupported, so `go vet ./...` passes on any OS.
package testutil

import "errors"

// ErrNotSupported is returned by helpers that need Linux when the tests run
// on another operating system.
var ErrNotSupported = errors.New("not supported on this operating system")
