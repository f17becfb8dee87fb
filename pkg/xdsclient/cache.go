// SPDX-License-Identifier: Apache-2.0

package xdsclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// cacheFormat is the version of the cache file's layout.
const cacheFormat = 1

// cacheFile is the cache file: JSON, each resource a binary protobuf Any
// (base64), so that reading it needs no type registry.
type cacheFile struct {
	Format int                  `json:"format"`
	NodeID string               `json:"nodeID"`
	Types  map[string]cacheType `json:"types"`
}

type cacheType struct {
	Version   string   `json:"version"`
	Resources [][]byte `json:"resources"`
}

// writeCache writes cfg atomically: a temporary file in the same
// directory, fsync, rename over path, fsync of the directory.
func writeCache(path, nodeID string, cfg map[string]Resources) error {
	f := cacheFile{Format: cacheFormat, NodeID: nodeID, Types: map[string]cacheType{}}
	for t, r := range cfg {
		ct := cacheType{Version: r.Version, Resources: make([][]byte, 0, len(r.Items))}
		for _, it := range r.Items {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(it)
			if err != nil {
				return fmt.Errorf("encode %s: %w", t, err)
			}
			ct.Resources = append(ct.Resources, b)
		}
		f.Types[t] = ct
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func writeFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return err
	}
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readCache reads the cache file; nil when there is none.
func readCache(path, nodeID string) (map[string]Resources, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode cache file: %w", err)
	}
	if f.Format != cacheFormat {
		return nil, fmt.Errorf("cache file format %d, want %d", f.Format, cacheFormat)
	}
	if f.NodeID != nodeID {
		return nil, fmt.Errorf("cache file is for node %q, this is %q", f.NodeID, nodeID)
	}
	out := make(map[string]Resources, len(f.Types))
	for t, ct := range f.Types {
		r := Resources{Version: ct.Version, Items: make([]*anypb.Any, 0, len(ct.Resources))}
		for _, rb := range ct.Resources {
			a := &anypb.Any{}
			if err := proto.Unmarshal(rb, a); err != nil {
				return nil, fmt.Errorf("decode cached %s: %w", t, err)
			}
			r.Items = append(r.Items, a)
		}
		out[t] = r
	}
	return out, nil
}
