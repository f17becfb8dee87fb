// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, &out, &errb); err != nil || out.Len() == 0 {
		t.Errorf("-version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"-bogus"}, &out, &errb); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"extra"}, &out, &errb); err == nil {
		t.Error("extra argument accepted")
	}
}

// TestRunConfigDir loads the translator's golden output for S1 (front's and
// the test client's virtual nodes) and serves until the context ends.
func TestRunConfigDir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"s1.front_shop.golden.json", "s1.test-client.golden.json"} {
		src := filepath.Join("..", "..", "controlplane", "xds", "testdata", f)
		if err := copyFile(src, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"-outbound-listen", "", "-admin-listen", "127.0.0.1:0", "-config-dir", dir, "-drain-timeout", "1s"}, &out, &errb)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if n := strings.Count(errb.String(), "configuration loaded"); n != 2 {
		t.Errorf("%d configurations loaded, want 2:\n%s", n, errb.String())
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
