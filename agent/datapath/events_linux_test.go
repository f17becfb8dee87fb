// SPDX-License-Identifier: Apache-2.0

package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func testEventRecord(tb testing.TB) ([]byte, ConnEvent) {
	tb.Helper()
	e := sockWeftConnEvent{
		Cookie: 7, CgroupId: 8, BytesSent: 1 << 40, BytesReceived: 3, DurationNs: 5e9,
		SrcPort: 40000, DstPort: 8080, OrigPort: 80, Closed: 1, Kind: 2,
		WorkloadId: 11, ServiceId: 12, SrttUs: 250, Retransmits: 4,
	}
	src := netip.MustParseAddr("::ffff:10.1.2.3").As16()
	dst := netip.MustParseAddr("fd00::1").As16()
	e.SrcAddr, e.DstAddr = src, dst
	b, err := binary.Append(nil, binary.NativeEndian, &e)
	if err != nil {
		tb.Fatal(err)
	}
	// A ring buffer record is 8-byte aligned: trailing bytes past the struct
	// are ignored.
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	want := ConnEvent{
		Cookie: 7, WorkloadID: 11, ServiceID: 12,
		Src:       netip.AddrPortFrom(netip.MustParseAddr("10.1.2.3"), 40000),
		Dst:       netip.AddrPortFrom(netip.MustParseAddr("fd00::1"), 8080),
		BytesSent: 1 << 40, BytesReceived: 3,
		SRTT: 250 * time.Microsecond, Retransmits: 4, Duration: 5 * time.Second, Closed: true,
	}
	return b, want
}

func TestDecodeEvent(t *testing.T) {
	b, want := testEventRecord(t)
	got, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("decodeEvent:\n got %+v\nwant %+v", got, want)
	}
	if _, err := decodeEvent(b[:binary.Size(sockWeftConnEvent{})-1]); err == nil {
		t.Error("decodeEvent of a short record: no error")
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	rec, _ := testEventRecord(b)
	for b.Loop() {
		if _, err := decodeEvent(rec); err != nil {
			b.Fatal(err)
		}
	}
}
