// SPDX-License-Identifier: Apache-2.0

// Package sdkconv converts between App Mesh API JSON (weft's appmesh types)
// and the AWS SDK for Go v2's appmesh/types structs, by reflection over the
// SDK's naming rules: a JSON field "virtualNodeName" is the Go field
// VirtualNodeName, and a union member "dns" of the interface ServiceDiscovery
// is the struct ServiceDiscoveryMemberDns{Value}. Tests use it to drive the
// real SDK client with the same resources weft reads from files, and to read
// the SDK's answers back for comparison. Unknown fields are errors, so that a
// spelling that differs between weft and the SDK cannot pass unnoticed.
package sdkconv

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/service/appmesh/types"
)

// unionMembers are every union member type of the SDK, by type name.
var unionMembers = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, v := range []any{
		types.AccessLogMemberFile{},
		types.BackendMemberVirtualService{},
		types.ClientTlsCertificateMemberFile{},
		types.ClientTlsCertificateMemberSds{},
		types.GrpcMetadataMatchMethodMemberExact{},
		types.GrpcMetadataMatchMethodMemberPrefix{},
		types.GrpcMetadataMatchMethodMemberRange{},
		types.GrpcMetadataMatchMethodMemberRegex{},
		types.GrpcMetadataMatchMethodMemberSuffix{},
		types.GrpcRouteMetadataMatchMethodMemberExact{},
		types.GrpcRouteMetadataMatchMethodMemberPrefix{},
		types.GrpcRouteMetadataMatchMethodMemberRange{},
		types.GrpcRouteMetadataMatchMethodMemberRegex{},
		types.GrpcRouteMetadataMatchMethodMemberSuffix{},
		types.HeaderMatchMethodMemberExact{},
		types.HeaderMatchMethodMemberPrefix{},
		types.HeaderMatchMethodMemberRange{},
		types.HeaderMatchMethodMemberRegex{},
		types.HeaderMatchMethodMemberSuffix{},
		types.ListenerTimeoutMemberGrpc{},
		types.ListenerTimeoutMemberHttp{},
		types.ListenerTimeoutMemberHttp2{},
		types.ListenerTimeoutMemberTcp{},
		types.ListenerTlsCertificateMemberAcm{},
		types.ListenerTlsCertificateMemberFile{},
		types.ListenerTlsCertificateMemberSds{},
		types.ListenerTlsValidationContextTrustMemberFile{},
		types.ListenerTlsValidationContextTrustMemberSds{},
		types.LoggingFormatMemberJson{},
		types.LoggingFormatMemberText{},
		types.ServiceDiscoveryMemberAwsCloudMap{},
		types.ServiceDiscoveryMemberDns{},
		types.TlsValidationContextTrustMemberAcm{},
		types.TlsValidationContextTrustMemberFile{},
		types.TlsValidationContextTrustMemberSds{},
		types.VirtualGatewayAccessLogMemberFile{},
		types.VirtualGatewayClientTlsCertificateMemberFile{},
		types.VirtualGatewayClientTlsCertificateMemberSds{},
		types.VirtualGatewayConnectionPoolMemberGrpc{},
		types.VirtualGatewayConnectionPoolMemberHttp{},
		types.VirtualGatewayConnectionPoolMemberHttp2{},
		types.VirtualGatewayListenerTlsCertificateMemberAcm{},
		types.VirtualGatewayListenerTlsCertificateMemberFile{},
		types.VirtualGatewayListenerTlsCertificateMemberSds{},
		types.VirtualGatewayListenerTlsValidationContextTrustMemberFile{},
		types.VirtualGatewayListenerTlsValidationContextTrustMemberSds{},
		types.VirtualGatewayTlsValidationContextTrustMemberAcm{},
		types.VirtualGatewayTlsValidationContextTrustMemberFile{},
		types.VirtualGatewayTlsValidationContextTrustMemberSds{},
		types.VirtualNodeConnectionPoolMemberGrpc{},
		types.VirtualNodeConnectionPoolMemberHttp{},
		types.VirtualNodeConnectionPoolMemberHttp2{},
		types.VirtualNodeConnectionPoolMemberTcp{},
		types.VirtualServiceProviderMemberVirtualNode{},
		types.VirtualServiceProviderMemberVirtualRouter{},
	} {
		t := reflect.TypeOf(v)
		m[t.Name()] = t
	}
	return m
}()

// ToSDK fills the SDK struct dst points to from v, any value that marshals to
// App Mesh API JSON (such as a weft spec).
func ToSDK(v any, dst any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer {
		return fmt.Errorf("dst must be a pointer")
	}
	return fill(rv.Elem(), generic, "spec")
}

func fill(dst reflect.Value, v any, path string) error {
	if v == nil {
		return nil
	}
	switch dst.Kind() {
	case reflect.Pointer:
		e := reflect.New(dst.Type().Elem())
		if err := fill(e.Elem(), v, path); err != nil {
			return err
		}
		dst.Set(e)
		return nil
	case reflect.Interface:
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return fmt.Errorf("%s: a union needs exactly one member, got %v", path, v)
		}
		for k, mv := range m {
			name := dst.Type().Name() + "Member" + upperFirst(k)
			t, ok := unionMembers[name]
			if !ok {
				return fmt.Errorf("%s.%s: no SDK union member %s", path, k, name)
			}
			mem := reflect.New(t)
			if err := fill(mem.Elem().FieldByName("Value"), mv, path+"."+k); err != nil {
				return err
			}
			dst.Set(mem)
		}
		return nil
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", path, v)
		}
		for k, fv := range m {
			f := dst.FieldByName(upperFirst(k))
			if !f.IsValid() || !f.CanSet() {
				return fmt.Errorf("%s.%s: the SDK's %s has no such field", path, k, dst.Type().Name())
			}
			if err := fill(f, fv, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want a list, got %T", path, v)
		}
		s := reflect.MakeSlice(dst.Type(), len(items), len(items))
		for i, it := range items {
			if err := fill(s.Index(i), it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		dst.Set(s)
		return nil
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %T", path, v)
		}
		dst.SetString(s)
		return nil
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want a number, got %T", path, v)
		}
		i, err := n.Int64()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		dst.SetInt(i)
		return nil
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%s: want a boolean, got %T", path, v)
		}
		dst.SetBool(b)
		return nil
	}
	return fmt.Errorf("%s: cannot fill a %s", path, dst.Type())
}

// FromSDK renders an SDK struct (or pointer) as App Mesh API JSON.
func FromSDK(v any) (json.RawMessage, error) {
	g := generic(reflect.ValueOf(v))
	if g == nil {
		g = map[string]any{}
	}
	return json.Marshal(g)
}

func generic(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		e := v.Elem()
		if v.Kind() == reflect.Interface {
			if e.Kind() == reflect.Pointer {
				e = e.Elem()
			}
			if _, member, ok := strings.Cut(e.Type().Name(), "Member"); ok {
				return map[string]any{lowerFirst(member): generic(e.FieldByName("Value"))}
			}
		}
		return generic(e)
	case reflect.Struct:
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if g := generic(v.Field(i)); g != nil {
				m[lowerFirst(f.Name)] = g
			}
		}
		if len(m) == 0 {
			return map[string]any{}
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = generic(v.Index(i))
		}
		return out
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return v.String()
	case reflect.Int32, reflect.Int64, reflect.Int:
		return v.Int()
	case reflect.Bool:
		return v.Bool()
	}
	return nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}
