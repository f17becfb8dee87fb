// SPDX-License-Identifier: Apache-2.0

//go:build linux

package deploy

import (
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestShellcheck lints the shell scripts of deploy/.
func TestShellcheck(t *testing.T) {
	sc := requireTool(t, "shellcheck")
	out, err := run(sc, deployPath(t, "install.sh"), deployPath(t, "systemd", "weft-node-net"))
	if err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// install runs install.sh with args and returns its output.
func install(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(deployPath(t, "install.sh"), args...)
	if err != nil {
		t.Fatalf("install.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// snapshot maps every file under root to its content and mode, symlinks to
// their targets.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			out[rel] = "-> " + target
			return err
		}
		b, err := os.ReadFile(p)
		out[rel] = fi.Mode().String() + " " + fi.ModTime().String() + " " + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInstallNode installs node mode into a temporary root twice: the
// files are the units (prefix set), the built binaries and configurations
// that load with the agent's loader and agree with the proxy's
// environment; the second run changes nothing.
func TestInstallNode(t *testing.T) {
	root := t.TempDir()
	token := filepath.Join(t.TempDir(), "token")
	writeFile(t, token, "s3cret\n")
	args := []string{
		"--mode", "node", "--bin-dir", binDir, "--root", root, "--token-file", token,
		"--controller", "10.0.0.10:7481", "--node-name", "node-7", "--node-address", "10.0.0.27", "--mark", "0x1234",
	}
	out := install(t, args...)
	if strings.Contains(out, "has 169.254") {
		t.Errorf("install.sh --root created the interface without --net:\n%s", out)
	}

	for _, b := range []string{"weft-agent", "weft-proxy"} {
		if !bytesEqual(t, filepath.Join(binDir, b), filepath.Join(root, "usr/local/bin", b)) {
			t.Errorf("%s: installed binary differs from the built one", b)
		}
	}
	if !bytesEqual(t, deployPath(t, "systemd", "weft-node-net"), filepath.Join(root, "usr/local/lib/weft/weft-node-net")) {
		t.Error("weft-node-net: installed script differs")
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/weft/token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token: %v, mode %v, want 0600", err, fi.Mode())
	}
	for _, u := range []string{"weft-agent.service", "weft-proxy.service", "weft-node-net.service", "weft.slice"} {
		b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "@PREFIX@") || (strings.HasSuffix(u, ".service") && !strings.Contains(string(b), "/usr/local/")) {
			t.Errorf("%s: prefix not set", u)
		}
	}
	if _, err := exec.LookPath("systemctl"); err == nil {
		for _, u := range []string{"weft-agent.service", "weft-proxy.service", "weft-node-net.service"} {
			if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants", u)); err != nil {
				t.Errorf("%s not enabled: %v", u, err)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(root, "etc/weft/agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ag := loadAgentConfig(t, "installed agent.yaml", string(b), "")
	if ag.NodeName != "node-7" || ag.XDS.Server != "10.0.0.10:7481" || ag.XDS.NodeAddress != "10.0.0.27" || ag.Proxy.Mark != 0x1234 {
		t.Errorf("installed agent.yaml: nodeName %q, xds.server %q, xds.nodeAddress %q, proxy.mark %#x: not the options", ag.NodeName, ag.XDS.Server, ag.XDS.NodeAddress, ag.Proxy.Mark)
	}
	checkNodeFiles(t, "installed", ag,
		readEnvFile(t, filepath.Join(root, "etc/weft/proxy.env")),
		readEnvFile(t, filepath.Join(root, "etc/weft/node-net.env")))

	// Idempotent: nothing is written again (contents, modes and times stay).
	before := snapshot(t, root)
	time.Sleep(10 * time.Millisecond)
	if out := install(t, args...); strings.Contains(out, "wrote") {
		t.Errorf("second run wrote files:\n%s", out)
	}
	if after := snapshot(t, root); !maps.Equal(before, after) {
		t.Errorf("second run changed the tree:\nbefore %v\nafter  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	// A changed option rewrites only what depends on it.
	out = install(t, append(args, "--node-name", "node-8")...)
	if !strings.Contains(out, "wrote /etc/weft/agent.yaml") || !strings.Contains(out, "wrote /etc/weft/proxy.env") || strings.Contains(out, "bin/") {
		t.Errorf("--node-name node-8: want agent.yaml and proxy.env rewritten, nothing else:\n%s", out)
	}
}

// TestInstallController installs controller mode twice: a generated token
// is kept, the configuration loads with the controller's loader.
func TestInstallController(t *testing.T) {
	root := t.TempDir()
	args := []string{"--mode", "controller", "--bin-dir", binDir, "--root", root, "--api-listen", "0.0.0.0:8480"}
	install(t, args...)
	tokens := filepath.Join(root, "etc/weft/tokens")
	tok, err := os.ReadFile(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).Match(tok) {
		t.Errorf("generated token %q: want 64 hex digits and a newline", tok)
	}
	if fi, _ := os.Stat(tokens); fi.Mode().Perm() != 0o600 {
		t.Errorf("tokens mode %v, want 0600", fi.Mode())
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/weft/controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadControllerConfig(t, "installed controller.yaml", string(b))
	if cfg.APIListen != "0.0.0.0:8480" || cfg.DataDir != "/var/lib/weft-controller" {
		t.Errorf("installed controller.yaml: apiListen %q dataDir %q", cfg.APIListen, cfg.DataDir)
	}
	before := snapshot(t, root)
	if out := install(t, args...); strings.Contains(out, "wrote") || strings.Contains(out, "generated") {
		t.Errorf("second run wrote files:\n%s", out)
	}
	if !maps.Equal(before, snapshot(t, root)) {
		t.Error("second run changed the tree (the token must be kept)")
	}
}

// TestInstallRefusesBadOptions checks that bad options fail, with a
// message naming the option, and nothing written.
func TestInstallRefusesBadOptions(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	writeFile(t, token, "s3cret\n")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no mode", []string{"--bin-dir", binDir}, []string{"--mode"}},
		{"node without controller and token", []string{"--mode", "node", "--bin-dir", binDir}, []string{"--controller: is required", "--token-file: is required"}},
		{
			"bad addresses",
			[]string{"--mode", "node", "--bin-dir", binDir, "--token-file", token, "--controller", "ctl", "--proxy-ip", "169.254.1", "--dns-ip", "x", "--mark", "0"},
			[]string{"--controller: want host:port", "--proxy-ip", "--dns-ip", "--mark"},
		},
		{"same proxy and dns", []string{"--mode", "node", "--bin-dir", binDir, "--token-file", token, "--controller", "c:1", "--dns-ip", "169.254.100.1"}, []string{"--dns-ip: is the proxy's address"}},
		{"missing binaries", []string{"--mode", "controller", "--bin-dir", t.TempDir()}, []string{"weft-controller is missing"}},
		{"relative root", []string{"--mode", "controller", "--bin-dir", binDir, "--root", "rel"}, []string{"--root: want an absolute path"}},
		{"unknown option", []string{"--mode", "controller", "--colour", "blue"}, []string{"unknown option --colour"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			cmd := exec.Command(deployPath(t, "install.sh"), append(tc.args, "--root", root)...)
			if slices.Contains(tc.args, "--root") {
				cmd = exec.Command(deployPath(t, "install.sh"), tc.args...)
			}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("accepted:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(root); err == nil {
				t.Errorf("wrote %s", root)
			}
		})
	}
}
