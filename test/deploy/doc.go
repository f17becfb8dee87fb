// SPDX-License-Identifier: Apache-2.0

// Package deploy tests what deploy/ ships against the code it deploys: the
// Kubernetes manifests decode strictly into the k8s.io/api types, their
// command lines parse with the flag sets of the built binaries (at the
// paths deploy/Dockerfile gives them), and their ConfigMaps load with the
// components' own strict config loaders; the systemd units pass
// systemd-analyze verify and name only existing binaries and flags, and (as
// root) a controller and two simulated nodes run with each unit's
// capability bounding set; the example configs load and validate;
// install.sh installs into a temporary root, idempotently, and creates the
// node-local interface in a test-created network namespace (as root);
// every metric the Grafana dashboard queries is registered by a real agent,
// proxy or controller, and the probes of the manifests answer on those
// components; the Vagrantfile calls install.sh with options it has.
//
// The tests build the commands of cmd/ once (TestMain). systemd-analyze and
// shellcheck come from `make deps`; without them the tests that need them
// skip, or fail under WEFT_REQUIRE_PRIVILEGED=1.
package deploy
