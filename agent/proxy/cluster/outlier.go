// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"math/rand/v2"
	"time"
)

// outlierResultLocked counts one response of h (Envoy's consecutive_5xx and
// consecutive_gateway_failure detectors; local-origin errors arrive here as
// 503/504) and ejects h when a detector trips.
func (c *Cluster) outlierResultLocked(h *host, status int) {
	o := c.spec.outlier
	if status < 500 {
		h.cons5xx, h.consGw = 0, 0
		return
	}
	if status == 502 || status == 503 || status == 504 {
		h.consGw++
	} else {
		h.consGw = 0
	}
	h.cons5xx++
	if h.ejected {
		return
	}
	switch {
	case o.consecutive5xx > 0 && h.cons5xx >= o.consecutive5xx && enforce(o.enforcing5xx):
	case o.consecutiveGateway > 0 && h.consGw >= o.consecutiveGateway && enforce(o.enforcingGateway):
	default:
		return
	}
	// Envoy resets the counters of a host that tripped, ejected or not.
	h.cons5xx, h.consGw = 0, 0
	c.ejectLocked(h, time.Now())
}

func enforce(pct uint32) bool { return pct >= 100 || pct > 0 && rand.Uint32N(100) < pct }

// ejectLocked ejects h unless that would eject more than
// max_ejection_percent of the hosts; one host can always be ejected (§6.2).
func (c *Cluster) ejectLocked(h *host, now time.Time) {
	o := c.spec.outlier
	ejected := 0
	for _, x := range c.hosts {
		if x.ejected {
			ejected++
		}
	}
	if ejected > 0 && uint64(ejected+1)*100 > uint64(o.maxEjectionPercent)*uint64(len(c.hosts)) {
		return
	}
	h.ejected = true
	h.ejectedAt = now
	h.ejections++
	c.ejections.Inc()
	c.log.Info("ejected upstream host", keyHost, h.key, keyEjections, h.ejections)
}

// ejectionTime is base_ejection_time × the number of ejections, at most
// max(max_ejection_time, base_ejection_time).
func (o *outlierSpec) ejectionTime(n int) time.Duration {
	d := o.baseEjection * time.Duration(max(n, 1))
	return min(d, o.maxEjection)
}

// outlierTick is Envoy's interval timer: hosts whose ejection time is over
// return, and a host that stayed in for a whole interval has its ejection
// multiplier lowered by one.
func (c *Cluster) outlierTick(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.spec.outlier
	if o == nil {
		return
	}
	for _, h := range c.hosts {
		switch {
		case h.ejected && now.Sub(h.ejectedAt) >= o.ejectionTime(h.ejections):
			c.unejectLocked(h)
		case !h.ejected && h.ejections > 0 && now.Sub(h.ejectedAt) >= o.ejectionTime(h.ejections)+o.interval:
			h.ejections--
		}
	}
}

func (c *Cluster) unejectLocked(h *host) {
	h.ejected = false
	h.cons5xx, h.consGw = 0, 0
	c.log.Info("returned upstream host", keyHost, h.key)
}
