// SPDX-License-Identifier: Apache-2.0

package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weft-mesh/weft/controlplane/store"
)

// Log entry encoding: the events of one transaction, back to back, each as
//
//	type byte | uvarint len(key) | key | (EventPut only) uvarint len(value) | value
//
// The revision is the entry's key, so it is not repeated per event.

var errCorrupt = errors.New("corrupt log entry")

// encodeRev encodes a revision as a log key: big-endian, so byte order is
// numeric order.
func encodeRev(rev int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(rev))
}

// decodeRev decodes a log key or the stored revision.
func decodeRev(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("decode revision of %d bytes: %w", len(b), errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// appendEvent appends one event to a log entry under construction.
func appendEvent(buf []byte, typ store.EventType, key string, value []byte) []byte {
	buf = append(buf, byte(typ))
	buf = binary.AppendUvarint(buf, uint64(len(key)))
	buf = append(buf, key...)
	if typ == store.EventPut {
		buf = binary.AppendUvarint(buf, uint64(len(value)))
		buf = append(buf, value...)
	}
	return buf
}

// decodeEvents appends the events of the log entry of revision rev to evs.
// The keys and values are copies, so buf may be bbolt memory.
func decodeEvents(evs []store.Event, rev int64, buf []byte) ([]store.Event, error) {
	for len(buf) > 0 {
		ev := store.Event{Revision: rev, Type: store.EventType(buf[0])}
		if ev.Type != store.EventPut && ev.Type != store.EventDelete {
			return evs, fmt.Errorf("decode log entry %d: event type %d: %w", rev, buf[0], errCorrupt)
		}
		buf = buf[1:]
		key, rest, ok := cutBytes(buf)
		if !ok {
			return evs, fmt.Errorf("decode log entry %d: key: %w", rev, errCorrupt)
		}
		ev.Key, buf = string(key), rest
		if ev.Type == store.EventPut {
			value, rest, ok := cutBytes(buf)
			if !ok {
				return evs, fmt.Errorf("decode log entry %d: value of %q: %w", rev, ev.Key, errCorrupt)
			}
			ev.Value, buf = append(make([]byte, 0, len(value)), value...), rest
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// cutBytes splits a uvarint-length-prefixed byte string off buf.
func cutBytes(buf []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(buf)
	if w <= 0 || n > uint64(len(buf)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return buf[w:end], buf[end:], true
}
