// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

// stream is a trimmed `go test -json` run: one package passes with a skip
// and a fuzz target, one fails a subtest, one does not build.
const stream = `{"Action":"start","Package":"example.com/a"}
{"Action":"run","Package":"example.com/a","Test":"TestOK"}
{"Action":"output","Package":"example.com/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"example.com/a","Test":"TestOK","Output":"    a_test.go:9: chatter\n"}
{"Action":"pass","Package":"example.com/a","Test":"TestOK"}
{"Action":"output","Package":"example.com/a","Test":"TestPriv","Output":"    a_test.go:12: privileged test needs root (effective uid 1000)\n"}
{"Action":"output","Package":"example.com/a","Test":"TestPriv","Output":"--- SKIP: TestPriv (0.00s)\n"}
{"Action":"skip","Package":"example.com/a","Test":"TestPriv"}
{"Action":"output","Package":"example.com/a","Test":"FuzzParse","Output":"fuzz: elapsed: 0s, gathering baseline coverage: 0/3 completed\n"}
{"Action":"output","Package":"example.com/a","Test":"FuzzParse","Output":"fuzz: elapsed: 20s, execs: 812345 (40000/sec), new interesting: 2 (total: 5)\n"}
{"Action":"output","Package":"example.com/a","Test":"FuzzParse","Output":"--- PASS: FuzzParse (20.01s)\n"}
{"Action":"pass","Package":"example.com/a","Test":"FuzzParse"}
{"Action":"output","Package":"example.com/a","Output":"PASS\n"}
{"Action":"output","Package":"example.com/a","Output":"ok  \texample.com/a\t0.012s\n"}
{"Action":"pass","Package":"example.com/a"}
{"Action":"output","Package":"example.com/b","Test":"TestT/sub","Output":"    b_test.go:20: got 1, want 2\n"}
{"Action":"output","Package":"example.com/b","Test":"TestT/sub","Output":"    --- FAIL: TestT/sub (0.00s)\n"}
{"Action":"fail","Package":"example.com/b","Test":"TestT/sub"}
{"Action":"output","Package":"example.com/b","Test":"TestT","Output":"--- FAIL: TestT (0.00s)\n"}
{"Action":"fail","Package":"example.com/b","Test":"TestT"}
{"Action":"output","Package":"example.com/b","Output":"FAIL\n"}
{"Action":"output","Package":"example.com/b","Output":"FAIL\texample.com/b\t0.010s\n"}
{"Action":"fail","Package":"example.com/b"}
{"ImportPath":"example.com/c [example.com/c.test]","Action":"build-output","Output":"c/c.go:3:1: syntax error\n"}
{"ImportPath":"example.com/c [example.com/c.test]","Action":"build-fail"}
# not JSON
`

func TestSummarize(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	c, err := summarize(strings.NewReader(stream), &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.passed != 2 || c.failed != 2 || c.skipped != 1 || len(c.failedPkgs) != 0 || len(c.failedBuilds) != 1 || c.ok() {
		t.Errorf("counts = %+v", c)
	}
	got := out.String()
	for _, want := range []string{
		"privileged test needs root",
		"FuzzParse: fuzz: elapsed: 20s, execs: 812345",
		"ok  \texample.com/a\t0.012s\n",
		"b_test.go:20: got 1, want 2\n",
		"FAIL\texample.com/b",
		"c/c.go:3:1: syntax error\n",
		"build failed: example.com/c [example.com/c.test]\n",
		"# not JSON\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, unwanted := range []string{"chatter", "=== RUN", "PASS\n"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("report has %q", unwanted)
		}
	}
	if !strings.HasSuffix(got, "\ntests: 2 passed, 2 failed, 1 skipped\n") {
		t.Errorf("report does not end with the totals:\n%s", got)
	}
}

func TestSummarizePackageFailure(t *testing.T) {
	t.Parallel()
	const panicked = `{"Action":"output","Package":"example.com/d","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"example.com/d","Test":"TestHang","Output":"panic: test timed out after 10m0s\n"}
{"Action":"output","Package":"example.com/d","Output":"FAIL\texample.com/d\t600.1s\n"}
{"Action":"fail","Package":"example.com/d"}
`
	var out strings.Builder
	c, err := summarize(strings.NewReader(panicked), &out)
	if err != nil {
		t.Fatal(err)
	}
	if c.ok() || len(c.failedPkgs) != 1 {
		t.Errorf("counts = %+v; want one failed package", c)
	}
	if got := out.String(); !strings.Contains(got, "panic: test timed out") || !strings.Contains(got, "package failed outside any test: example.com/d") {
		t.Errorf("report:\n%s", got)
	}
}
