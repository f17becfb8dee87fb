// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// strMatch is a compiled StringMatcher.
type strMatch struct {
	kind       strKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// compileRegex compiles an RE2 expression for a whole-string match, as
// Envoy's safe_regex matches.
func compileRegex(re string) (*regexp.Regexp, error) {
	r, err := regexp.Compile("^(?:" + re + ")$")
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", re, err)
	}
	return r, nil
}

func compileStringMatcher(sm *matcherv3.StringMatcher) (strMatch, error) {
	m := strMatch{ignoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return m, err
		}
		m.kind, m.re = strRegex, re
	default:
		return m, fmt.Errorf("unsupported string matcher %T", p)
	}
	if m.ignoreCase && m.kind != strRegex {
		m.value = strings.ToLower(m.value)
	}
	return m, nil
}

func (m *strMatch) match(s string) bool {
	if m.ignoreCase && m.kind != strRegex {
		s = strings.ToLower(s)
	}
	switch m.kind {
	case strExact:
		return s == m.value
	case strPrefix:
		return strings.HasPrefix(s, m.value)
	case strSuffix:
		return strings.HasSuffix(s, m.value)
	case strContains:
		return strings.Contains(s, m.value)
	default:
		return m.re.MatchString(s)
	}
}

// headerKind says which request attribute a header matcher reads.
type headerKind uint8

const (
	hdrPlain headerKind = iota
	hdrMethod
	hdrScheme
	hdrAuthority
	hdrPath
)

type headerMatchType uint8

const (
	hmString headerMatchType = iota
	hmRange
	hmPresent
)

// headerMatch is a compiled HeaderMatcher.
type headerMatch struct {
	name           string // canonical key for plain headers
	kind           headerKind
	typ            headerMatchType
	str            strMatch
	start, end     int64
	present        bool
	invert         bool
	missingAsEmpty bool
}

func compileHeaderMatcher(hm *routev3.HeaderMatcher) (headerMatch, error) {
	h := headerMatch{invert: hm.GetInvertMatch(), missingAsEmpty: hm.GetTreatMissingHeaderAsEmpty()}
	name := strings.ToLower(hm.GetName())
	switch name {
	case ":method":
		h.kind = hdrMethod
	case ":scheme":
		h.kind = hdrScheme
	case ":authority", "host":
		h.kind = hdrAuthority
	case ":path":
		h.kind = hdrPath
	default:
		if strings.HasPrefix(name, ":") {
			return h, fmt.Errorf("header matcher on unsupported pseudo-header %q", name)
		}
		h.name = http.CanonicalHeaderKey(name)
	}
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileStringMatcher(s.StringMatch)
		if err != nil {
			return h, fmt.Errorf("header %q: %w", name, err)
		}
		h.typ, h.str = hmString, sm
	case *routev3.HeaderMatcher_ExactMatch:
		h.typ, h.str = hmString, strMatch{kind: strExact, value: s.ExactMatch} //nolint:staticcheck // deprecated in Envoy, still valid configuration
	case *routev3.HeaderMatcher_PrefixMatch:
		h.typ, h.str = hmString, strMatch{kind: strPrefix, value: s.PrefixMatch} //nolint:staticcheck // deprecated in Envoy, still valid configuration
	case *routev3.HeaderMatcher_SuffixMatch:
		h.typ, h.str = hmString, strMatch{kind: strSuffix, value: s.SuffixMatch} //nolint:staticcheck // deprecated in Envoy, still valid configuration
	case *routev3.HeaderMatcher_ContainsMatch:
		h.typ, h.str = hmString, strMatch{kind: strContains, value: s.ContainsMatch} //nolint:staticcheck // deprecated in Envoy, still valid configuration
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(s.SafeRegexMatch.GetRegex()) //nolint:staticcheck // deprecated in Envoy, still valid configuration
		if err != nil {
			return h, fmt.Errorf("header %q: %w", name, err)
		}
		h.typ, h.str = hmString, strMatch{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_RangeMatch:
		h.typ, h.start, h.end = hmRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_PresentMatch:
		h.typ, h.present = hmPresent, s.PresentMatch
	case nil:
		// No specifier: Envoy tests presence.
		h.typ, h.present = hmPresent, true
	default:
		return h, fmt.Errorf("header %q: unsupported matcher %T", name, s)
	}
	return h, nil
}

// value returns the request's value for the matcher: several values of a
// header are joined with ",", as Envoy does.
func (h *headerMatch) value(r *http.Request, rq *reqCtx) (string, bool) {
	switch h.kind {
	case hdrMethod:
		return r.Method, true
	case hdrScheme:
		return rq.scheme, true
	case hdrAuthority:
		return r.Host, true
	case hdrPath:
		return rq.fullPath(r), true
	}
	vs := r.Header[h.name]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func (h *headerMatch) match(r *http.Request, rq *reqCtx) bool {
	v, ok := h.value(r, rq)
	if !ok {
		if !h.missingAsEmpty {
			// Envoy: a missing header fails every matcher except an
			// inverted non-presence one and present_match: false.
			if h.typ == hmPresent {
				return h.present == h.invert
			}
			return h.invert
		}
		v = ""
	}
	var res bool
	switch h.typ {
	case hmString:
		res = h.str.match(v)
	case hmRange:
		n, err := strconv.ParseInt(v, 10, 64)
		res = err == nil && n >= h.start && n < h.end
	case hmPresent:
		res = h.present
	}
	return res != h.invert
}

// queryMatch is a compiled QueryParameterMatcher.
type queryMatch struct {
	name    string
	present bool // present_match
	str     strMatch
}

func compileQueryMatcher(q *routev3.QueryParameterMatcher) (queryMatch, error) {
	m := queryMatch{name: q.GetName()}
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, err := compileStringMatcher(s.StringMatch)
		if err != nil {
			return m, fmt.Errorf("query parameter %q: %w", m.name, err)
		}
		m.str = sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		if !s.PresentMatch {
			return m, fmt.Errorf("query parameter %q: present_match false is not supported", m.name)
		}
		m.present = true
	case nil:
		m.present = true
	default:
		return m, fmt.Errorf("query parameter %q: unsupported matcher %T", m.name, s)
	}
	if m.name == "" {
		return m, errors.New("query parameter matcher without a name")
	}
	return m, nil
}

// queryValue finds the first value of a query parameter without parsing
// the whole query into a map.
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			if u, err := url.QueryUnescape(k); err == nil {
				k = u
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if u, err := url.QueryUnescape(v); err == nil {
				v = u
			}
		}
		return v, true
	}
	return "", false
}

func (q *queryMatch) match(rawQuery string) bool {
	v, ok := queryValue(rawQuery, q.name)
	if !ok {
		return false
	}
	if q.present {
		return true
	}
	return q.str.match(v)
}
