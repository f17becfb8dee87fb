// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/agent"
)

// unitFiles are the units of deploy/systemd.
func unitFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pat := range []string{"*.service", "*.slice"} {
		m, err := filepath.Glob(deployPath(t, "systemd", pat))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if len(out) < 4 {
		t.Fatalf("found only %d units in deploy/systemd", len(out))
	}
	return out
}

// renderUnits writes the units with @PREFIX@ replaced by a temporary prefix
// holding the built binaries and weft-node-net, as install.sh would.
func renderUnits(t *testing.T) (unitDir string) {
	t.Helper()
	dir := t.TempDir()
	prefix, unitDir := filepath.Join(dir, "prefix"), filepath.Join(dir, "units")
	for _, c := range commands {
		if err := os.MkdirAll(filepath.Join(prefix, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(binDir, c), filepath.Join(prefix, "bin", c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(prefix, "lib", "weft"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(deployPath(t, "systemd", "weft-node-net"), filepath.Join(prefix, "lib", "weft", "weft-node-net")); err != nil {
		t.Fatal(err)
	}
	for _, u := range unitFiles(t) {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(unitDir, filepath.Base(u)), strings.ReplaceAll(string(b), "@PREFIX@", prefix))
	}
	return unitDir
}

// TestSystemdVerify runs systemd-analyze verify on every unit; any message
// (an unknown key, a missing executable) fails, not only its exit code.
func TestSystemdVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	dir := renderUnits(t)
	units, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(sa, append([]string{"verify"}, units...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unit is a parsed unit file: section → key → values (in order).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// readEnvFile reads a systemd EnvironmentFile (KEY=value, "quotes").
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not KEY=value: %q", path, l)
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		}
		env[k] = v
	}
	return env
}

var unitVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// execArgs splits an Exec line as systemd does for these units: $VAR
// splits into words, ${VAR} stays one; variables come from env, and an
// undefined one fails.
func execArgs(t *testing.T, where, line string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(line) {
		if m := unitVar.FindStringSubmatch(w); m != nil && m[0] == w {
			v, ok := env[m[1]]
			if !ok {
				t.Errorf("%s: %s is not set by the unit's EnvironmentFile", where, m[1])
			}
			if strings.HasPrefix(w, "${") {
				out = append(out, v)
			} else {
				out = append(out, strings.Fields(v)...)
			}
			continue
		}
		out = append(out, w)
	}
	return out
}

// TestSystemdExecLines checks that the units run only weft commands with
// flags they define (values parsed by the commands themselves), reading
// the variables from the example environment files, and that the
// configurations they load are the examples' paths.
func TestSystemdExecLines(t *testing.T) {
	for _, path := range unitFiles(t) {
		name := filepath.Base(path)
		u := parseUnit(t, path)
		svc := u["Service"]
		if svc == nil {
			continue
		}
		env := map[string]string{}
		for _, ef := range svc["EnvironmentFile"] {
			example := deployPath(t, "systemd", strings.TrimPrefix(filepath.Base(ef), "-"))
			if filepath.Dir(strings.TrimPrefix(ef, "-")) != "/etc/weft" {
				t.Errorf("%s: EnvironmentFile %s is not in /etc/weft", name, ef)
			}
			for k, v := range readEnvFile(t, example) {
				env[k] = v
			}
		}
		for _, key := range []string{"ExecStartPre", "ExecStart", "ExecStop"} {
			for _, line := range svc[key] {
				where := name + " " + key
				args := execArgs(t, where, line, env)
				bin := args[0]
				if !strings.HasPrefix(bin, "@PREFIX@") {
					bin = strings.TrimLeft(bin, "+-@!:") // systemd's Exec prefixes
				}
				switch base := filepath.Base(bin); {
				case bin == "/bin/sh":
				case !strings.HasPrefix(bin, "@PREFIX@/"):
					t.Errorf("%s: runs %s, want @PREFIX@/... (install.sh sets the prefix)", where, bin)
				case base == "weft-node-net":
					checkNodeNetArgs(t, where, args[1:])
				case slices.Contains(commands, base):
					checkArgs(t, where, base, args[1:])
				default:
					t.Errorf("%s: runs %s, not a weft command", where, bin)
				}
			}
		}
	}
}

// TestSystemdExampleConfigs loads the example configurations of
// deploy/systemd with the components' strict loaders, and checks that the
// proxy's environment agrees with the agent's configuration.
func TestSystemdExampleConfigs(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(deployPath(t, "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ctrl := loadControllerConfig(t, "controller.yaml", read("controller.yaml"))
	ag := loadAgentConfig(t, "agent.yaml", read("agent.yaml"), "")
	checkNodeFiles(t, "deploy/systemd examples", ag,
		readEnvFile(t, deployPath(t, "systemd", "proxy.env")),
		readEnvFile(t, deployPath(t, "systemd", "node-net.env")))
	// The controller reads its tokens from the credential its unit loads.
	u := parseUnit(t, deployPath(t, "systemd", "weft-controller.service"))
	if !slices.Contains(u["Service"]["LoadCredential"], "tokens:/etc/weft/tokens") ||
		ctrl.Auth.BearerTokenFile != "/run/credentials/weft-controller.service/tokens" {
		t.Errorf("controller.yaml auth.bearerTokenFile %q does not read the unit's credential tokens", ctrl.Auth.BearerTokenFile)
	}
	if sd := u["Service"]["StateDirectory"]; len(sd) != 1 || ctrl.DataDir != "/var/lib/"+sd[0] {
		t.Errorf("controller.yaml dataDir %q is not the unit's StateDirectory %v", ctrl.DataDir, sd)
	}
}

// checkNodeFiles checks that proxy.env and node-net.env agree with the
// agent's configuration: node id, controller, proxy address, mark, and the
// addresses of the interface.
func checkNodeFiles(t *testing.T, where string, ag agent.Config, proxyEnv, netEnv map[string]string) {
	t.Helper()
	for _, c := range []struct{ key, want string }{
		{"WEFT_NODE_ID", ag.NodeName},
		{"WEFT_XDS_SERVER", ag.XDS.Server},
		{"WEFT_PROXY_LISTEN", ag.Proxy.Address},
	} {
		if got := proxyEnv[c.key]; got != c.want {
			t.Errorf("%s: proxy.env %s=%q, the agent has %q", where, c.key, got, c.want)
		}
	}
	if m, err := strconv.ParseUint(proxyEnv["WEFT_PROXY_MARK"], 0, 32); err != nil || m == 0 || uint32(m) != ag.Proxy.Mark {
		t.Errorf("%s: proxy.env WEFT_PROXY_MARK=%q, the agent's proxy.mark is %#x", where, proxyEnv["WEFT_PROXY_MARK"], ag.Proxy.Mark)
	}
	if ag.XDS.TokenFile != "/etc/weft/token" {
		t.Errorf("%s: agent xds.tokenFile %q, weft-proxy.service reads /etc/weft/token", where, ag.XDS.TokenFile)
	}
	addrs := strings.Fields(netEnv["WEFT_ADDRESSES"])
	for _, a := range []string{ag.Proxy.Address, ag.DNS.Listen} {
		host, _, _ := net.SplitHostPort(a)
		if !slices.Contains(addrs, host+"/32") {
			t.Errorf("%s: node-net.env WEFT_ADDRESSES=%q lacks %s/32 (agent %s)", where, netEnv["WEFT_ADDRESSES"], host, a)
		}
	}
	if netEnv["WEFT_IFACE"] == "" {
		t.Errorf("%s: node-net.env sets no WEFT_IFACE", where)
	}
}
