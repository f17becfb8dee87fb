// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
)

// tour holds what the steps share.
type tour struct {
	bin     string // directory of the built commands
	server  string // controller URL
	samples string // directory of the sample sets
	out     io.Writer
	step    int
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	once := fs.Bool("once", false, "run the tour and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "weft-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	t := &tour{bin: filepath.Join(tmp, "bin"), samples: filepath.Join(root, "pkg/manifest/testdata/samples"), out: os.Stdout}

	t.title("Building weft-controller and weftctl")
	build := exec.CommandContext(ctx, "go", "build", "-o", t.bin+"/", "./cmd/weft-controller", "./cmd/weftctl")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	t.ok("built into " + t.bin)

	addr, err := freeAddr(ctx)
	if err != nil {
		return err
	}
	t.server = "http://" + addr
	t.title("Starting weft-controller (store: bbolt in a temporary directory)")
	ctrlLog, err := os.Create(filepath.Join(tmp, "controller.log"))
	if err != nil {
		return err
	}
	defer ctrlLog.Close()
	// Not bound to ctx: on Ctrl-C the controller gets SIGTERM and time to
	// shut down cleanly (below), not SIGKILL.
	ctrl := exec.CommandContext(context.WithoutCancel(ctx), filepath.Join(t.bin, "weft-controller"), "--data-dir", filepath.Join(tmp, "data"), "--api-listen", addr)
	ctrl.Stdout, ctrl.Stderr = ctrlLog, ctrlLog
	if err := ctrl.Start(); err != nil {
		return fmt.Errorf("start controller: %w", err)
	}
	defer func() {
		_ = ctrl.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = ctrl.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = ctrl.Process.Kill()
			<-done
		}
		fmt.Fprintf(t.out, "\nstopped the controller (pid %d) and removed %s\n", ctrl.Process.Pid, tmp)
	}()
	if err := waitReady(ctx, t.server); err != nil {
		return err
	}
	t.ok(fmt.Sprintf("controller pid %d serving the App Mesh API on %s", ctrl.Process.Pid, t.server))

	steps := []func(context.Context) error{t.applyKubernetes, t.applyOtherForms, t.showRejections, t.showReferences, t.showSDK, t.showMetrics}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return err
		}
	}
	t.title("Done")
	if *once {
		fmt.Fprintln(t.out, "The tour is over (--once).")
		return nil
	}
	fmt.Fprintf(t.out, "The controller keeps running. Try it yourself:\n  %s/weftctl --server %s get virtualnodes --mesh demo\n  aws appmesh list-meshes --endpoint-url %s --region local\n", t.bin, t.server, t.server)
	fmt.Fprintln(t.out, "\nPress Ctrl-C to stop it and clean up.")
	<-ctx.Done()
	return nil
}

func (t *tour) title(s string) {
	t.step++
	fmt.Fprintf(t.out, "\n%s[%d] %s%s\n", t.esc("\033[1m"), t.step, s, t.esc("\033[0m"))
}

func (t *tour) ok(s string) {
	fmt.Fprintf(t.out, "  %s✓%s %s\n", t.esc("\033[32m"), t.esc("\033[0m"), s)
}

// esc returns a terminal escape sequence, or nothing when the output is not
// a terminal.
func (t *tour) esc(seq string) string {
	if f, ok := t.out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return seq
		}
	}
	return ""
}

