package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FieldManager is the server-side apply field manager of a daemon:
// "trellis-<daemon>", so `kubectl get -o yaml --show-managed-fields` names the owner.
func FieldManager(daemonName string) string { return Identity(daemonName) }

// ApplyFunc is a typed client's Apply method, e.g. client.CoreV1().ConfigMaps(ns).Apply.
type ApplyFunc[C any, T any] func(ctx context.Context, cfg C, opts metav1.ApplyOptions) (T, error)

// Applier writes objects with server-side apply under one field manager, so a
// daemon owns exactly the fields it sends and nothing else.
type Applier struct {
	FieldManager string
	// Force takes fields over from other managers. Off by default: a conflict is
	// reported as *ConflictError instead of silently overwriting someone's field.
	Force bool
}

// Apply sends cfg through apply. A conflict with another field manager comes back as
// a *ConflictError naming the fields and their managers.
func Apply[C any, T any](ctx context.Context, a Applier, apply ApplyFunc[C, T], cfg C) (T, error) {
	obj, err := apply(ctx, cfg, metav1.ApplyOptions{FieldManager: a.FieldManager, Force: a.Force})
	if err != nil {
		if ce := AsConflict(err); ce != nil {
			return obj, ce
		}
		return obj, err
	}
	return obj, nil
}

// ConflictError is a server-side apply conflict: another manager owns fields this
// apply wanted to set to a different value.
type ConflictError struct {
	// Conflicts are "field: manager" descriptions as the API server reports them.
	Conflicts []string
	Err       error
}

func (e *ConflictError) Error() string {
	return "apply conflict: " + strings.Join(e.Conflicts, "; ")
}
func (e *ConflictError) Unwrap() error { return e.Err }

// AsConflict returns a *ConflictError when err is an apply conflict, else nil.
func AsConflict(err error) *ConflictError {
	var ce *ConflictError
	if errors.As(err, &ce) {
		return ce
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) || !apierrors.IsConflict(err) {
		return nil
	}
	st := se.Status()
	out := &ConflictError{Err: err}
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Type == metav1.CauseTypeFieldManagerConflict {
				out.Conflicts = append(out.Conflicts, fmt.Sprintf("%s: %s", c.Field, c.Message))
			}
		}
	}
	if len(out.Conflicts) == 0 {
		// An optimistic-lock conflict (resourceVersion), not a field ownership one.
		return nil
	}
	sort.Strings(out.Conflicts)
	return out
}
