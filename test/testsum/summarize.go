// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail events
}

// counts are the totals of one run; subtests count like tests.
type counts struct {
	passed, failed, skipped int
	// failedPkgs are packages that failed with no failed test: a panic
	// outside a test, a TestMain exit, a timeout.
	failedPkgs []string
	// failedBuilds are packages that did not compile.
	failedBuilds []string
}

func (c counts) ok() bool {
	return c.failed == 0 && len(c.failedPkgs) == 0 && len(c.failedBuilds) == 0
}

// summarize reads go test -json output from r and writes the report to w.
func summarize(r io.Reader, w io.Writer) (counts, error) {
	var c counts
	type key struct{ pkg, test string }
	outputs := map[key][]string{}   // buffered output of running tests
	var order []key                 // first-seen order, for leftovers
	failedTests := map[string]int{} // failed tests per package
	emit := func(lines ...string) {
		for _, l := range lines {
			fmt.Fprint(w, l)
			if !strings.HasSuffix(l, "\n") {
				fmt.Fprintln(w)
			}
		}
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil || e.Action == "" {
			emit(string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			emit(e.Output)
		case e.Action == "build-fail":
			c.failedBuilds = append(c.failedBuilds, e.ImportPath)
		case e.Test == "":
			switch e.Action {
			case "output":
				if e.Output != "PASS\n" {
					emit(e.Output)
				}
			case "fail":
				if failedTests[e.Package] == 0 {
					c.failedPkgs = append(c.failedPkgs, e.Package)
				}
			}
		case e.Action == "output":
			if _, seen := outputs[k]; !seen {
				order = append(order, k)
			}
			if !isNoise(e.Output) {
				outputs[k] = append(outputs[k], e.Output)
			} else if outputs[k] == nil {
				outputs[k] = []string{}
			}
		case e.Action == "pass":
			c.passed++
			if strings.HasPrefix(e.Test, "Fuzz") {
				lines := outputs[k]
				if i := lastIndex(lines, "fuzz: elapsed:"); i >= 0 {
					emit(e.Test + ": " + strings.TrimSpace(lines[i]))
				}
			}
			delete(outputs, k)
		case e.Action == "fail":
			c.failed++
			failedTests[e.Package]++
			emit(outputs[k]...)
			delete(outputs, k)
		case e.Action == "skip":
			c.skipped++
			emit(outputs[k]...)
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("read go test output: %w", err)
	}

	// Tests that never finished: the package died under them.
	for _, k := range order {
		if lines, ok := outputs[k]; ok && len(lines) > 0 {
			emit(fmt.Sprintf("--- output of %s %s, which did not finish:", k.pkg, k.test))
			emit(lines...)
		}
	}
	if len(c.failedBuilds) > 0 {
		emit("build failed: " + strings.Join(c.failedBuilds, " "))
	}
	if len(c.failedPkgs) > 0 {
		emit("package failed outside any test: " + strings.Join(c.failedPkgs, " "))
	}
	emit(fmt.Sprintf("tests: %d passed, %d failed, %d skipped", c.passed, c.failed, c.skipped))
	return c, nil
}

// isNoise reports whether a test output line only marks the test's progress.
func isNoise(s string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// lastIndex returns the index of the last line that contains substr, or -1.
func lastIndex(lines []string, substr string) int {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return i
		}
	}
	return -1
}
