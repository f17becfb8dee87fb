// SPDX-License-Identifier: Apache-2.0

package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/appmesh"
	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/controlplane"
	"github.com/weft-mesh/weft/controlplane/store"
	"github.com/weft-mesh/weft/pkg/appmesh"
	"github.com/weft-mesh/weft/pkg/ctl"
	"github.com/weft-mesh/weft/pkg/manifest"
	"github.com/weft-mesh/weft/test/sdkconv"
)

// controller runs a controller on a fresh data directory for one test.
func controller(t *testing.T) (*controlplane.Controller, string) {
	t.Helper()
	c, err := controlplane.New(context.Background(), controlplane.Config{DataDir: t.TempDir(), APIListen: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return c, "http://" + c.Addr().String()
}

// weftctl runs the command line against server.
func weftctl(t *testing.T, server string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := ctl.Run(context.Background(), append([]string{"--server", server}, args...), ctl.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return out.String(), err
}

const samples = "../manifest/testdata/samples"

// sampleSets are the files of each sample set of appmesh-model.md §16, per
// form; S1–S6 and S8 stand on S0, S2 also on S1 (its routes target blue
// and green), S5 on S1 and S2.
func sampleSets(form, ext string) map[string][]string {
	f := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(samples, form, n+ext))
		}
		return out
	}
	return map[string][]string{
		"S0": f("s0"), "S1": f("s0", "s1"), "S2": f("s0", "s1", "s2"), "S3": f("s0", "s3"),
		"S4": f("s0", "s4"), "S5": f("s0", "s1", "s2", "s5"), "S6": f("s0", "s6"),
		"S7": f("s7"), "S8": f("s0", "s8"),
	}
}

func allSampleSets() map[string][]string {
	sets := map[string][]string{}
	for form, ext := range map[string]string{"k8s": ".yaml", "weft": ".yaml", "api": ".json"} {
		for name, files := range sampleSets(form, ext) {
			sets[name+"/"+form] = files
		}
	}
	sets["S9/api"] = []string{filepath.Join(samples, "api", "s9-deps.json"), filepath.Join(samples, "api", "s9.yaml")}
	return sets
}

