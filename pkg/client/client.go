// SPDX-License-Identifier: Apache-2.0

// Package client is a small Go client of the weft controller's API: the App
// Mesh REST surface for reading and deleting, and weft's transactional apply.
// weftctl and the tests use it; any AWS SDK's App Mesh client works against
// the same server too.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/pkg/api"
	"github.com/weft-mesh/weft/pkg/appmesh"
)

// Options configures a Client.
type Options struct {
	// Token is sent as a bearer token when set.
	Token string
	// CAFile verifies an HTTPS server against this CA bundle.
	CAFile string
	// CertFile and KeyFile present a client certificate (mTLS).
	CertFile, KeyFile string
	// Timeout bounds each request; default 30s.
	Timeout time.Duration
}

// Client talks to one controller.
type Client struct {
	base  *url.URL
	hc    *http.Client
	token string
}

// New returns a client of the controller at server (http:// or https://).
func New(server string, opts Options) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want http://host:port or https://host:port", server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.CAFile != "" || opts.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
			}
		}
		if opts.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Client{base: u, hc: &http.Client{Transport: tr, Timeout: opts.Timeout}, token: opts.Token}, nil
}

// Error is an error answer of the API.
type Error struct {
	Status int
	Body   api.ErrorBody
}

func (e *Error) Error() string {
	s := strings.TrimSuffix(e.Body.Code, "Exception") + ": " + e.Body.Message
	return s
}

// Type is the App Mesh error type of the answer.
func (e *Error) Type() appmesh.ErrorType { return appmesh.ErrorType(e.Body.Code) }

// IsType reports whether err is an API error of type t.
func IsType(err error, t appmesh.ErrorType) bool {
	var e *Error
	return errors.As(err, &e) && e.Type() == t
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, hdr http.Header, body any, out any) error {
	u := *c.base
	u.RawPath = strings.TrimSuffix(c.base.EscapedPath(), "/") + path
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = query.Encode()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, &e.Body) != nil || e.Body.Code == "" {
			e.Body.Code = resp.Header.Get("X-Amzn-Errortype")
			e.Body.Message = strings.TrimSpace(string(b))
			if e.Body.Code == "" {
				e.Body.Code = http.StatusText(resp.StatusCode)
			}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Apply creates or updates items in one transaction.
func (c *Client) Apply(ctx context.Context, req api.ApplyRequest) (*api.ApplyResponse, error) {
	var out api.ApplyResponse
	if err := c.do(ctx, http.MethodPost, api.ApplyPath, nil, nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Describe returns one resource, with its tags.
func (c *Client) Describe(ctx context.Context, ref appmesh.Ref) (*appmesh.Resource, error) {
	k, err := api.Info(ref.Kind)
	if err != nil {
		return nil, err
	}
	var b []byte
	if err := c.do(ctx, http.MethodGet, k.ItemPath(ref), nil, nil, nil, &b); err != nil {
		return nil, err
	}
	r, err := k.DecodeData(b)
	if err != nil {
		return nil, err
	}
	r.Tags, err = c.ListTags(ctx, r.Metadata.ARN)
	return r, err
}

// ListTags returns every tag of a resource.
func (c *Client) ListTags(ctx context.Context, arn string) ([]appmesh.Tag, error) {
	var all []appmesh.Tag
	next := ""
	for {
		q := url.Values{"resourceArn": {arn}}
		if next != "" {
			q.Set("nextToken", next)
		}
		var page struct {
			Tags      []appmesh.Tag `json:"tags"`
			NextToken string        `json:"nextToken"`
		}
		if err := c.do(ctx, http.MethodGet, api.Prefix+"/tags", q, nil, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Tags...)
		if next = page.NextToken; next == "" {
			return all, nil
		}
	}
}

// Entry is one resource of a List: its ref and metadata.
type Entry struct {
	Ref      appmesh.Ref
	Metadata appmesh.Metadata
}

// List returns every resource of a kind in a mesh (and parent), following the
// pages.
func (c *Client) List(ctx context.Context, kind appmesh.Kind, mesh, parent string) ([]Entry, error) {
	k, err := api.Info(kind)
	if err != nil {
		return nil, err
	}
	var out []Entry
	next := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(100)}}
		if next != "" {
			q.Set("nextToken", next)
		}
		var page map[string]json.RawMessage
		if err := c.do(ctx, http.MethodGet, k.CollectionPath(mesh, parent), q, nil, nil, &page); err != nil {
			return nil, err
		}
		var items []json.RawMessage
		if err := json.Unmarshal(page[k.ListField], &items); err != nil && len(page[k.ListField]) > 0 {
			return nil, fmt.Errorf("decode list: %w", err)
		}
		for _, it := range items {
			ref, md, err := k.DecodeRef(it)
			if err != nil {
				return nil, fmt.Errorf("decode list entry: %w", err)
			}
			out = append(out, Entry{Ref: ref, Metadata: md})
		}
		next = ""
		if t, ok := page["nextToken"]; ok {
			_ = json.Unmarshal(t, &next)
		}
		if next == "" {
			return out, nil
		}
	}
}

// Delete deletes a resource; expectedVersion 0 means any version.
func (c *Client) Delete(ctx context.Context, ref appmesh.Ref, expectedVersion int64) (*appmesh.Resource, error) {
	k, err := api.Info(ref.Kind)
	if err != nil {
		return nil, err
	}
	var hdr http.Header
	if expectedVersion > 0 {
		hdr = http.Header{api.IfMatch: {strconv.FormatInt(expectedVersion, 10)}}
	}
	var b []byte
	if err := c.do(ctx, http.MethodDelete, k.ItemPath(ref), nil, hdr, nil, &b); err != nil {
		return nil, err
	}
	return k.DecodeData(b)
}
