// SPDX-License-Identifier: Apache-2.0

package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/agent"
	"github.com/weft-mesh/weft/controlplane"
)

// kustomization is the part of kustomize's Kustomization that
// deploy/kubernetes uses; decoding it strictly catches any other field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images"`
	SecretGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"options"`
	} `json:"secretGenerator"`
}

// manifests are the typed objects of deploy/kubernetes.
type manifests struct {
	namespaces  []*corev1.Namespace
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	pvcs        map[string]*corev1.PersistentVolumeClaim
	services    map[string]*corev1.Service
	deployments map[string]*appsv1.Deployment
	daemonSets  map[string]*appsv1.DaemonSet
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// loadManifests decodes every document of the kustomization's resources
// strictly (unknown or duplicate fields fail) into its k8s.io/api type.
func loadManifests(t *testing.T) (*manifests, kustomization) {
	t.Helper()
	dir := deployPath(t, "kubernetes")
	var k kustomization
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	// Every manifest of the directory is a resource of the kustomization.
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(k.Resources, base) {
			t.Errorf("kustomization.yaml: %s is not in resources", base)
		}
	}
	m := &manifests{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}, services: map[string]*corev1.Service{},
		deployments: map[string]*appsv1.Deployment{}, daemonSets: map[string]*appsv1.DaemonSet{},
	}
	for _, r := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("kustomization.yaml: resource %s: %v", r, err)
		}
		for i, doc := range docSeparator.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s#%d", r, i)
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj interface{ GetName() string }
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				obj = strict(t, where, doc, &corev1.Namespace{})
				m.namespaces = append(m.namespaces, obj.(*corev1.Namespace))
			case "v1 ConfigMap":
				o := strict(t, where, doc, &corev1.ConfigMap{})
				m.configMaps[o.Name], obj = o, o
			case "v1 Secret":
				o := strict(t, where, doc, &corev1.Secret{})
				m.secrets[o.Name], obj = o, o
			case "v1 PersistentVolumeClaim":
				o := strict(t, where, doc, &corev1.PersistentVolumeClaim{})
				m.pvcs[o.Name], obj = o, o
			case "v1 Service":
				o := strict(t, where, doc, &corev1.Service{})
				m.services[o.Name], obj = o, o
			case "apps/v1 Deployment":
				o := strict(t, where, doc, &appsv1.Deployment{})
				m.deployments[o.Name], obj = o, o
			case "apps/v1 DaemonSet":
				o := strict(t, where, doc, &appsv1.DaemonSet{})
				m.daemonSets[o.Name], obj = o, o
			default:
				t.Fatalf("%s: unexpected %s %s (add it to this test)", where, meta.APIVersion, meta.Kind)
			}
			if obj.GetName() == "" {
				t.Errorf("%s: no metadata.name", where)
			}
		}
	}
	return m, k
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// strict decodes one YAML document into obj, refusing unknown and
// duplicate fields.
func strict[T any](t *testing.T, where, doc string, obj *T) *T {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatalf("%s: strict decode into %T: %v", where, obj, err)
	}
	return obj
}

// TestKubernetesManifests checks the objects of deploy/kubernetes: their
// command lines against the binaries' flag sets, their ConfigMaps against
// the config loaders, and that controller, agent and proxy agree on
// addresses, token, mark and probe ports.
func TestKubernetesManifests(t *testing.T) {
	m, k := loadManifests(t)
	for _, want := range []string{"weft-controller", "weft-agent"} {
		if m.configMaps[want] == nil {
			t.Fatalf("no ConfigMap %s", want)
		}
	}
	ctrl, node := m.deployments["weft-controller"], m.daemonSets["weft-node"]
	if ctrl == nil || node == nil {
		t.Fatalf("want Deployment weft-controller and DaemonSet weft-node, got %d deployments and %d daemon sets", len(m.deployments), len(m.daemonSets))
	}
	if m.services["weft-controller"] == nil || len(m.pvcs) != 1 {
		t.Fatal("want Service weft-controller and one PersistentVolumeClaim")
	}
	// The token Secret comes from the user's file, under a fixed name that
	// the pods mount, and has no default value in the manifests.
	if len(m.secrets) != 0 {
		t.Errorf("Secrets in the manifests (%d): the token comes from kustomization.yaml's secretGenerator", len(m.secrets))
	}
	if g := k.SecretGenerator; len(g) != 1 || g[0].Name != "weft-token" || !slices.Equal(g[0].Files, []string{"token"}) || !g[0].Options.DisableNameSuffixHash {
		t.Errorf("kustomization.yaml: want one secretGenerator weft-token from the file token, without a name suffix; got %+v", g)
	}
	for _, img := range k.Images {
		if img.Name == "" {
			t.Error("kustomization.yaml: an image without a name")
		}
	}

	// Every container runs a weft command (or weft-node-net) with flags the
	// command has, at the path where deploy/Dockerfile puts it; $(VAR)
	// references name env vars of the container.
	dockerfile, err := os.ReadFile(deployPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	pods := map[string]*corev1.PodSpec{"Deployment weft-controller": &ctrl.Spec.Template.Spec, "DaemonSet weft-node": &node.Spec.Template.Spec}
	for name, spec := range pods {
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			where := name + " container " + c.Name
			if len(c.Command) == 0 {
				t.Errorf("%s: no command (the image has no entrypoint)", where)
				continue
			}
			args := slices.Concat(c.Command[1:], c.Args)
			for i, a := range args {
				args[i] = expandEnv(t, where, a, c.Env)
			}
			switch bin := path.Base(c.Command[0]); bin {
			case "weft-node-net":
				if !strings.Contains(string(dockerfile), "COPY deploy/systemd/weft-node-net "+c.Command[0]+"\n") {
					t.Errorf("%s: deploy/Dockerfile does not copy weft-node-net to %s", where, c.Command[0])
				}
				checkNodeNetArgs(t, where, args)
			case "weft-agent", "weft-proxy", "weft-controller":
				if dir := path.Dir(c.Command[0]); dir != "/usr/local/bin" || !strings.Contains(string(dockerfile), "COPY --from=build /out/ /usr/local/bin/") {
					t.Errorf("%s: %s is in %s, deploy/Dockerfile does not put it there", where, bin, dir)
				}
				if !strings.Contains(string(dockerfile), "./cmd/"+bin+" ") {
					t.Errorf("%s: deploy/Dockerfile does not build ./cmd/%s", where, bin)
				}
				checkArgs(t, where, bin, args)
			default:
				t.Errorf("%s: runs %s, not a weft command", where, c.Command[0])
			}
		}
	}

	// The controller's ConfigMap loads strictly and validates.
	ctrlCfg := loadControllerConfig(t, "ConfigMap weft-controller", m.configMaps["weft-controller"].Data["controller.yaml"])
	agentCfg := loadAgentConfig(t, "ConfigMap weft-agent", m.configMaps["weft-agent"].Data["agent.yaml"], "test-node")

	cc := container(t, &ctrl.Spec.Template.Spec, "controller")
	ac := container(t, &node.Spec.Template.Spec, "agent")
	pc := container(t, &node.Spec.Template.Spec, "proxy")
	proxyArgs := flagValues(pc.Args)

	// Mounts: config files and tokens where the configs say.
	mounted(t, "controller config", cc, "/etc/weft/controller.yaml", "controller.yaml", ctrl.Spec.Template.Spec.Volumes, "weft-controller")
	mounted(t, "agent config", ac, "/etc/weft/agent.yaml", "agent.yaml", node.Spec.Template.Spec.Volumes, "weft-agent")
	mounted(t, "controller auth.bearerTokenFile", cc, ctrlCfg.Auth.BearerTokenFile, "token", ctrl.Spec.Template.Spec.Volumes, "weft-token")
	mounted(t, "agent xds.tokenFile", ac, agentCfg.XDS.TokenFile, "token", node.Spec.Template.Spec.Volumes, "weft-token")
	mounted(t, "proxy -xds-token-file", pc, proxyArgs["xds-token-file"], "token", node.Spec.Template.Spec.Volumes, "weft-token")

	// The controller listens where the Service and the nodes connect.
	svc := m.services["weft-controller"]
	apiPort, xdsPort := port(t, "apiListen", ctrlCfg.APIListen), port(t, "xdsListen", ctrlCfg.XDSListen)
	checkServicePort(t, svc, cc, "api", apiPort)
	checkServicePort(t, svc, cc, "xds", xdsPort)
	want := fmt.Sprintf("%s.%s.svc:%d", svc.Name, k.Namespace, xdsPort)
	if agentCfg.XDS.Server != want || proxyArgs["xds-server"] != want {
		t.Errorf("agent xds.server %q and proxy -xds-server %q, want the Service's %q", agentCfg.XDS.Server, proxyArgs["xds-server"], want)
	}
	if ctrlCfg.DataDir != ctrlCfgMount(cc) {
		t.Errorf("controller dataDir %s is not the PVC's mount %s", ctrlCfg.DataDir, ctrlCfgMount(cc))
	}

	// Agent and proxy agree on the proxy's address, the mark, the pins and
	// the cgroup root; the init container puts the addresses on weft0.
	if proxyArgs["outbound-listen"] != agentCfg.Proxy.Address {
		t.Errorf("proxy -outbound-listen %q, agent proxy.address %q", proxyArgs["outbound-listen"], agentCfg.Proxy.Address)
	}
	if mark, err := strconv.ParseUint(proxyArgs["mark"], 0, 32); err != nil || uint32(mark) != agentCfg.Proxy.Mark || mark == 0 {
		t.Errorf("proxy -mark %q, agent proxy.mark %#x: want the same non-zero mark", proxyArgs["mark"], agentCfg.Proxy.Mark)
	}
	if proxyArgs["pin-path"] != agentCfg.PinPath || proxyArgs["cgroup-root"] != agentCfg.CgroupRoot {
		t.Errorf("proxy -pin-path %q -cgroup-root %q, agent pinPath %q cgroupRoot %q", proxyArgs["pin-path"], proxyArgs["cgroup-root"], agentCfg.PinPath, agentCfg.CgroupRoot)
	}
	if proxyArgs["node-id"] != "$(NODE_NAME)" || !slices.Contains(ac.Args, "$(NODE_NAME)") {
		t.Errorf("agent and proxy must both take the node name: proxy -node-id %q, agent args %v", proxyArgs["node-id"], ac.Args)
	}
	initArgs := strings.Join(container(t, &node.Spec.Template.Spec, "node-net").Command, " ")
	for _, a := range []string{agentCfg.Proxy.Address, agentCfg.DNS.Listen} {
		host, _, _ := net.SplitHostPort(a)
		if !strings.Contains(initArgs, " "+host+"/32") {
			t.Errorf("init container %q does not put %s on the interface", initArgs, host)
		}
	}

	// The node's pod: host network, bpffs shared both ways with the
	// agent, the host's cgroup2 hierarchy.
	spec := node.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("DaemonSet weft-node: hostNetwork is false")
	}
	checkHostMount(t, ac, spec.Volumes, "/sys/fs/bpf", corev1.MountPropagationBidirectional)
	checkHostMount(t, pc, spec.Volumes, "/sys/fs/bpf", corev1.MountPropagationHostToContainer)
	checkHostMount(t, ac, spec.Volumes, agentCfg.CgroupRoot, "")
	if sc := ac.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("agent: not privileged (Bidirectional propagation and BPF need it)")
	}

	// Probes hit the ports the components listen on; TestProbesAndMetrics
	// checks that the paths answer on the real components.
	metricsPort := port(t, "agent metricsListen", agentCfg.MetricsListen)
	adminPort := port(t, "proxy -admin-listen", proxyArgs["admin-listen"])
	for _, p := range []struct {
		c    *corev1.Container
		port int
	}{{cc, apiPort}, {ac, metricsPort}, {pc, adminPort}} {
		for _, probe := range []*corev1.Probe{p.c.ReadinessProbe, p.c.LivenessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				t.Errorf("container %s: want HTTP readiness and liveness probes", p.c.Name)
				continue
			}
			if got := resolvePort(t, p.c, probe.HTTPGet.Port.String()); got != p.port {
				t.Errorf("container %s: probe %s on port %d, the component listens on %d", p.c.Name, probe.HTTPGet.Path, got, p.port)
			}
		}
	}
}

// probePaths are the readiness and liveness paths of the manifests, per
// component, for TestProbesAndMetrics.
func probePaths(t *testing.T) map[string][]string {
	t.Helper()
	m, _ := loadManifests(t)
	out := map[string][]string{}
	add := func(comp string, c *corev1.Container) {
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p != nil && p.HTTPGet != nil {
				out[comp] = append(out[comp], p.HTTPGet.Path)
			}
		}
	}
	add("controller", container(t, &m.deployments["weft-controller"].Spec.Template.Spec, "controller"))
	add("agent", container(t, &m.daemonSets["weft-node"].Spec.Template.Spec, "agent"))
	add("proxy", container(t, &m.daemonSets["weft-node"].Spec.Template.Spec, "proxy"))
	return out
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv replaces $(VAR) as the kubelet does, failing on a variable the
// container does not define.
func expandEnv(t *testing.T, where, s string, env []corev1.EnvVar) string {
	t.Helper()
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		for _, e := range env {
			if e.Name == name {
				return "test-" + strings.ToLower(name)
			}
		}
		t.Errorf("%s: $(%s) is not an env var of the container", where, name)
		return ref
	})
}

// checkNodeNetArgs checks a weft-node-net command line: up IFACE ADDR...
func checkNodeNetArgs(t *testing.T, where string, args []string) {
	t.Helper()
	if len(args) < 3 || args[0] != "up" {
		t.Errorf("%s: want weft-node-net up IFACE ADDR..., got %v", where, args)
		return
	}
	for _, a := range args[2:] {
		if _, _, err := net.ParseCIDR(a); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// flagValues maps "-name value" pairs of args to name → value.
func flagValues(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(args); i += 2 {
		out[strings.TrimLeft(args[i], "-")] = args[i+1]
	}
	return out
}

// mounted checks that file is the key of a ConfigMap or Secret volume named
// source, mounted in c.
func mounted(t *testing.T, what string, c *corev1.Container, file, key string, vols []corev1.Volume, source string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range vols {
			if vols[i].Name == vm.Name {
				vol = &vols[i]
			}
		}
		if vol == nil {
			t.Errorf("container %s: mount %s has no volume", c.Name, vm.Name)
			continue
		}
		var src string
		switch {
		case vol.ConfigMap != nil:
			src = vol.ConfigMap.Name
		case vol.Secret != nil:
			src = vol.Secret.SecretName
		default:
			continue
		}
		if src != source {
			continue
		}
		if (vm.SubPath == key && vm.MountPath == file) || (vm.SubPath == "" && path.Join(vm.MountPath, key) == file) {
			return
		}
	}
	t.Errorf("%s: %s is not key %s of %s mounted in container %s", what, file, key, source, c.Name)
}

func ctrlCfgMount(c *corev1.Container) string {
	for _, vm := range c.VolumeMounts {
		if vm.Name == "data" {
			return vm.MountPath
		}
	}
	return ""
}

func port(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return n
}

// resolvePort turns a probe's port (a number or a container port's name)
// into a number.
func resolvePort(t *testing.T, c *corev1.Container, p string) int {
	t.Helper()
	for _, cp := range c.Ports {
		if cp.Name == p {
			return int(cp.ContainerPort)
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("container %s: no port named %s", c.Name, p)
	}
	return n
}

func checkServicePort(t *testing.T, svc *corev1.Service, c *corev1.Container, name string, want int) {
	t.Helper()
	if got := resolvePort(t, c, name); got != want {
		t.Errorf("controller port %s is %d, the config listens on %d", name, got, want)
	}
	for _, sp := range svc.Spec.Ports {
		if sp.TargetPort.String() == name {
			return
		}
	}
	t.Errorf("Service %s: no port targets %s", svc.Name, name)
}

// checkHostMount checks that c mounts the hostPath volume of hostPath at
// the same path, with the propagation given (empty: any).
func checkHostMount(t *testing.T, c *corev1.Container, vols []corev1.Volume, hostPath string, prop corev1.MountPropagationMode) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		for _, v := range vols {
			if v.Name != vm.Name || v.HostPath == nil || v.HostPath.Path != hostPath || vm.MountPath != hostPath {
				continue
			}
			if prop != "" && (vm.MountPropagation == nil || *vm.MountPropagation != prop) {
				t.Errorf("container %s: %s mounted with propagation %v, want %s", c.Name, hostPath, vm.MountPropagation, prop)
			}
			return
		}
	}
	t.Errorf("container %s: the host's %s is not mounted at %s", c.Name, hostPath, hostPath)
}

// loadControllerConfig loads a controller configuration with the
// controller's strict loader and validates it.
func loadControllerConfig(t *testing.T, where, content string) controlplane.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "controller.yaml")
	writeFile(t, f, content)
	var cfg controlplane.Config
	if err := controlplane.LoadConfigFile(f, &cfg); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return cfg
}

// loadAgentConfig loads an agent configuration with the agent's strict
// loader, fills the defaults as weft-agent does (nodeName from the flag
// when the file has none) and validates it.
func loadAgentConfig(t *testing.T, where, content, nodeName string) agent.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, f, content)
	var cfg agent.Config
	if err := agent.LoadConfigFile(f, &cfg); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if cfg.NodeName == "" {
		cfg.NodeName = nodeName
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	if err := cfg.SetDefaults(); err != nil {
		t.Fatalf("%s: defaults: %v", where, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	return cfg
}

// bytesEqual reports whether two files hold the same bytes.
func bytesEqual(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