func sortedKeys(m map[string][]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// wantSpec is what the controller should store for a document: its spec with
// the defaults Describe returns.
func wantSpec(t *testing.T, r appmesh.Resource) any {
	t.Helper()
	b, _ := json.Marshal(r.Spec)
	spec, _ := r.Ref.Kind.NewSpec()
	if err := json.Unmarshal(b, spec); err != nil {
		t.Fatal(err)
	}
	appmesh.Default(r.Ref.Kind, spec)
	return generic(t, spec)
}

func generic(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSampleSetsThroughWeftctl(t *testing.T) {
	sets := allSampleSets()
	for _, name := range sortedKeys(sets) {
		files := sets[name]
		t.Run(name, func(t *testing.T) {
			_, server := controller(t)
			args := []string{"apply"}
			for _, f := range files {
				args = append(args, "-f", f)
			}
			out, err := weftctl(t, server, args...)
			if err != nil {
				t.Fatalf("apply: %v\n%s", err, out)
			}
			docs, err := manifest.Load(files, nil, manifest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(out, " created\n"); n != len(docs) {
				t.Errorf("apply created %d of %d resources:\n%s", n, len(docs), out)
			}
			// Re-applying changes nothing.
			out, err = weftctl(t, server, args...)
			if err != nil {
				t.Fatalf("re-apply: %v", err)
			}
			if n := strings.Count(out, " unchanged\n"); n != len(docs) {
				t.Errorf("re-apply left %d of %d unchanged:\n%s", n, len(docs), out)
			}
			// Each resource reads back equal, as YAML and as JSON.
			for _, d := range docs {
				r := d.Resource.Ref
				get := []string{"get", strings.ToLower(string(r.Kind)), r.Name, "-o", "yaml"}
				if r.Kind != appmesh.KindMesh {
					get = append(get, "--mesh", r.Mesh)
				}
				switch r.Kind {
				case appmesh.KindRoute:
					get = append(get, "--router", r.Parent)
				case appmesh.KindGatewayRoute:
					get = append(get, "--gateway", r.Parent)
				}
				y, err := weftctl(t, server, get...)
				if err != nil {
					t.Fatalf("%s: %v", strings.Join(get, " "), err)
				}
				back, err := manifest.Unmarshal([]byte(y))
				if err != nil || len(back) != 1 {
					t.Fatalf("read back %s: %v\n%s", r, err, y)
				}
				if back[0].Ref != r {
					t.Errorf("read back ref %+v, want %+v", back[0].Ref, r)
				}
				if back[0].Metadata.Version != 1 {
					t.Errorf("%s: version %d after apply and re-apply, want 1", r, back[0].Metadata.Version)
				}
				if diff := cmp.Diff(wantSpec(t, d.Resource), generic(t, back[0].Spec)); diff != "" {
					t.Errorf("%s reads back different (-applied +stored):\n%s", r, diff)
				}
				if diff := cmp.Diff(generic(t, d.Resource.Tags), generic(t, back[0].Tags)); diff != "" {
					t.Errorf("%s tags differ:\n%s", r, diff)
				}
				js, err := weftctl(t, server, append(get[:len(get):len(get)], "-o", "json")...)
				if err != nil || !json.Valid([]byte(js)) {
					t.Errorf("-o json: %v\n%s", err, js)
				}
			}
			// The table lists what is there.
			out, err = weftctl(t, server, "get", "meshes")
			if err != nil || !strings.Contains(out, docs[0].Resource.Ref.Mesh) {
				t.Errorf("get meshes: %v\n%s", err, out)
			}
		})
	}
}

func TestSampleSetsThroughTheAWSSDK(t *testing.T) {
	sets := allSampleSets()
	for _, name := range sortedKeys(sets) {
		if !strings.HasSuffix(name, "/k8s") && name != "S9/api" {
			continue // one form per set is enough here; the forms agree (pkg/manifest)
		}
		files := sets[name]
		t.Run(name, func(t *testing.T) {
			_, server := controller(t)
			c := sdk.New(sdk.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(server), RetryMaxAttempts: 1,
				Credentials: credentials.NewStaticCredentialsProvider("AKIDDUMMY", "dummy", ""),
			})
			ctx := context.Background()
			docs, err := manifest.Load(files, nil, manifest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				if err := sdkconv.Create(ctx, c, &d.Resource); err != nil {
					t.Fatalf("create %s: %v", d.Resource.Ref, err)
				}
			}
			for _, d := range docs {
				v, err := sdkconv.Update(ctx, c, &d.Resource)
				if err != nil {
					t.Fatalf("update %s: %v", d.Resource.Ref, err)
				}
				if v != 1 {
					t.Errorf("%s: an update with the same spec moved the version to %d", d.Resource.Ref, v)
				}
				js, v, err := sdkconv.Describe(ctx, c, d.Resource.Ref)
				if err != nil {
					t.Fatalf("describe %s: %v", d.Resource.Ref, err)
				}
				var got any
				_ = json.Unmarshal(js, &got)
				if diff := cmp.Diff(wantSpec(t, d.Resource), got); diff != "" {
					t.Errorf("%s reads back different through the SDK (-applied +got):\n%s", d.Resource.Ref, diff)
				}
				if v != 1 {
					t.Errorf("%s: version %d", d.Resource.Ref, v)
				}
			}
		})
	}
}

// TestInvalidCorpus applies every document set of testdata/invalid through
// weftctl: each is refused with the expected field path and rule, and the
// store is left exactly as it was.
func TestInvalidCorpus(t *testing.T) {
	files, err := filepath.Glob("../../testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("the invalid corpus has %d files, want at least 100", len(files))
	}
	c, server := controller(t)
	// A valid base the corpus documents must not disturb.
	if out, err := weftctl(t, server, "apply", "-f", filepath.Join(samples, "k8s", "s0.yaml"), "-f", filepath.Join(samples, "k8s", "s1.yaml")); err != nil {
		t.Fatalf("apply the base: %v\n%s", err, out)
	}
	before := dump(t, c.Store())
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q is not '# want: ...'", first)
			}
			out, err := weftctl(t, server, "apply", "-f", f)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(want)) {
				t.Errorf("error %q\ndoes not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), f) && !strings.Contains(err.Error(), filepath.Base(f)) {
				t.Errorf("error %q does not name the file", err)
			}
			if diff := cmp.Diff(before, dump(t, c.Store())); diff != "" {
				t.Errorf("a refused apply changed the store:\n%s", diff)
			}
		})
	}
}

func dump(t *testing.T, st store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := st.View(context.Background(), func(tx store.Reader) error {
		kvs, err := tx.List("", "", 0)
		for _, kv := range kvs {
			out[kv.Key] = string(kv.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
