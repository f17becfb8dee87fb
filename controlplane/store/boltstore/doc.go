// SPDX-License-Identifier: Apache-2.0

// Package boltstore implements store.Store on one embedded bbolt file.
//
// # File layout
//
// The file (the controller keeps it at <data-dir>/weft.db) holds three
// top-level buckets:
//
//   - "kv": the data. Key = the store key as bytes, value = the value. Keys
//     sort byte-wise, so List and Count walk a cursor from the prefix and
//     never scan the whole bucket.
//   - "log": the change log Watch replays. Key = the revision as 8 bytes,
//     big-endian (so cursor order is revision order), value = the events of
//     that transaction in write order, each encoded as
//     type byte | uvarint key length | key | (puts only) uvarint value length | value.
//     Only the latest Options.HistoryLimit transactions are kept; older
//     entries are deleted by the transaction that pushes them out.
//   - "meta": "revision" = the global revision (8 bytes, big-endian) and
//     "version" = the layout version (1).
//
// # Durability
//
// Every Update that writes is one bbolt read-write transaction that writes
// the data, the log entry, the trimmed log and the new revision together and
// fsyncs before Update returns (bbolt's NoSync is never set). After a crash
// the file holds exactly the transactions whose Update returned, and maybe
// the one in flight, in full or not at all: never part of one. The revision
// goes up by exactly one per transaction that wrote something; an Update
// that wrote nothing is rolled back without touching the file and returns
// the current revision.
//
// # Lifecycle
//
// Open creates the parent directory (0700) and the file (0600) if missing
// and takes an exclusive flock on it; a second Open of the same file, from
// this or another process, fails with ErrLocked after Options.Timeout. Close
// closes every Watch channel, waits for the watcher goroutines, and releases
// the file; every call after Close returns store.ErrClosed.
//
// Watchers never hold a bbolt transaction while they send: each one reads a
// bounded batch of log entries in a short read transaction, sends it, and
// then waits for the next commit. A slow watcher therefore never blocks
// Update. One that falls more than HistoryLimit transactions behind finds
// its next events trimmed; its channel is then closed early, and calling
// Watch again with the last revision it received returns
// store.ErrCompacted.
//
// The functions passed to View and Update run inside a bbolt transaction:
// they must not call View or Update themselves (that deadlocks), and they
// should be short, because a long read transaction keeps bbolt from growing
// its memory map, which blocks writers.
package boltstore
