// SPDX-License-Identifier: Apache-2.0

package main

import (
	"testing"
	"time"
)

func TestHistBuckets(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1 << 40} {
		i := bucketOf(v)
		if lo, hi := bucketLow(i), bucketLow(i+1); v < lo || v >= hi {
			t.Errorf("value %d in bucket %d [%d, %d)", v, i, lo, hi)
		}
	}
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Microsecond, 0.99: 990 * time.Microsecond, 1: time.Millisecond} {
		got := h.quantile(q)
		if d := got - want; d < -want/100 || d > want/100 {
			t.Errorf("quantile %v = %v, want %v ± 1%%", q, got, want)
		}
	}
}
