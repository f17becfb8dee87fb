// SPDX-License-Identifier: Apache-2.0

package restapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/weft-mesh/weft/pkg/appmesh"
)

// decodeStrict decodes a JSON body into v, refusing unknown fields and
// trailing data, and says where a bad value is.
func decodeStrict(body io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return appmesh.Errorf(appmesh.ErrBadRequest, "read request body: %v", err)
	}
	if len(b) > maxBody {
		return appmesh.Errorf(appmesh.ErrBadRequest, "request body exceeds %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return appmesh.Errorf(appmesh.ErrBadRequest, "request body: unexpected data after the JSON object")
	}
	return nil
}

const maxBody = 4 << 20

// jsonError turns a decoding error into a BadRequest naming the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return appmesh.ValidationError{{Field: te.Field, Rule: fmt.Sprintf("must be a %s, not a JSON %s", jsonTypeName(te.Type.String()), te.Value)}}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return appmesh.Errorf(appmesh.ErrBadRequest, "request body is not valid JSON at byte %d: %v", se.Offset, err)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return appmesh.Errorf(appmesh.ErrBadRequest, "unknown field %s", f)
	}
	return appmesh.Errorf(appmesh.ErrBadRequest, "request body: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonTypeName(goType string) string {
	if strings.HasPrefix(goType, "[]") {
		return "list"
	}
	goType = strings.TrimLeft(goType, "*")
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "whole number"
	case goType == "bool":
		return "boolean"
	case goType == "string":
		return "string"
	case strings.HasPrefix(goType, "appmesh.") && (strings.HasSuffix(goType, "Protocol") || strings.HasSuffix(goType, "Type") ||
		strings.HasSuffix(goType, "Mode") || strings.HasSuffix(goType, "Unit") || strings.HasSuffix(goType, "Preference") ||
		strings.HasSuffix(goType, "Method") || strings.HasSuffix(goType, "Scheme") || strings.HasSuffix(goType, "State")):
		return "string"
	}
	return "object"
}
