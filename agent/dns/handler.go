// SPDX-License-Identifier: Apache-2.0

package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// serveDNS answers one query: from the records for a mesh name, otherwise
// from an upstream.
func (s *Server) serveDNS(ctx context.Context, w mdns.ResponseWriter, req *mdns.Msg) {
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	if req.Opcode != mdns.OpcodeQuery || len(req.Question) != 1 {
		s.failed.Add(1)
		resp := new(mdns.Msg)
		if req.Opcode != mdns.OpcodeQuery {
			resp.SetRcode(req, mdns.RcodeNotImplemented)
		} else {
			resp.SetRcode(req, mdns.RcodeFormatError)
		}
		s.write(w, req, resp, tcp)
		return
	}
	q := req.Question[0]
	if q.Qclass == mdns.ClassINET || q.Qclass == mdns.ClassANY {
		if a, ok := (*s.recs.Load())[canonical(q.Name)]; ok {
			s.answered.Add(1)
			s.write(w, req, s.answer(req, q, a), tcp)
			return
		}
	}
	resp, err := s.forward(ctx, req, tcp)
	if err != nil {
		s.failed.Add(1)
		s.log.Debug("forward query failed", logName, q.Name, logQtype, mdns.TypeToString[q.Qtype], logError, err.Error())
		resp = new(mdns.Msg)
		resp.SetRcode(req, mdns.RcodeServerFailure)
		resp.RecursionAvailable = true
	} else {
		s.forwarded.Add(1)
	}
	s.write(w, req, resp, tcp)
}

// answer builds the reply for a mesh name from its addresses.
func (s *Server) answer(req *mdns.Msg, q mdns.Question, a addrs) *mdns.Msg {
	resp := new(mdns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
	}
	if q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY {
		for _, ip := range a.v4 {
			resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: ip.AsSlice()})
		}
	}
	if q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY {
		for _, ip := range a.v6 {
			resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: ip.AsSlice()})
		}
	}
	// Any other type, or a family without addresses: NODATA.
	return resp
}

// errServerFailure marks an upstream that answered SERVFAIL or REFUSED.
var errServerFailure = errors.New("upstream failed the query")

// forward asks the upstreams in turn, over the client's transport, and
// returns the first real answer.
func (s *Server) forward(ctx context.Context, req *mdns.Msg, tcp bool) (*mdns.Msg, error) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	// A reply of any size is read in full; write cuts it to the client's.
	c := &mdns.Client{Net: network, Timeout: s.timeout, UDPSize: mdns.MaxMsgSize}
	var errs []error
	for _, up := range s.upstreams {
		resp, err := exchange(ctx, c, req, up, s.timeout)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ask %s over %s: %w", up, network, err))
		case resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused:
			errs = append(errs, fmt.Errorf("ask %s over %s: %w (%s)", up, network, errServerFailure, mdns.RcodeToString[resp.Rcode]))
		default:
			resp.Id = req.Id
			return resp, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no upstream resolvers")
	}
	return nil, errors.Join(errs...)
}

// exchange asks one upstream. The miekg client honours only a context's
// deadline, so closing the connection is what makes it end with ctx.
func exchange(ctx context.Context, c *mdns.Client, req *mdns.Msg, up netip.AddrPort, timeout time.Duration) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.DialContext(ctx, up.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, req, conn)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return resp, err
}

// write sends resp, cut to what a UDP client can take (setting TC if
// anything had to go).
func (s *Server) write(w mdns.ResponseWriter, req, resp *mdns.Msg, tcp bool) {
	if opt := req.IsEdns0(); opt != nil && resp.IsEdns0() == nil {
		resp.SetEdns0(ourUDPSize, false)
	}
	if !tcp {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
		}
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("write dns reply failed", logNet, w.RemoteAddr().Network(), logError, err.Error())
	}
}
