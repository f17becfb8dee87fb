// SPDX-License-Identifier: Apache-2.0

// Package vip allocates the virtual addresses of virtual services: the
// addresses weft's agent answers DNS queries for mesh names with, and that a
// workload's connect() to a service is redirected from.
//
// Every virtual service gets one IPv4 address from Config.IPv4 (default
// DefaultIPv4CIDR, 240.240.0.0/16) and, when Config.IPv6 is set, one IPv6
// address from it. The first candidate is a hash (FNV-1a, 64 bits) of
// "<mesh>/<service>" within the range; a taken candidate moves on to the next
// address (linear probing), skipping the network and, for IPv4, the broadcast
// address. The result is persisted in the controller's store, so an address
// never changes while its service exists, across controller restarts and
// re-applies, whatever the order services are created in.
//
// # Store layout
//
// All keys live under the prefix "a/", which no other package of the
// controller uses:
//
//	a/s/<mesh>/<service>   the service's addresses, "240.240.12.7" or "240.240.12.7,fd00::c07"
//	a/i/<address>          "<mesh>/<service>": the reverse index that makes a taken address cheap to find
//
// Allocation and release happen in one store transaction each (Sync, Ensure,
// Release), so two controllers sharing an etcd store can never hand out the
// same address. A released address is free at once and may be given to the
// next service whose probe reaches it.
//
// The Allocator holds no state besides its configuration; it is safe for
// concurrent use as far as the store is.
package vip
