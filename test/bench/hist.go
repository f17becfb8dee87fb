// SPDX-License-Identifier: Apache-2.0

package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds, like HdrHistogram:
// 128 linear sub-buckets per power of two, so a recorded value is known
// within 0.8%, from 1 ns to hours, in a fixed 8,192 counters.
type hist struct {
	counts [64 << subBits]int64
	n      int64
	max    int64
}

const subBits = 7

func bucketOf(v int64) int {
	if v < 1<<subBits {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 1 - subBits
	return (shift+1)<<subBits + int(v>>shift) - 1<<subBits
}

// bucketLow returns the smallest value of bucket i.
func bucketLow(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	return int64(i&(1<<subBits-1)+1<<subBits) << shift
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0..1): the middle of the bucket
// that holds it, or the maximum for the top.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n)+0.5) - 1
	rank = min(max(rank, 0), h.n-1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			lo, hi := bucketLow(i), bucketLow(i+1)
			return time.Duration(min((lo+hi)/2, h.max))
		}
	}
	return time.Duration(h.max)
}

// buckets returns the non-empty buckets as [lower bound ns, count] pairs:
// the full histogram, for results.json.
func (h *hist) buckets() [][2]int64 {
	var out [][2]int64
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, [2]int64{bucketLow(i), c})
		}
	}
	return out
}
