// SPDX-License-Identifier: Apache-2.0

package xds_test

import (
	"testing"

	"github.com/weft-mesh/weft/controlplane/xds/translate"
	"github.com/weft-mesh/weft/pkg/xdsclient"
)

// TestSamplesResolve checks that every proxy configuration the translator
// makes of the sample sets resolves all its references
// (xdsclient.ProxyResources.Dangling): the node proxy holds a configuration
// that does not until the rest arrives, so one the controller made that way
// would be applied only after the client's MaxHold.
func TestSamplesResolve(t *testing.T) {
	for _, set := range sampleSets {
		t.Run(set.name, func(t *testing.T) {
			res := translate.Translate(loadSample(t, set.paths).input())
			if len(res.Proxies) == 0 {
				t.Fatal("no proxy configuration")
			}
			for _, p := range res.Proxies {
				r := xdsclient.ProxyResources{Listeners: p.Listeners, Routes: p.Routes, Clusters: p.Clusters, Endpoints: p.Endpoints}
				if err := r.Dangling(); err != nil {
					t.Errorf("%s: %v", p.NodeID, err)
				}
			}
		})
	}
}
