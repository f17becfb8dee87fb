// SPDX-License-Identifier: Apache-2.0

// Package test is the root of weft's shared test code; it holds no code
// itself. Its subpackages are:
//
//   - testutil: helpers every test tier uses (privilege gates, network
//     namespaces, bpffs and cgroup scratch space, polling).
//   - repo: repository-wide rules checked as tests (one package doc per
//     package, SPDX headers, the controller's dependency boundary).
//   - testsum: the command that turns `go test -json` into the compact report
//     and the closing "tests: N passed, N failed, N skipped" line of make test.
//   - netsim: simulated nodes (a network namespace on a shared bridge, a
//     cgroup v2 subtree and a private bpffs each) and pod-like workloads, with
//     a way to run test code as a real process inside a workload.
//   - sdkconv: drives the AWS SDK's App Mesh client with weft's resources.
//   - demo: the program behind `make demo`.
//   - bench: the datapath comparison behind `make bench`.
//   - e2e: end-to-end tests of whole meshes on simulated nodes, behind the
//     e2e build tag.
//   - deploy: checks deploy/ (manifests, systemd units, install.sh, the
//     Grafana dashboard, the Vagrantfile) against the code it deploys.
//
// # Test tiers
//
// Unit tests need nothing but Go: no root, no network beyond loopback. They
// run everywhere, including macOS, and are all that `make test-unit` (go test
// -short) runs.
//
// Privileged tests load BPF programs, create network namespaces, links and
// cgroups on the real kernel. They live beside the code they test and begin
// with testutil.RequirePrivileged(t), usually followed by
// testutil.SkipOnOldKernel(t, "6.6", "tcx"). Without root they skip with the
// reason; with WEFT_REQUIRE_PRIVILEGED=1, as .ci/run sets it, a skip is a
// failure. `make test-priv` runs only the packages that hold them.
//
// End-to-end tests (test/e2e, build tag e2e) run controllers, agents and
// proxies on several simulated nodes on one machine: each node is a network
// namespace, a cgroup v2 subtree and a private bpffs; traffic stays on the
// machine. `make e2e` runs them.
//
// `make test` runs every tier the machine allows (the development and CI
// machines are root on Linux 6.18) and then a bounded run of every fuzz
// target. See docs/development.md.
package test
