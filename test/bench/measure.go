// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clkTck is USER_HZ, the unit of /proc/PID/stat and /proc/stat times; it
// is 100 on every Linux architecture Go supports.
const clkTck = 100

// cpuSnap is a reading of the CPU counters around a run.
type cpuSnap struct {
	at time.Time
	// procTicks is utime+stime of the proxy's processes (/proc/PID/stat,
	// summed over the processes of its cgroup: nginx's master and worker).
	procTicks int64
	// cgroupMicros is the proxy cgroup's cpu.stat usage_usec: the same
	// thing at microsecond resolution.
	cgroupMicros int64
	// kernelTicks is the whole machine's system+irq+softirq time
	// (/proc/stat): eBPF programs and the network stack, charged to no
	// process in particular.
	kernelTicks int64
	// benchSysMicros is the system time of every process of the bench's
	// cgroup tree (cpu.stat system_usec): the kernel work of the bench's
	// own processes, unaffected by anything else the machine runs.
	benchSysMicros int64
	// busyTicks is the whole machine's non-idle time (/proc/stat) and
	// benchMicros the bench's own (cpu.stat usage_usec of its tree): their
	// difference is what other tenants of the machine used during a run.
	busyTicks   int64
	benchMicros int64
}

func snapshot(root, cgroup string) (cpuSnap, error) {
	s := cpuSnap{at: time.Now()}
	var err error
	if s.kernelTicks, s.busyTicks, err = procStat(); err != nil {
		return s, err
	}
	s.benchSysMicros = cgroupStat(root, "system_usec")
	s.benchMicros = cgroupStat(root, "usage_usec")
	if cgroup == "" {
		return s, nil
	}
	for _, pid := range cgroupProcs(cgroup) {
		t, err := procTicks(pid)
		if err != nil {
			continue // exited in between
		}
		s.procTicks += t
	}
	s.cgroupMicros = cgroupStat(cgroup, "usage_usec")
	return s, nil
}

// cgroupProcs lists the processes of a cgroup (not of its children).
func cgroupProcs(cgroup string) []int {
	b, err := os.ReadFile(filepath.Join(cgroup, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// procTicks returns utime+stime of a process (all its threads).
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return ut + st, nil
}

// cgroupStat returns one field of a cgroup's cpu.stat.
func cgroupStat(cgroup, field string) int64 {
	b, err := os.ReadFile(filepath.Join(cgroup, "cpu.stat"))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// procStat returns system+irq+softirq and all non-idle time (user, nice,
// system, irq, softirq, steal) of the "cpu" line of /proc/stat.
func procStat() (kernel, busy int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected %q", line)
	}
	v := make([]int64, 9)
	for i := 1; i < 9; i++ {
		if v[i], err = strconv.ParseInt(f[i], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	return v[3] + v[6] + v[7], v[1] + v[2] + v[3] + v[6] + v[7] + v[8], nil
}

// rssBytes returns the resident set of the processes of a cgroup (VmRSS
// summed).
func rssBytes(cgroup string) int64 {
	var sum int64
	for _, pid := range cgroupProcs(cgroup) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += kb << 10
			}
		}
	}
	return sum
}

// pinSelf moves every thread of this process to cpu; threads created later
// inherit it from their creator.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // again, for threads created during the first pass
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
			}
		}
	}
	return nil
}
