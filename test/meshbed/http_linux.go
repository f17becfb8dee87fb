// SPDX-License-Identifier: Apache-2.0

package meshbed

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/test/testutil"
)

// NSHTTPClient returns a client whose connections are made inside ns.
func NSHTTPClient(ns *testutil.NetNS) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var conn net.Conn
				err := ns.Do(func() error {
					var err error
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			},
		},
	}
}

// Get fetches url with c and returns the status code and the body.
func Get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Metrics are the samples of one scrape, keyed by the series as the text
// format prints it.
type Metrics map[string]float64

// Scrape fetches and parses the Prometheus text at url.
func Scrape(ctx context.Context, c *http.Client, url string) (Metrics, error) {
	code, body, err := Get(ctx, c, url)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, code)
	}
	m := Metrics{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Sum adds up the series of name that carry every label given as "key",
// "value" pairs.
func (m Metrics) Sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+rest, ","+labels[i]+"="+strconv.Quote(labels[i+1])) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// Matching returns the series of name whose text contains s, sorted.
func (m Metrics) Matching(name, s string) []string {
	var out []string
	for series := range m {
		if n, _, _ := strings.Cut(series, "{"); n == name && strings.Contains(series, s) {
			out = append(out, series)
		}
	}
	slices.Sort(out)
	return out
}
