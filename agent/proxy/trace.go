// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// propagateTrace rewrites the W3C traceparent header for the upstream hop:
// the trace id and flags are kept, the parent id becomes a new span id (the
// proxy's span, whose parent is the incoming span). Without a valid
// traceparent a new trace starts (flags 00: nothing is sampled, the id is
// for correlation). It returns the trace id.
func propagateTrace(h http.Header) string {
	var buf [55]byte
	in := h["Traceparent"]
	valid := len(in) == 1 && validTraceparent(in[0])
	if valid {
		copy(buf[:], in[0][:55])
		buf[0], buf[1] = '0', '0'
	} else {
		copy(buf[:], "00-")
		var id [16]byte
		for {
			putUint64(id[:8], rand.Uint64())
			putUint64(id[8:], rand.Uint64())
			if id != [16]byte{} {
				break
			}
		}
		hex.Encode(buf[3:35], id[:])
		buf[35] = '-'
		buf[52], buf[53], buf[54] = '-', '0', '0'
	}
	var span [8]byte
	for span == [8]byte{} {
		putUint64(span[:], rand.Uint64())
	}
	hex.Encode(buf[36:52], span[:])
	s := string(buf[:])
	h["Traceparent"] = []string{s}
	return s[3:35]
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// validTraceparent checks version-format-00 fields; later versions may
// append fields after a dash, which are dropped.
func validTraceparent(s string) bool {
	if len(s) < 55 || (len(s) > 55 && s[55] != '-') || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if s[:2] == "ff" || !isLowerHex(s[:2]) || !isLowerHex(s[3:35]) || !isLowerHex(s[36:52]) || !isLowerHex(s[53:55]) {
		return false
	}
	if s[:2] == "00" && len(s) != 55 {
		return false
	}
	return s[3:35] != "00000000000000000000000000000000" && s[36:52] != "0000000000000000"
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
