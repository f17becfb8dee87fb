// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/test/testutil"
)

// TestInstallCreatesInterface runs install.sh --net in a test-created
// network namespace: it creates the dummy interface with the proxy's and
// the DNS addresses, up; a second run keeps it as it is; a changed address
// replaces the old one; weft-node-net down removes it.
func TestInstallCreatesInterface(t *testing.T) {
	testutil.RequirePrivileged(t)
	nsenter := requireTool(t, "nsenter")
	ns := testutil.NewNetNS(t)
	inNS := func(args ...string) (string, error) {
		return run(nsenter, append([]string{"--net=" + ns.Path(), "--"}, args...)...)
	}
	root := t.TempDir()
	token := filepath.Join(t.TempDir(), "token")
	writeFile(t, token, "s3cret\n")
	args := []string{
		deployPath(t, "install.sh"), "--mode", "node", "--bin-dir", binDir, "--root", root, "--net",
		"--token-file", token, "--controller", "10.0.0.10:7481", "--node-name", "n1", "--iface", "weft9",
	}
	check := func(when string, want ...string) {
		t.Helper()
		out, err := inNS("ip", "-d", "-o", "link", "show", "dev", "weft9")
		if err != nil {
			t.Fatalf("%s: weft9: %v\n%s", when, err, out)
		}
		// A kernel without CONFIG_DUMMY (this CI's) gets an empty bridge.
		switch {
		case !strings.Contains(out, ",UP"):
			t.Errorf("%s: weft9 is not up: %s", when, out)
		case strings.Contains(out, " dummy "):
			t.Logf("%s: weft9 is a dummy interface", when)
		case strings.Contains(out, " bridge ") && !kernelHasDummy():
			t.Logf("%s: weft9 is a bridge: the kernel has no dummy interfaces", when)
		default:
			t.Errorf("%s: weft9 is not a dummy interface: %s", when, out)
		}
		if ports, _ := inNS("ip", "-o", "link", "show", "master", "weft9"); strings.TrimSpace(ports) != "" {
			t.Errorf("%s: weft9 has ports: %s", when, ports)
		}
		out, err = inNS("ip", "-o", "-4", "addr", "show", "dev", "weft9")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) >= 4 {
				got = append(got, f[3])
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: weft9 has %v, want %v", when, got, want)
		}
	}
	for _, when := range []string{"first run", "second run"} {
		if out, err := inNS(args...); err != nil {
			t.Fatalf("%s: %v\n%s", when, err, out)
		}
		check(when, "169.254.100.1/32", "169.254.100.2/32")
	}
	if out, err := inNS(append(args, "--dns-ip", "169.254.100.3")...); err != nil {
		t.Fatalf("--dns-ip: %v\n%s", err, out)
	}
	check("--dns-ip 169.254.100.3", "169.254.100.1/32", "169.254.100.3/32")

	if out, err := inNS(filepath.Join(root, "usr/local/lib/weft/weft-node-net"), "down", "weft9"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if out, err := inNS("ip", "link", "show", "dev", "weft9"); err == nil {
		t.Errorf("weft9 still exists after down: %s", out)
	}
	// weft-node-net refuses an interface of another kind.
	if _, err := inNS("ip", "link", "add", "weft8", "type", "veth", "peer", "name", "weft8p"); err != nil {
		t.Fatal(err)
	}
	if out, err := inNS(filepath.Join(root, "usr/local/lib/weft/weft-node-net"), "up", "weft8", "169.254.100.1/32"); err == nil || !strings.Contains(out, "neither a dummy") {
		t.Errorf("up on a veth: %v\n%s", err, out)
	}
	// The host's namespace was never touched.
	if out, err := run("ip", "link", "show", "dev", "weft9"); err == nil {
		t.Errorf("weft9 exists in the test's own namespace: %s", out)
	}
}

// kernelHasDummy reports whether the running kernel can create dummy
// interfaces (CONFIG_DUMMY built in or as a module), from /proc/config.gz.
// Without that file it reports true, so that a bridge fails the test.
func kernelHasDummy() bool {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return true
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return true
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return true
	}
	return strings.Contains(string(b), "\nCONFIG_DUMMY=y") || strings.Contains(string(b), "\nCONFIG_DUMMY=m")
}