// weftctl runs weftctl, prints the command and its output, and returns the
// output and the error.
func (t *tour) weftctl(ctx context.Context, args ...string) (string, error) {
	shown := "weftctl " + strings.Join(args, " ")
	shown = strings.ReplaceAll(shown, t.samples+"/", "")
	fmt.Fprintf(t.out, "  $ %s\n", shown)
	cmd := exec.CommandContext(ctx, filepath.Join(t.bin, "weftctl"), append([]string{"--server", t.server}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	out := strings.ReplaceAll(buf.String(), t.samples+"/", "")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		fmt.Fprintf(t.out, "    %s\n", sc.Text())
	}
	return out, err
}

func (t *tour) applyKubernetes(ctx context.Context) error {
	t.title("Applying App Mesh Kubernetes resources as they are (S0 base, S1 canary, S2 header routing)")
	files := []string{"k8s/s0.yaml", "k8s/s1.yaml", "k8s/s2.yaml"}
	args := []string{"apply"}
	for _, f := range files {
		args = append(args, "-f", filepath.Join(t.samples, f))
	}
	out, err := t.weftctl(ctx, args...)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	t.ok(fmt.Sprintf("%d resources created in one transaction", strings.Count(out, " created")))
	if _, err := t.weftctl(ctx, "get", "routes", "--mesh", "demo"); err != nil {
		return err
	}
	t.title("Re-applying the same files changes nothing")
	out, err = t.weftctl(ctx, args...)
	if err != nil {
		return err
	}
	t.ok(fmt.Sprintf("%d resources unchanged, no version moved", strings.Count(out, " unchanged")))
	t.title("Reading a route back as a weft document")
	_, err = t.weftctl(ctx, "get", "route", "canary", "--mesh", "demo", "--router", "color_shop", "-o", "yaml")
	return err
}

func (t *tour) applyOtherForms(ctx context.Context) error {
	t.title("The other two forms: App Mesh API JSON (describe output) and weft documents")
	for _, f := range []string{"api/s3.json", "weft/s4.yaml", "k8s/s5.yaml"} {
		args := []string{"apply", "-f", filepath.Join(t.samples, "k8s/s0.yaml"), "-f", filepath.Join(t.samples, "k8s/s1.yaml"), "-f", filepath.Join(t.samples, "k8s/s2.yaml"), "-f", filepath.Join(t.samples, f)}
		if _, err := t.weftctl(ctx, args...); err != nil {
			return err
		}
	}
	_, err := t.weftctl(ctx, "get", "virtualservices", "--mesh", "demo")
	return err
}

func (t *tour) showRejections(ctx context.Context) error {
	t.title("Bad input is refused with the file, the document and the field, and nothing is written")
	bad := `apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: broken, namespace: shop}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  routes:
    - name: split
      httpRoute:
        match: {prefix: /}
        action:
          weightedTargets:
            - {virtualNodeRef: {name: blue}, weight: 90}
            - {virtualNodeRef: {name: green}, weight: 110}
`
	f := filepath.Join(os.TempDir(), "weft-demo-broken.yaml")
	if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
		return err
	}
	defer os.Remove(f)
	_, err := t.weftctl(ctx, "apply", "-f", filepath.Join(t.samples, "k8s/s0.yaml"), "-f", f)
	if err == nil {
		return errors.New("the broken router was accepted")
	}
	t.ok("refused; the mesh is as it was")
	return nil
}

func (t *tour) showReferences(ctx context.Context) error {
	t.title("References are kept: a node that a route targets cannot be deleted")
	if _, err := t.weftctl(ctx, "delete", "virtualnode", "blue_shop", "--mesh", "demo"); err == nil {
		return errors.New("a referenced node was deleted")
	}
	t.ok("ResourceInUse names the route that holds it")
	return nil
}

func (t *tour) showSDK(ctx context.Context) error {
	t.title("The AWS SDK for Go's App Mesh client, pointed at weft")
	c := sdk.New(sdk.Options{
		Region: "local", BaseEndpoint: aws.String(t.server), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDDEMO", "demo", ""),
	})
	out, err := c.ListVirtualNodes(ctx, &sdk.ListVirtualNodesInput{MeshName: aws.String("demo")})
	if err != nil {
		return fmt.Errorf("sdk: %w", err)
	}
	for _, n := range out.VirtualNodes {
		fmt.Fprintf(t.out, "    %-24s version %d  %s\n", *n.VirtualNodeName, *n.Version, *n.Arn)
	}
	r, err := c.DescribeRoute(ctx, &sdk.DescribeRouteInput{MeshName: aws.String("demo"), VirtualRouterName: aws.String("color_shop"), RouteName: aws.String("canary")})
	if err != nil {
		return fmt.Errorf("sdk: %w", err)
	}
	for _, wt := range r.Route.Spec.HttpRoute.Action.WeightedTargets {
		fmt.Fprintf(t.out, "    canary → %-12s weight %d\n", *wt.VirtualNode, wt.Weight)
	}
	t.ok("ListVirtualNodes and DescribeRoute answered by weft")
	return nil
}

func (t *tour) showMetrics(ctx context.Context) error {
	t.title("Controller metrics (GET /metrics)")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.server+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "weft_controller_api_requests_total") {
			fmt.Fprintf(t.out, "    %s\n", l)
		}
	}
	return sc.Err()
}

func waitReady(ctx context.Context, server string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("the controller did not become ready in 20s")
}

func freeAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from inside the weft repository")
		}
		dir = parent
	}
}
