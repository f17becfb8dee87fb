// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// validConfig is a configuration that passes Validate without the host.
func validConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		NodeName:      "node-a",
		CgroupRoot:    t.TempDir(),
		StateFile:     filepath.Join(t.TempDir(), "state.json"),
		MetricsListen: "127.0.0.1:0",
	}
}

func TestLoadConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
nodeName: node-a
cgroupRoot: /sys/fs/cgroup/weft
stateFile: /var/lib/weft/state.json
proxy: {address: "169.254.100.1:15001", cgroupPath: system.slice/weft-proxy.service, mark: 0x77}
dns: {listen: "169.254.100.2:53", upstreams: ["10.0.0.2", "[2001:db8::53]:53"]}
telemetry: {interval: 5s, maxLabelSets: 100}
workloads:
  - {cgroupPath: system.slice/orders.service, mesh: demo, virtualNode: orders-v1, listenerPorts: [8080]}
`)
	var cfg Config
	if err := LoadConfigFile(good, &cfg); err != nil {
		t.Fatal(err)
	}
	want := Config{
		NodeName:   "node-a",
		CgroupRoot: "/sys/fs/cgroup/weft",
		StateFile:  "/var/lib/weft/state.json",
		Proxy:      ProxyConfig{Address: "169.254.100.1:15001", CgroupPath: "system.slice/weft-proxy.service", Mark: 0x77},
		DNS:        DNSConfig{Listen: "169.254.100.2:53", Upstreams: []string{"10.0.0.2", "[2001:db8::53]:53"}},
		Telemetry:  TelemetryConfig{Interval: Duration(5 * time.Second), MaxLabelSets: 100},
		Workloads:  []VMWorkload{{CgroupPath: "system.slice/orders.service", Mesh: "demo", VirtualNode: "orders-v1", ListenerPorts: []uint32{8080}}},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	cfg.setConstDefaults()
	if err := cfg.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}

	for name, tc := range map[string]struct{ body, want string }{
		"unknown field":  {"nodeName: a\nstatePath: /x\n", `unknown field "statePath"`},
		"nested unknown": {"proxy: {addr: 1.2.3.4:5}\n", `unknown field "addr"`},
		"bad duration":   {"telemetry: {interval: soon}\n", "invalid duration"},
		"wrong type":     {"workloads: {cgroupPath: a}\n", "cannot unmarshal"},
	} {
		var cfg Config
		err := LoadConfigFile(write(strings.ReplaceAll(name, " ", "-")+".yaml", tc.body), &cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, tc.want)
		}
	}
	if err := LoadConfigFile(filepath.Join(dir, "absent.yaml"), &cfg); err == nil || !strings.HasPrefix(err.Error(), "read config:") {
		t.Errorf("absent file: err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cfg := Config{
		CgroupRoot:    "relative",
		MetricsListen: "nope",
		Proxy:         ProxyConfig{Address: "169.254.100.1", CgroupPath: "/abs"},
		DNS:           DNSConfig{Listen: "0.0.0.0:53", Upstreams: []string{"10.0.0.1:x", "0.0.0.0:53"}},
		Telemetry:     TelemetryConfig{Interval: -1, MaxLabelSets: -1, MaxConnections: -1},
		Workloads: []VMWorkload{
			{CgroupPath: "../escape", VirtualNode: "v"},
			{CgroupPath: "a/b", Mesh: "m", VirtualNode: "v", ListenerPorts: []uint32{0, 70000}, Attributes: map[string]string{"has space": "x", "ok": ""}},
			{CgroupPath: "a/./b/", Mesh: "m"},
		},
	}
	cfg.setConstDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("validate succeeded")
	}
	for _, w := range []string{
		"nodeName: is required",
		`cgroupRoot: want an absolute path, got "relative"`,
		"stateFile: is required",
		"metricsListen:",
		"proxy.address:",
		`proxy.cgroupPath: "/abs" must be relative`,
		"dns.listen: 0.0.0.0:53 is not an address a query can be redirected to",
		"dns.upstreams[0]: want ip or ip:port",
		"dns.upstreams[1]: 0.0.0.0:53 is the agent's own listener",
		"telemetry.interval: must not be negative",
		"telemetry.maxLabelSets: want at least 1",
		"telemetry.maxConnections: want at least 1",
		`workloads[0].cgroupPath: "../escape" leaves the cgroup root`,
		"workloads[0].mesh: is required",
		"workloads[1].listenerPorts: 0 is not a port",
		"workloads[1].listenerPorts: 70000 is not a port",
		`workloads[1].attributes["has space"]: key: must match`,
		`workloads[1].attributes["ok"]: value: must be 1 to 1024 characters`,
		"workloads[2].cgroupPath: a/./b/ is also workloads[1]",
		"workloads[2].virtualNode: is required",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
	if err := validConfig(t).withDefaults().Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func (c Config) withDefaults() Config {
	c.setConstDefaults()
	return c
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	var c Config
	c.setConstDefaults()
	if c.PinPath != "/sys/fs/bpf/weft" || c.Proxy.Address != "169.254.100.1:15001" || c.DNS.Listen != "169.254.100.2:53" ||
		c.MetricsListen != "127.0.0.1:9465" || c.Telemetry.MaxLabelSets != DefaultMaxLabelSets || c.Telemetry.MaxConnections != DefaultMaxConnections {
		t.Errorf("defaults: %+v", c)
	}
}

func TestCgroup2Mount(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, info, want string }{
		{"unified", "24 1 0:22 / /sys rw - sysfs sysfs rw\n35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup"},
		{"hybrid", "35 24 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n36 35 0:31 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw\n37 35 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "/sys/fs/cgroup/unified"},
		{"escaped", "36 35 0:31 / /mnt/my\\040cgroups rw - cgroup2 none rw\n", "/mnt/my cgroups"},
	}
	for _, tt := range tests {
		got, err := cgroup2Mount(strings.NewReader(tt.info))
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := cgroup2Mount(strings.NewReader("37 35 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")); err == nil {
		t.Error("v1 only: want an error")
	}
}

func TestParseUpstream(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.0.0.2":         "10.0.0.2:53",
		"10.0.0.2:5353":    "10.0.0.2:5353",
		"2001:db8::53":     "[2001:db8::53]:53",
		"[2001:db8::53]:1": "[2001:db8::53]:1",
		"::ffff:10.0.0.2":  "10.0.0.2:53",
	} {
		got, err := ParseUpstream(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseUpstream(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dns.google", "10.0.0.2:", "[::1]"} {
		if _, err := ParseUpstream(in); err == nil {
			t.Errorf("ParseUpstream(%q): want an error", in)
		}
	}
}

func TestUnderBPFFSMount(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"/sys/fs/bpf/weft":   true,
		"/sys/fs/bpf":        true,
		"/sys/fs/bpf/../x":   false,
		"/sys/fs/bpfx/weft":  false,
		"/tmp/bpffs/weft":    false,
		"/sys/fs/bpf/a/b/c/": true,
	} {
		if got := underBPFFSMount(p); got != want {
			t.Errorf("underBPFFSMount(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestDatapathConfig(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	cfg.Proxy = ProxyConfig{Address: "[::ffff:169.254.100.1]:15001", CgroupPath: "proxy", Mark: 7}
	cfg.Telemetry.Interval = Duration(3 * time.Second)
	if err := os.Mkdir(filepath.Join(cfg.CgroupRoot, "proxy"), 0o700); err != nil {
		t.Fatal(err)
	}
	dc, err := DatapathConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := CgroupID(filepath.Join(cfg.CgroupRoot, "proxy"))
	if err != nil {
		t.Fatal(err)
	}
	if dc.CgroupPath != cfg.CgroupRoot || dc.PinPath != DefaultPinPath || dc.ProxyAddr.String() != "169.254.100.1:15001" ||
		dc.ProxyCgroupID != id || id == 0 || dc.ProxyMark != 7 || dc.DNSAddr.String() != DefaultDNSListen || dc.TelemetryInterval != 3*time.Second {
		t.Errorf("datapath config: %+v", dc)
	}
	cfg.Proxy.CgroupPath = "absent"
	if _, err := DatapathConfig(cfg); err == nil || !strings.Contains(err.Error(), "proxy cgroup") {
		t.Errorf("absent proxy cgroup: err = %v", err)
	}
}
