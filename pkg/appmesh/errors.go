// SPDX-License-Identifier: Apache-2.0

package appmesh

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrorType is an App Mesh error type, as the REST API names it in the
// x-amzn-ErrorType header and the error body.
type ErrorType string

// The App Mesh error types.
const (
	ErrBadRequest         ErrorType = "BadRequestException"
	ErrLimitExceeded      ErrorType = "LimitExceededException"
	ErrTooManyTags        ErrorType = "TooManyTagsException"
	ErrForbidden          ErrorType = "ForbiddenException"
	ErrNotFound           ErrorType = "NotFoundException"
	ErrConflict           ErrorType = "ConflictException"
	ErrResourceInUse      ErrorType = "ResourceInUseException"
	ErrTooManyRequests    ErrorType = "TooManyRequestsException"
	ErrInternal           ErrorType = "InternalServerErrorException"
	ErrServiceUnavailable ErrorType = "ServiceUnavailableException"
)

// HTTPStatus is the status code App Mesh answers the error type with.
func (t ErrorType) HTTPStatus() int {
	switch t {
	case ErrBadRequest, ErrLimitExceeded, ErrTooManyTags:
		return http.StatusBadRequest
	case ErrForbidden:
		return http.StatusForbidden
	case ErrNotFound:
		return http.StatusNotFound
	case ErrConflict, ErrResourceInUse:
		return http.StatusConflict
	case ErrTooManyRequests:
		return http.StatusTooManyRequests
	case ErrServiceUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Short is the type without the "Exception" suffix ("NotFound").
func (t ErrorType) Short() string {
	s := strings.TrimSuffix(string(t), "Exception")
	return strings.TrimSuffix(s, "Error")
}

// APIError is an error with an App Mesh error type. Every error the controller
// returns to a client is one of these.
type APIError struct {
	Type    ErrorType
	Message string
}

func (e *APIError) Error() string { return e.Type.Short() + ": " + e.Message }

// Errorf builds an APIError.
func Errorf(t ErrorType, format string, args ...any) *APIError {
	return &APIError{Type: t, Message: fmt.Sprintf(format, args...)}
}

// TypeOf returns the App Mesh error type of err: the APIError's type, BadRequest
// for a validation error, else InternalServerError.
func TypeOf(err error) ErrorType {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Type
	}
	var ve ValidationError
	if errors.As(err, &ve) {
		return ErrBadRequest
	}
	return ErrInternal
}

// IsType reports whether err is an APIError (or validation error) of type t.
func IsType(err error, t ErrorType) bool { return err != nil && TypeOf(err) == t }

// FieldError is one broken rule: the field path (as JSON names, e.g.
// spec.httpRoute.action.weightedTargets[1].weight) and the rule it breaks.
type FieldError struct {
	Field string
	Rule  string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Rule }

// ValidationError is every broken rule of one resource, in field order.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	parts := make([]string, len(v))
	for i, e := range v {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}
