// SPDX-License-Identifier: Apache-2.0

package meshbed

// Programs of the sample sets beyond S1, S3 and S4 (test/e2e's
// TestSamples): an app with two listeners (S8), a one-request HTTP client
// that reports what the backend saw (S2, S5, S8), and the stand-ins of an
// external host (S7): a TLS server and a DNS server.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// seenHeaders are the response headers in which ColorServer and AppServer
// tell what they saw: their name, the request's path (with the query) and
// Host, its protocol, and the port it came in on.
const (
	HeaderName  = "X-Seen-Name"
	HeaderPath  = "X-Seen-Path"
	HeaderHost  = "X-Seen-Host"
	HeaderProto = "X-Seen-Proto"
	HeaderPort  = "X-Seen-Port"
)

// seen wraps h so that every answer carries the seenHeaders.
func seen(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set(HeaderName, name)
		hd.Set(HeaderPath, r.URL.RequestURI())
		hd.Set(HeaderHost, r.Host)
		hd.Set(HeaderProto, r.Proto)
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, port, err := net.SplitHostPort(la.String()); err == nil {
				hd.Set(HeaderPort, port)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// AppServer is S8's inventory app: HTTP/1.1 on -rest (default :8080) and
// h2c (HTTP/2 with prior knowledge) on -h2c (default :9090). Every answer
// carries the seenHeaders; the body is -name. /healthz answers 200 (the
// health check); /slow?for=D answers after D; with -fail-status N every
// other request answers N (a host for outlier detection to eject). It
// prints "listening <rest> <h2c>".
func AppServer(args []string) int {
	fs := flag.NewFlagSet("app-server", flag.ContinueOnError)
	name := fs.String("name", "", "name to answer")
	rest := fs.String("rest", ":8080", "HTTP/1.1 address")
	h2c := fs.String("h2c", ":9090", "h2c address")
	failStatus := fs.Int("fail-status", 0, "answer this status to every request but /healthz and /slow (0: none)")
	if err := fs.Parse(args); err != nil || *name == "" {
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("for"))
		if err != nil {
			http.Error(w, "for: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(d):
			_, _ = io.WriteString(w, *name)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		if *failStatus != 0 {
			http.Error(w, *name+" fails on purpose", *failStatus)
			return
		}
		_, _ = io.WriteString(w, *name)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var lc net.ListenConfig
	lnRest, err := lc.Listen(ctx, "tcp", *rest)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lnH2C, err := lc.Listen(ctx, "tcp", *h2c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := seen(*name, mux)
	srvRest := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srvH2C := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	srvH2C.Protocols.SetUnencryptedHTTP2(true)
	fmt.Printf("listening %s %s\n", lnRest.Addr(), lnH2C.Addr())
	errc := make(chan error, 2)
	go func() { errc <- srvRest.Serve(lnRest) }()
	go func() { errc <- srvH2C.Serve(lnH2C) }()
	<-ctx.Done()
	_ = srvRest.Close()
	_ = srvH2C.Close()
	for range 2 {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// HTTPResult is what http-call prints.
type HTTPResult struct {
	// Code is the status code, 0 when there was no answer (Error says why).
	Code  int    `json:"code"`
	Body  string `json:"body,omitempty"`
	Proto string `json:"proto,omitempty"`
	// Seen are the seenHeaders of the answer, by name.
	Seen    map[string]string `json:"seen,omitempty"`
	Error   string            `json:"error,omitempty"`
	Elapsed string            `json:"elapsed"`
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags http.Header

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", v)
	}
	// Set the key as given: net/http would canonicalise color_header.
	http.Header(h)[strings.TrimSpace(k)] = append(http.Header(h)[strings.TrimSpace(k)], strings.TrimSpace(val))
	return nil
}

// HTTPCall makes one request and prints an HTTPResult; it exits 0 whatever
// the answer. Usage: http-call [-X METHOD] [-H "Name: value"]... [-host H]
// [-h2c] [-ca file] [-timeout 10s] URL. -h2c speaks HTTP/2 with prior
// knowledge; -ca trusts that CA for https (the server name is the URL's
// host).
func HTTPCall(args []string) int {
	fs := flag.NewFlagSet("http-call", flag.ContinueOnError)
	method := fs.String("X", http.MethodGet, "method")
	hdr := headerFlags{}
	fs.Var(hdr, "H", "request header \"Name: value\" (repeatable)")
	host := fs.String("host", "", "Host header (default: the URL's)")
	h2c := fs.Bool("h2c", false, "HTTP/2 with prior knowledge")
	caFile := fs.String("ca", "", "CA certificate (PEM) to trust for https")
	timeout := fs.Duration("timeout", 10*time.Second, "time for the whole request")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: http-call [-X M] [-H 'N: v']... [-host H] [-h2c] [-ca file] [-timeout d] URL")
		return 2
	}
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true}
	if *h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "no certificate in", *caFile)
			return 2
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, *method, fs.Arg(0), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if *host != "" {
		req.Host = *host
	}
	t0 := time.Now()
	var res HTTPResult
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		res.Code, res.Body, res.Proto = resp.StatusCode, string(b), resp.Proto
		for _, k := range []string{HeaderName, HeaderPath, HeaderHost, HeaderProto, HeaderPort} {
			if v := resp.Header.Get(k); v != "" {
				if res.Seen == nil {
					res.Seen = map[string]string{}
				}
				res.Seen[k] = v
			}
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	res.Elapsed = time.Since(t0).Round(time.Millisecond).String()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// TLSServer serves HTTPS with -cert and -key on each -listen address
// (repeatable), answering -name and the seenHeaders: S7's external host.
// It prints "listening <addresses>".
func TLSServer(args []string) int {
	fs := flag.NewFlagSet("tls-server", flag.ContinueOnError)
	name := fs.String("name", "", "name to answer")
	cert := fs.String("cert", "", "certificate chain (PEM)")
	key := fs.String("key", "", "private key (PEM)")
	var listens []string
	fs.Func("listen", "address (repeatable)", func(v string) error { listens = append(listens, v); return nil })
	if err := fs.Parse(args); err != nil || *name == "" || *cert == "" || *key == "" || len(listens) == 0 {
		return 2
	}
	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	h := seen(*name, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, *name) }))
	errc := make(chan error, len(listens))
	var srvs []*http.Server
	var addrs []string
	for _, l := range listens {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", l)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{
			Handler: h, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		}
		srvs = append(srvs, srv)
		addrs = append(addrs, ln.Addr().String())
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	}
	fmt.Printf("listening %s\n", strings.Join(addrs, " "))
	<-ctx.Done()
	for _, s := range srvs {
		_ = s.Close()
	}
	for range srvs {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// DNSServer answers A queries for -record name=IPv4 (repeatable) over UDP
// on -listen (default :53), NXDOMAIN for other names, and prints
// "listening <address>" and then "query <name> <type>" per question.
func DNSServer(args []string) int {
	fs := flag.NewFlagSet("dns-server", flag.ContinueOnError)
	listen := fs.String("listen", ":53", "UDP address")
	records := map[string]net.IP{}
	fs.Func("record", "name=IPv4 (repeatable)", func(v string) error {
		n, a, ok := strings.Cut(v, "=")
		ip := net.ParseIP(a).To4()
		if !ok || ip == nil {
			return fmt.Errorf("record %q: want name=IPv4", v)
		}
		records[mdns.Fqdn(strings.ToLower(n))] = ip
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pc, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		for _, qq := range q.Question {
			fmt.Printf("query %s %s\n", qq.Name, mdns.TypeToString[qq.Qtype])
			ip, ok := records[strings.ToLower(qq.Name)]
			switch {
			case !ok:
				m.Rcode = mdns.RcodeNameError
			case qq.Qtype == mdns.TypeA:
				m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: qq.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5}, A: ip})
			}
		}
		_ = w.WriteMsg(m)
	})}
	fmt.Printf("listening %s\n", pc.LocalAddr())
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
