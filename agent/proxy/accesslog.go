// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// envoyDefaultFormat is Envoy's default access log format.
const envoyDefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% ` +
	`"%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// Response flags, as Envoy abbreviates them.
const (
	flagNoHealthyUpstream    uint16 = 1 << iota // UH
	flagUpstreamConnFailure                     // UF
	flagOverflow                                // UO
	flagNoRoute                                 // NR
	flagRetryLimit                              // URX
	flagNoCluster                               // NC
	flagUpstreamTimeout                         // UT
	flagUpstreamReset                           // UR
	flagUpstreamTerminated                      // UC
	flagDownstreamTerminated                    // DC
	flagStreamIdleTimeout                       // SI
)

func flagString(f uint16) string {
	if f == 0 {
		return "-"
	}
	names := [...]string{"UH", "UF", "UO", "NR", "URX", "NC", "UT", "UR", "UC", "DC", "SI"}
	var b strings.Builder
	for i, n := range names {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// logEntry is what an access log line is made of.
type logEntry struct {
	start           time.Time
	duration        time.Duration
	respDuration    time.Duration // to the first response byte; <0 when none
	method          string
	path            string // :path as sent upstream, with the query
	authority       string
	scheme          string
	protocol        string
	reqHeader       http.Header
	respHeader      http.Header
	respTrailer     http.Header
	status          int
	flags           uint16
	details         string
	bytesReceived   int64
	bytesSent       int64
	upstreamHost    string
	upstreamCluster string
	routeName       string
	remote, local   string
	serverName      string
	traceID         string
	attempts        int
}

// opKind is a command operator.
type opKind uint8

const (
	opLiteral opKind = iota
	opStartTime
	opReq
	opResp
	opTrailer
	opResponseCode
	opResponseFlags
	opResponseCodeDetails
	opBytesReceived
	opBytesSent
	opDuration
	opResponseDuration
	opUpstreamHost
	opUpstreamCluster
	opProtocol
	opDownstreamRemote
	opDownstreamRemoteNoPort
	opDownstreamLocal
	opDownstreamLocalNoPort
	opRouteName
	opRequestedServerName
	opTraceID
	opAttemptCount
)

// numericOps render as JSON numbers when they are a whole JSON value.
func (k opKind) numeric() bool {
	switch k {
	case opResponseCode, opBytesReceived, opBytesSent, opDuration, opResponseDuration, opAttemptCount:
		return true
	}
	return false
}

// logSeg is a literal or an operator of a format.
type logSeg struct {
	lit    string
	op     opKind
	arg    string // canonical header key, or strftime layout for START_TIME
	alt    string
	maxLen int
	unix   bool
}

// parseFormat splits an Envoy format string into segments. A %...% that is
// not a known operator stays literal.
func parseFormat(f string, hostname string) []logSeg {
	var segs []logSeg
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, logSeg{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(f); {
		if f[i] != '%' {
			lit.WriteByte(f[i])
			i++
			continue
		}
		end := strings.IndexByte(f[i+1:], '%')
		if end < 0 {
			lit.WriteString(f[i:])
			break
		}
		cmd := f[i+1 : i+1+end]
		// START_TIME(...) may contain % in its layout: find the ")%".
		if strings.HasPrefix(cmd, "START_TIME(") {
			if c := strings.Index(f[i:], ")%"); c > 0 {
				cmd = f[i+1 : i+c+1]
				end = c
			}
		}
		seg, ok := parseOp(cmd, hostname)
		if !ok {
			lit.WriteByte('%')
			i++
			continue
		}
		flush()
		segs = append(segs, seg)
		i += end + 2
	}
	flush()
	return segs
}

func parseOp(cmd, hostname string) (logSeg, bool) {
	s := logSeg{}
	name, arg := cmd, ""
	if p := strings.IndexByte(cmd, '('); p >= 0 {
		q := strings.LastIndexByte(cmd, ')')
		if q < p {
			return s, false
		}
		name, arg = cmd[:p], cmd[p+1:q]
		if rest := cmd[q+1:]; rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return s, false
			}
			n, err := strconv.Atoi(rest[1:])
			if err != nil {
				return s, false
			}
			s.maxLen = n
		}
	}
	for _, c := range name {
		if (c < 'A' || c > 'Z') && c != '_' && (c < '0' || c > '9') {
			return s, false
		}
	}
	switch name {
	case "START_TIME":
		s.op, s.arg = opStartTime, "2006-01-02T15:04:05.000Z"
		if arg != "" {
			s.arg, s.unix = strftime(arg)
		}
	case "REQ", "RESP", "TRAILER":
		if arg == "" {
			return s, false
		}
		s.op = map[string]opKind{"REQ": opReq, "RESP": opResp, "TRAILER": opTrailer}[name]
		main, alt, _ := strings.Cut(arg, "?")
		s.arg, s.alt = headerKey(main), headerKey(alt)
	case "RESPONSE_CODE":
		s.op = opResponseCode
	case "RESPONSE_FLAGS":
		s.op = opResponseFlags
	case "RESPONSE_CODE_DETAILS":
		s.op = opResponseCodeDetails
	case "BYTES_RECEIVED":
		s.op = opBytesReceived
	case "BYTES_SENT":
		s.op = opBytesSent
	case "DURATION":
		s.op = opDuration
	case "RESPONSE_DURATION":
		s.op = opResponseDuration
	case "UPSTREAM_HOST":
		s.op = opUpstreamHost
	case "UPSTREAM_CLUSTER":
		s.op = opUpstreamCluster
	case "PROTOCOL":
		s.op = opProtocol
	case "DOWNSTREAM_REMOTE_ADDRESS", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS":
		s.op = opDownstreamRemote
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT":
		s.op = opDownstreamRemoteNoPort
	case "DOWNSTREAM_LOCAL_ADDRESS":
		s.op = opDownstreamLocal
	case "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":
		s.op = opDownstreamLocalNoPort
	case "ROUTE_NAME":
		s.op = opRouteName
	case "REQUESTED_SERVER_NAME":
		s.op = opRequestedServerName
	case "TRACE_ID":
		s.op = opTraceID
	case "UPSTREAM_REQUEST_ATTEMPT_COUNT":
		s.op = opAttemptCount
	case "HOSTNAME":
		return logSeg{lit: hostname}, true
	default:
		return s, false
	}
	return s, true
}

// headerKey maps a REQ/RESP argument to a pseudo-header name or a
// canonical header key.
func headerKey(h string) string {
	if h == "" || strings.HasPrefix(h, ":") {
		return strings.ToLower(h)
	}
	return http.CanonicalHeaderKey(h)
}

// strftime converts the strftime specifiers Envoy users write into a Go
// layout; unix is true for %s (seconds since the epoch).
func strftime(f string) (string, bool) {
	if f == "%s" {
		return "", true
	}
	r := strings.NewReplacer("%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04",
		"%E3S", "05.000", "%E6S", "05.000000", "%E9S", "05.000000000", "%S", "05", "%z", "-0700", "%Z", "MST",
		"%b", "Jan", "%a", "Mon", "%y", "06", "%F", "2006-01-02", "%T", "15:04:05", "%%", "%")
	return r.Replace(f), false
}

// value renders one operator; ok is false when the value is unavailable
// ("-" in text, null in JSON).
func (s *logSeg) value(e *logEntry, b []byte) ([]byte, bool) {
	switch s.op {
	case opLiteral:
		return append(b, s.lit...), true
	case opStartTime:
		if s.unix {
			return strconv.AppendInt(b, e.start.Unix(), 10), true
		}
		return e.start.UTC().AppendFormat(b, s.arg), true
	case opReq, opResp, opTrailer:
		v := e.header(s.op, s.arg)
		if v == "" && s.alt != "" {
			v = e.header(s.op, s.alt)
		}
		if v == "" {
			return b, false
		}
		if s.maxLen > 0 && len(v) > s.maxLen {
			v = v[:s.maxLen]
		}
		return append(b, v...), true
	case opResponseCode:
		return strconv.AppendInt(b, int64(e.status), 10), true
	case opResponseFlags:
		return append(b, flagString(e.flags)...), true
	case opResponseCodeDetails:
		return strOrDash(b, e.details)
	case opBytesReceived:
		return strconv.AppendInt(b, e.bytesReceived, 10), true
	case opBytesSent:
		return strconv.AppendInt(b, e.bytesSent, 10), true
	case opDuration:
		return strconv.AppendInt(b, e.duration.Milliseconds(), 10), true
	case opResponseDuration:
		if e.respDuration < 0 {
			return b, false
		}
		return strconv.AppendInt(b, e.respDuration.Milliseconds(), 10), true
	case opUpstreamHost:
		return strOrDash(b, e.upstreamHost)
	case opUpstreamCluster:
		return strOrDash(b, e.upstreamCluster)
	case opProtocol:
		return strOrDash(b, e.protocol)
	case opDownstreamRemote:
		return strOrDash(b, e.remote)
	case opDownstreamRemoteNoPort:
		return strOrDash(b, stripPort(e.remote))
	case opDownstreamLocal:
		return strOrDash(b, e.local)
	case opDownstreamLocalNoPort:
		return strOrDash(b, stripPort(e.local))
	case opRouteName:
		return strOrDash(b, e.routeName)
	case opRequestedServerName:
		return strOrDash(b, e.serverName)
	case opTraceID:
		return strOrDash(b, e.traceID)
	case opAttemptCount:
		return strconv.AppendInt(b, int64(e.attempts), 10), true
	}
	return b, false
}

func strOrDash(b []byte, s string) ([]byte, bool) {
	if s == "" {
		return b, false
	}
	return append(b, s...), true
}

func stripPort(a string) string {
	if i := strings.LastIndexByte(a, ':'); i > 0 && !strings.HasSuffix(a, "]") {
		a = a[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
}

func (e *logEntry) header(op opKind, key string) string {
	switch key {
	case ":path":
		return e.path
	case ":method":
		return e.method
	case ":authority":
		return e.authority
	case ":scheme":
		return e.scheme
	case ":status":
		if e.status == 0 {
			return ""
		}
		return strconv.Itoa(e.status)
	}
	var h http.Header
	switch op {
	case opReq:
		h = e.reqHeader
	case opResp:
		h = e.respHeader
	default:
		h = e.respTrailer
	}
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// jsonField is one key of a JSON format: a format string, or a nested
// object, or a constant value.
type jsonField struct {
	key    string
	segs   []logSeg
	nested []jsonField
	konst  []byte // marshalled constant (numbers, booleans, null)
}

// logFormat is a compiled access log format.
type logFormat struct {
	text []logSeg
	json []jsonField
}

func compileJSON(st *structpb.Struct, hostname string) ([]jsonField, error) {
	keys := make([]string, 0, len(st.GetFields()))
	for k := range st.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []jsonField
	for _, k := range keys {
		v := st.GetFields()[k]
		f := jsonField{key: k}
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			f.segs = parseFormat(x.StringValue, hostname)
		case *structpb.Value_StructValue:
			n, err := compileJSON(x.StructValue, hostname)
			if err != nil {
				return nil, err
			}
			f.nested = n
		default:
			b, err := json.Marshal(v.AsInterface())
			if err != nil {
				return nil, fmt.Errorf("json format key %q: %w", k, err)
			}
			f.konst = b
		}
		out = append(out, f)
	}
	return out, nil
}

func (f *logFormat) render(e *logEntry, b []byte) []byte {
	if f.json == nil {
		for i := range f.text {
			var ok bool
			n := len(b)
			b, ok = f.text[i].value(e, b)
			if !ok {
				b = append(b[:n], '-')
			}
		}
		return b
	}
	b = renderJSON(f.json, e, b)
	return append(b, '\n')
}

func renderJSON(fields []jsonField, e *logEntry, b []byte) []byte {
	b = append(b, '{')
	var scratch [128]byte
	for i := range fields {
		f := &fields[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.key)
		b = append(b, ':')
		switch {
		case f.nested != nil:
			b = renderJSON(f.nested, e, b)
		case f.konst != nil:
			b = append(b, f.konst...)
		case len(f.segs) == 1 && f.segs[0].op != opLiteral:
			v, ok := f.segs[0].value(e, scratch[:0])
			switch {
			case !ok:
				b = append(b, "null"...)
			case f.segs[0].op.numeric():
				b = append(b, v...)
			default:
				b = appendJSONString(b, v)
			}
		default:
			s := scratch[:0]
			for j := range f.segs {
				var ok bool
				n := len(s)
				s, ok = f.segs[j].value(e, s)
				if !ok {
					s = append(s[:n], '-')
				}
			}
			b = appendJSONString(b, s)
		}
	}
	return append(b, '}')
}

func appendJSONString(b, s []byte) []byte {
	q, err := json.Marshal(string(s))
	if err != nil {
		return append(b, `""`...)
	}
	return append(b, q...)
}

// logSink serialises the lines written to one file.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *logSink) write(b []byte) {
	s.mu.Lock()
	_, _ = s.w.Write(b)
	s.mu.Unlock()
}

// accessLogger is one access log of an HCM or tcp_proxy.
type accessLogger struct {
	path   string
	format *logFormat
	sink   *logSink
}

// compileAccessLogs compiles the access logs of a filter; sink opens (or
// shares) the writer of a path.
func compileAccessLogs(logs []*accesslogv3.AccessLog, hostname string, sink func(path string) (*logSink, error)) ([]*accessLogger, error) {
	var out []*accessLogger
	for _, l := range logs {
		if l.GetFilter() != nil {
			return nil, errors.New("access log filters are not supported")
		}
		var fal filev3.FileAccessLog
		if tc := l.GetTypedConfig(); tc == nil || tc.UnmarshalTo(&fal) != nil {
			return nil, fmt.Errorf("access log %q: only %s is supported", l.GetName(), "envoy.extensions.access_loggers.file.v3.FileAccessLog")
		}
		f := &logFormat{}
		switch af := fal.GetAccessLogFormat().(type) {
		case nil:
			f.text = parseFormat(envoyDefaultFormat, hostname)
		case *filev3.FileAccessLog_Format:
			f.text = parseFormat(af.Format, hostname) //nolint:staticcheck // deprecated in Envoy, still valid configuration
		case *filev3.FileAccessLog_JsonFormat:
			js, err := compileJSON(af.JsonFormat, hostname) //nolint:staticcheck // deprecated in Envoy, still valid configuration
			if err != nil {
				return nil, err
			}
			f.json = js
		case *filev3.FileAccessLog_LogFormat:
			sfs := af.LogFormat
			switch ff := sfs.GetFormat().(type) {
			case *corev3.SubstitutionFormatString_TextFormat:
				f.text = parseFormat(ff.TextFormat, hostname) //nolint:staticcheck // deprecated in Envoy, still valid configuration
			case *corev3.SubstitutionFormatString_TextFormatSource:
				var src string
				switch d := ff.TextFormatSource.GetSpecifier().(type) {
				case *corev3.DataSource_InlineString:
					src = d.InlineString
				case *corev3.DataSource_InlineBytes:
					src = string(d.InlineBytes)
				default:
					return nil, fmt.Errorf("access log %q: only inline text formats are supported", l.GetName())
				}
				f.text = parseFormat(src, hostname)
			case *corev3.SubstitutionFormatString_JsonFormat:
				js, err := compileJSON(ff.JsonFormat, hostname)
				if err != nil {
					return nil, err
				}
				f.json = js
			default:
				return nil, fmt.Errorf("access log %q: unsupported format %T", l.GetName(), ff)
			}
		default:
			return nil, fmt.Errorf("access log %q: unsupported format %T", l.GetName(), af)
		}
		if f.json != nil && len(f.json) == 0 {
			f.json = []jsonField{}
		}
		s, err := sink(fal.GetPath())
		if err != nil {
			return nil, err
		}
		out = append(out, &accessLogger{path: fal.GetPath(), format: f, sink: s})
	}
	return out, nil
}

// writeLogs writes an entry to every logger, rendering into a pooled
// buffer.
func writeLogs(loggers []*accessLogger, e *logEntry, pool *sync.Pool) {
	if len(loggers) == 0 {
		return
	}
	bp := pool.Get().(*[]byte)
	for _, l := range loggers {
		b := l.format.render(e, (*bp)[:0])
		l.sink.write(b)
		*bp = b
	}
	pool.Put(bp)
}
