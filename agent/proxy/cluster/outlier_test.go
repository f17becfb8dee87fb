// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func outlier(consecutive int, interval, base string, maxPct int) string {
	return fmt.Sprintf(`,"outlierDetection":{"consecutive5xx":%d,"interval":%q,"baseEjectionTime":%q,"maxEjectionPercent":%d}`,
		consecutive, interval, base, maxPct)
}

func TestOutlierEjection(t *testing.T) {
	good, bad := newBackend(t), newBackend(t)
	bad.status.Store(500)
	m, reg := newManager(t, Options{})
	update(t, m, static(t, "od", outlier(3, "0.05s", "0.2s", 50), good.addr, bad.addr))
	c := get(t, m, "od")

	// Round robin alternates: after six requests the bad host had three
	// 5xx in a row and is ejected.
	for range 6 {
		mustDo(t, c)
	}
	h, _ := hostState(c, bad.addr)
	if !h.Ejected || h.Ejections != 1 {
		t.Fatalf("bad host %+v, want ejected once", h)
	}
	ejectedAt := time.Now()
	if v := counterValue(t, reg, "weft_proxy_outlier_ejections_total", map[string]string{"cluster": "od"}); v != 1 {
		t.Errorf("ejections_total = %v, want 1", v)
	}
	if v := counterValue(t, reg, "weft_proxy_upstream_hosts", map[string]string{"cluster": "od", "state": "ejected"}); v != 1 {
		t.Errorf("ejected hosts gauge = %v, want 1", v)
	}
	for range 10 {
		if _, body := mustDo(t, c); body != good.addr {
			t.Fatalf("request went to %s while it is ejected", body)
		}
	}

	// Without Run nothing returns; with it the host is back after the base
	// ejection time (× 1).
	run(t, m)
	bad.status.Store(200)
	eventually(t, func() error {
		if h, _ := hostState(c, bad.addr); h.Ejected {
			return fmt.Errorf("still ejected")
		}
		return nil
	})
	if d := time.Since(ejectedAt); d < 200*time.Millisecond {
		t.Errorf("returned after %v, before the base ejection time", d)
	}
	seen := counts(t, c, 4)
	if seen[bad.addr] != 2 {
		t.Errorf("spread after return %v, want both hosts", seen)
	}
}

func TestOutlierLocalOriginAndCancel(t *testing.T) {
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "lo", outlier(2, "10s", "10s", 100), "10.0.0.1:80", "10.0.0.2:80"))
	c := get(t, m, "lo")
	fail := func(err error) {
		l, aerr := c.acquire(context.Background(), Hints{Avoid: []string{"10.0.0.2:80"}})
		if aerr != nil {
			t.Fatal(aerr)
		}
		l.Done(0, err)
	}
	fail(context.Canceled) // the downstream went away: not counted
	fail(ErrConnectFailure)
	if h, _ := hostState(c, "10.0.0.1:80"); h.Ejected {
		t.Fatal("ejected after one counted failure")
	}
	fail(context.Canceled)
	fail(context.DeadlineExceeded) // second in a row (504)
	if h, _ := hostState(c, "10.0.0.1:80"); !h.Ejected {
		t.Fatal("not ejected after two local-origin failures in a row")
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	for _, tc := range []struct {
		hosts, pct, want int
	}{
		{4, 50, 2},
		{4, 100, 4},
		{3, 50, 1},
		{2, 10, 1}, // at least one host can always be ejected (§6.2)
		{2, 0, 1},
	} {
		t.Run(fmt.Sprintf("%d hosts %d%%", tc.hosts, tc.pct), func(t *testing.T) {
			m, _ := newManager(t, Options{})
			var addrs []string
			for i := range tc.hosts {
				addrs = append(addrs, fmt.Sprintf("10.0.0.%d:80", i+1))
			}
			update(t, m, static(t, "mx", outlier(1, "10s", "10s", tc.pct)+`,"commonLbConfig":{"healthyPanicThreshold":{"value":0}}`, addrs...))
			c := get(t, m, "mx")
			for range 3 * tc.hosts {
				l, err := c.Acquire(context.Background(), Hints{})
				if err != nil {
					break // all ejected
				}
				l.Done(503, nil)
			}
			n := 0
			for _, h := range c.Hosts() {
				if h.Ejected {
					n++
				}
			}
			if n != tc.want {
				t.Errorf("%d hosts ejected, want %d", n, tc.want)
			}
		})
	}
}

func TestEjectionBackoff(t *testing.T) {
	m, _ := newManager(t, Options{})
	update(t, m, static(t, "bo", `,"outlierDetection":{"consecutive5xx":1,"interval":"10s","baseEjectionTime":"1s","maxEjectionTime":"3s","maxEjectionPercent":100}`,
		"10.0.0.1:80", "10.0.0.2:80"))
	c := get(t, m, "bo")
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.byKey["10.0.0.1:80"]
	now := time.Now()
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		c.ejectLocked(h, now)
		if got := c.spec.outlier.ejectionTime(h.ejections); got != want {
			t.Errorf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		c.mu.Unlock()
		c.outlierTick(now.Add(want - time.Millisecond))
		c.mu.Lock()
		if !h.ejected {
			t.Fatalf("ejection %d ended early", i+1)
		}
		c.mu.Unlock()
		c.outlierTick(now.Add(want))
		c.mu.Lock()
		if h.ejected {
			t.Fatalf("ejection %d did not end", i+1)
		}
	}
	// A host that stays in lowers its multiplier interval by interval.
	c.mu.Unlock()
	c.outlierTick(now.Add(3*time.Second + 10*time.Second))
	c.mu.Lock()
	if h.ejections != 3 {
		t.Errorf("multiplier %d after a clean interval, want 3", h.ejections)
	}
}
