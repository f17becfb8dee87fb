// SPDX-License-Identifier: Apache-2.0

package manifest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// LabelSelector is a Kubernetes label selector (metav1.LabelSelector): all of
// MatchLabels and all of MatchExpressions must hold. A nil *LabelSelector
// selects nothing, an empty one everything, as the App Mesh controller reads
// namespaceSelector and podSelector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// The label selector operators.
const (
	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
)

// Matches reports whether the selector selects an object with these labels.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	for k, v := range s.MatchLabels {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case OpIn:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case OpNotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case OpExists:
			if !ok {
				return false
			}
		case OpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false // validate rejects it; never select on a broken rule
		}
	}
	return true
}

// validate checks the requirements the way Kubernetes does: a known operator,
// values for In and NotIn, none for Exists and DoesNotExist.
func (s *LabelSelector) validate() []fieldError {
	if s == nil {
		return nil
	}
	var errs []fieldError
	for i, r := range s.MatchExpressions {
		p := indexPath("matchExpressions", i)
		if r.Key == "" {
			errs = append(errs, fieldError{p + ".key", errors.New("is required")})
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				errs = append(errs, fieldError{p + ".values", fmt.Errorf("must be non-empty for operator %s", r.Operator)})
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				errs = append(errs, fieldError{p + ".values", fmt.Errorf("must be empty for operator %s", r.Operator)})
			}
		default:
			errs = append(errs, fieldError{p + ".operator", fmt.Errorf("%q is not one of In, NotIn, Exists, DoesNotExist", r.Operator)})
		}
	}
	return errs
}

// String renders the selector in kubectl's syntax ("a=b,c in (d,e)"), or
// "<none>" for nil and "<all>" for an empty selector.
func (s *LabelSelector) String() string {
	if s == nil {
		return "<none>"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case OpExists:
			parts = append(parts, r.Key)
		case OpDoesNotExist:
			parts = append(parts, "!"+r.Key)
		default:
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(r.Operator), strings.Join(r.Values, ",")))
		}
	}
	if len(parts) == 0 {
		return "<all>"
	}
	return strings.Join(parts, ",")
}
