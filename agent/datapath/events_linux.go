// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
)

// Counters sums the per-CPU decision counters at call time.
func (d *Datapath) Counters() (Counters, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.closedErr(); err != nil {
		return Counters{}, err
	}
	return d.readCounters()
}

// readCounters reads the counters; the caller holds d.mu.
func (d *Datapath) readCounters() (Counters, error) {
	raw, err := d.counters()
	if err != nil {
		return Counters{}, err
	}
	return Counters{
		RedirectedL7:   raw[sockWeftCounterWEFT_C_REDIRECTED_L7],
		BalancedL4:     raw[sockWeftCounterWEFT_C_BALANCED_L4],
		DeniedEgress:   raw[sockWeftCounterWEFT_C_DENIED_EGRESS],
		NoBackend:      raw[sockWeftCounterWEFT_C_NO_BACKEND],
		DNSRedirected:  raw[sockWeftCounterWEFT_C_DNS_REDIRECTED],
		RingbufFull:    raw[sockWeftCounterWEFT_C_RINGBUF_FULL],
		L7NoProxy:      raw[sockWeftCounterWEFT_C_L7NO_PROXY],
		ProxyExempt:    raw[sockWeftCounterWEFT_C_PROXY_EXEMPT],
		EgressAllowed:  raw[sockWeftCounterWEFT_C_EGRESS_ALLOWED],
		RevNAT:         raw[sockWeftCounterWEFT_C_REVNAT],
		FamilyMismatch: raw[sockWeftCounterWEFT_C_FAMILY_MISMATCH],
		OrigDstFailed:  raw[sockWeftCounterWEFT_C_ORIGDST_FAILED],
		StorageFailed:  raw[sockWeftCounterWEFT_C_STORAGE_FAILED],
		Events:         raw[sockWeftCounterWEFT_C_EVENTS],
		UDPSticky:      raw[sockWeftCounterWEFT_C_UDP_STICKY],

		AccelInserted:     raw[sockWeftCounterWEFT_C_ACCEL_INSERTED],
		AccelInsertFailed: raw[sockWeftCounterWEFT_C_ACCEL_INSERT_FAILED],
		AccelRedirected:   raw[sockWeftCounterWEFT_C_ACCEL_REDIRECTED],
		AccelPassed:       raw[sockWeftCounterWEFT_C_ACCEL_PASSED],
		AccelBytes:        raw[sockWeftCounterWEFT_C_ACCEL_BYTES],
		AccelRxFailed:     raw[sockWeftCounterWEFT_C_ACCEL_RX_FAILED],
	}, nil
}

// counters returns every counter slot summed over CPUs.
func (d *Datapath) counters() (map[sockWeftCounter]uint64, error) {
	out := make(map[sockWeftCounter]uint64, sockWeftCounterWEFT_C_MAX)
	var perCPU []uint64
	for i := sockWeftCounter(0); i < sockWeftCounterWEFT_C_MAX; i++ {
		if err := d.objs.WeftCounters.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %d: %w", i, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[i] = sum
	}
	return out, nil
}

// eventPoll is how often ReadEvents collects the records that sockops wrote
// without waking it: every record, as long as less than
// WEFT_EVENTS_WAKEUP_BYTES (a quarter of the ring) waits. A wakeup per
// record cost an interrupt and a reader context switch per connection.
const eventPoll = 100 * time.Millisecond

// ReadEvents reads telemetry records from the ring buffer and calls fn for
// each, in the calling goroutine, until ctx ends or d is closed; both are a
// clean exit (nil). Records arrive in batches: every eventPoll (100 ms), or
// as soon as a quarter of the ring buffer waits. Run one ReadEvents at a
// time: records go to whichever reader takes them. Records written while no
// one reads wait in the pinned ring buffer (256 KiB) and, once it is full,
// are lost and counted (Counters.RingbufFull).
func (d *Datapath) ReadEvents(ctx context.Context, fn func(ConnEvent)) error {
	d.rmu.Lock()
	if d.closed {
		d.rmu.Unlock()
		return nil
	}
	rd, err := ringbuf.NewReader(d.objs.WeftEvents)
	if err != nil {
		d.rmu.Unlock()
		return fmt.Errorf("open event ring buffer: %w", err)
	}
	d.readers[rd] = struct{}{}
	d.rmu.Unlock()

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			_ = rd.Close()
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		d.rmu.Lock()
		delete(d.readers, rd)
		d.rmu.Unlock()
		_ = rd.Close()
	}()

	var rec ringbuf.Record
	rd.SetDeadline(time.Now().Add(eventPoll))
	nextReport := time.Now().Add(d.reportEvery())
	read := 0
	for {
		err := rd.ReadInto(&rec)
		// Periodic reports are due at a deadline, or now and then while
		// records keep coming (a busy ring may never reach a deadline).
		if read++; errors.Is(err, os.ErrDeadlineExceeded) || read%1024 == 0 {
			if now := time.Now(); !now.Before(nextReport) {
				if rerr := d.runReport(); rerr != nil {
					d.log.Warn("periodic connection reports", "error", rerr)
				}
				nextReport = now.Add(d.reportEvery())
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Every waiting record has been read.
				rd.SetDeadline(time.Now().Add(eventPoll))
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read event: %w", err)
		}
		ev, err := decodeEvent(rec.RawSample)
		if err != nil {
			d.log.Warn("dropping malformed telemetry record", "error", err)
			continue
		}
		fn(ev)
	}
}

// decodeEvent copies a record into the generated type, which is the C
// struct byte for byte (bpf2go, same host; TestDecodeEvent checks it against
// encoding/binary). Decoding by reflection took 1.9 µs a record, a cost paid
// for every connection.
// reportEvery is how often ReadEvents runs the periodic report iterator
// (weft_report): every half telemetry interval, so that an open connection
// is reported every one to one and a half intervals.
func (d *Datapath) reportEvery() time.Duration {
	return max(d.cfg.TelemetryInterval/2, eventPoll)
}

// runReport runs weft_report once: it writes a record to the ring buffer
// for every open connection whose last report is an interval old.
func (d *Datapath) runReport() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closedErr() != nil {
		return nil
	}
	r, err := d.report.Open()
	if err != nil {
		return fmt.Errorf("open the telemetry iterator: %w", err)
	}
	_, err = io.Copy(io.Discard, r)
	return errors.Join(err, r.Close())
}

func decodeEvent(b []byte) (ConnEvent, error) {
	var e sockWeftConnEvent
	n := int(unsafe.Sizeof(e))
	if len(b) < n {
		return ConnEvent{}, fmt.Errorf("record of %d bytes, want %d", len(b), n)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), n), b)
	return connEvent(e), nil
}

func connEvent(e sockWeftConnEvent) ConnEvent {
	return ConnEvent{
		Cookie:        e.Cookie,
		WorkloadID:    e.WorkloadId,
		ServiceID:     e.ServiceId,
		Src:           netip.AddrPortFrom(addrFrom16(e.SrcAddr), e.SrcPort),
		Dst:           netip.AddrPortFrom(addrFrom16(e.DstAddr), e.DstPort),
		BytesSent:     e.BytesSent,
		BytesReceived: e.BytesReceived,
		SRTT:          time.Duration(e.SrttUs) * time.Microsecond,
		Retransmits:   e.Retransmits,
		Duration:      time.Duration(e.DurationNs),
		Closed:        e.Closed != 0,
	}
}
