// SPDX-License-Identifier: Apache-2.0

// Command testsum turns the output of `go test -json` into a short report and
// closes it with one line a reader (or a CI log scanner) can trust:
//
//	tests: 212 passed, 0 failed, 9 skipped
//
// It prints each package's result line as go test does, the whole output of
// every failed test, the reason of every skipped test (a privileged test that
// skipped is worth seeing), and the last progress line of each fuzz target.
// Lines that are not JSON (a build error on stderr) pass through. It exits 1
// when a test, a package or a build failed.
//
// Usage, as in the Makefile:
//
//	go test -json ./... 2>&1 | go run ./test/testsum
package main

import (
	"fmt"
	"os"
)

func main() {
	c, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	if !c.ok() {
		os.Exit(1)
	}
}
