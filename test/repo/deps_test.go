// SPDX-License-Identifier: Apache-2.0

package repo_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/test/testutil"
)

// forbiddenForControlplane are the packages (and their subpackages) that
// controlplane/... must not depend on, even indirectly: the controller runs
// without privileges and builds on any OS.
var forbiddenForControlplane = []string{
	"github.com/cilium/ebpf",
	"github.com/weft-mesh/weft/agent",
}

// goCommand returns the go command on PATH, or skips the test (fails it
// under WEFT_REQUIRE_PRIVILEGED=1) when there is none.
func goCommand(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "no go command on PATH: %v", err)
	}
	return path
}

// run runs the go command in the module root and returns its standard output.
func run(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), goCommand(t), args...)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestControlplaneDeps checks the dependency direction of house style item 5
// over the transitive imports, which depguard (direct imports only) cannot.
func TestControlplaneDeps(t *testing.T) {
	t.Parallel()
	out := run(t, nil, "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./controlplane/...")
	importers := map[string][]string{}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkgs = append(pkgs, fields[0])
		for _, imp := range fields[1:] {
			importers[imp] = append(importers[imp], fields[0])
		}
	}
	if len(pkgs) == 0 {
		t.Fatal("go list ./controlplane/... listed no packages")
	}
	for _, pkg := range pkgs {
		for _, bad := range forbiddenForControlplane {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("controlplane/... depends on %s (imported by %s)", pkg, strings.Join(importers[pkg], ", "))
			}
		}
	}
}

// TestControlplaneBuildsElsewhere builds the controller's packages for
// darwin/arm64: nothing under controlplane/ may need Linux.
func TestControlplaneBuildsElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling is slow the first time; skipped in -short mode")
	}
	t.Parallel()
	root := moduleRoot(t)
	pkgs := []string{"./controlplane/...", "./test/testutil/..."}
	for _, cmd := range []string{"weft-controller", "weftctl"} {
		if _, err := os.Stat(filepath.Join(root, "cmd", cmd)); err == nil {
			pkgs = append(pkgs, "./cmd/"+cmd)
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	run(t, []string{"GOOS=darwin", "GOARCH=arm64", "CGO_ENABLED=0"}, append([]string{"build", "-o", os.DevNull}, pkgs...)...)
}
