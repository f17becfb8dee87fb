// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVagrantfile checks what can be checked of the Vagrant mesh without
// Vagrant (this CI has no VMs): its install.sh command lines use only
// options install.sh has, it defines the controller and both nodes, and
// the Makefile target builds the binaries it syncs and starts them.
func TestVagrantfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	vf := strings.ReplaceAll(string(b), "\\\n", " ")
	help, err := run(deployPath(t, "install.sh"), "--help")
	if err != nil {
		t.Fatalf("install.sh --help: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(--[a-z-]+)`).FindAllStringSubmatch(help, -1) {
		known[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`\| --([a-z-]+)`).FindAllStringSubmatch(help, -1) {
		known["--"+m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("install.sh --help: found only %v", known)
	}
	calls := regexp.MustCompile(`(?m)/opt/weft/deploy/install\.sh[^\n]*`).FindAllString(vf, -1)
	if len(calls) != 2 {
		t.Fatalf("Vagrantfile: %d install.sh calls, want 2 (controller, node)", len(calls))
	}
	for _, c := range calls {
		for _, opt := range regexp.MustCompile(`\s(--[a-z-]+)`).FindAllStringSubmatch(c, -1) {
			if !known[opt[1]] {
				t.Errorf("Vagrantfile: install.sh has no option %s: %s", opt[1], c)
			}
		}
		if !strings.Contains(c, "--bin-dir /opt/weft/bin") {
			t.Errorf("Vagrantfile: %s does not install the synced binaries", c)
		}
	}
	for _, want := range []string{
		`define "controller"`, `"node1" =>`, `"node2" =>`, `define "dev", primary: true`,
		`synced_folder "bin/vagrant", "/opt/weft/bin"`, `synced_folder ".vagrant-mesh", "/opt/weft/shared"`,
	} {
		if !strings.Contains(vf, want) {
			t.Errorf("Vagrantfile lacks %s", want)
		}
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nvagrant-mesh:", "-o $(BIN)/vagrant/ ./cmd/...", ".vagrant-mesh/token", "vagrant up controller node1 node2", "vagrant up dev"} {
		if !strings.Contains(string(mk), want) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
}
