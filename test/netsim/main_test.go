// SPDX-License-Identifier: Apache-2.0

package netsim_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/weft-mesh/weft/test/netsim"
)

func TestMain(m *testing.M) {
	netsim.Main(m, netsim.Programs{
		"echo-server": netsim.EchoServer,
		"dial":        netsim.Dial,
		"whoami":      whoami,
		"sleep":       sleepForever,
		"spawn":       spawn,
		"fail":        fail,
	})
}

// whoami prints, as its very first action, its cgroup and network
// namespace, then sleeps until killed when its argument is "wait".
func whoami(args []string) int {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%snetns %s\n", cg, ns)
	if len(args) > 0 && args[0] == "wait" {
		time.Sleep(time.Hour)
	}
	return 0
}

func sleepForever([]string) int {
	time.Sleep(time.Hour)
	return 0
}

// spawn starts a grandchild (sleep) that the test does not know about,
// prints its pid and sleeps: the cleanup must find the grandchild through
// the cgroup.
func spawn([]string) int {
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(strconv.Itoa(cmd.Process.Pid))
	time.Sleep(time.Hour)
	return 0
}

// fail writes its argument to stderr and exits 3.
func fail(args []string) int {
	fmt.Fprintln(os.Stderr, args)
	return 3
}
