// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/test/meshbed"
	"github.com/weft-mesh/weft/test/netsim"
	"github.com/weft-mesh/weft/test/testutil"
)

// commands are the binaries deploy/ runs, built by TestMain.
var commands = []string{"weft-agent", "weft-proxy", "weft-controller", "weftctl"}

// binDir holds the built commands.
var binDir string

func TestMain(m *testing.M) {
	// In a process started into a simulated node (TestUnitCapabilities),
	// this runs its program and exits.
	netsim.RunMain(meshbed.Programs())
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "weft-deploy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	args := []string{"build", "-o", dir + "/"}
	for _, c := range commands {
		args = append(args, "github.com/weft-mesh/weft/cmd/"+c)
	}
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build commands:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// repoRoot is the module root (this package is test/deploy).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// deployPath names a file under deploy/.
func deployPath(t *testing.T, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{repoRoot(t), "deploy"}, elem...)...)
}

// flagDef is one flag of a command: whether it takes a value.
type flagDef struct{ takesValue bool }

var flagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)(?: (\S+))?`)

// commandFlags runs a built command with -h and reads its flag set from
// the usage (flag.PrintDefaults: "  -name type", no type for booleans).
func commandFlags(t *testing.T, name string) map[string]flagDef {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, name), "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -h: %v\n%s", name, err, out.String())
	}
	flags := map[string]flagDef{}
	for _, line := range strings.Split(out.String(), "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = flagDef{takesValue: m[2] != ""}
		}
	}
	if len(flags) < 3 {
		t.Fatalf("%s -h: found only %d flags in:\n%s", name, len(flags), out.String())
	}
	return flags
}

// checkArgs checks that args uses only flags of the command, each with a
// value where it takes one, and no positional arguments; then runs the
// command with args and -version, so that its own flag set parses them
// (values included) without starting it.
func checkArgs(t *testing.T, where, name string, args []string) {
	t.Helper()
	flags := commandFlags(t, name)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: %s takes no positional argument, got %q", where, name, a)
			continue
		}
		n, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		def, ok := flags[n]
		if !ok {
			t.Errorf("%s: %s has no flag -%s", where, name, n)
			continue
		}
		if def.takesValue && !hasValue {
			if i+1 >= len(args) {
				t.Errorf("%s: %s -%s needs a value", where, name, n)
			}
			i++
		}
	}
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, name), append(append([]string{}, args...), "-version")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: %s %s -version: %v\n%s", where, name, strings.Join(args, " "), err, out.String())
	}
}

// requireTool returns the path of a program the test needs, skipping the
// test without it (a failure under WEFT_REQUIRE_PRIVILEGED=1: `make deps`
// installs it).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.SkipOrFail(t, "%s is not installed (make deps installs it): %v", name, err)
	}
	return p
}

// run runs a command and returns its combined output and error.
func run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%s: exit %d", name, ee.ExitCode())
	}
	return out.String(), err
}

// writeFile writes a test file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// chmodX makes a file executable.
func chmodX(path string) error { return os.Chmod(path, 0o755) }
