package mrsigner

import (
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/trellis-garden/trellis/internal/secretsig"
)

// MatchConditions are the CEL conditions under which the API server calls the
// webhooks: the new or old Secret carries a signature annotation or one of the
// default scope labels. Every other Secret write never reaches mr-signer, so it
// cannot slow down or (with failurePolicy Fail) block them. deploy/mr-signer/base
// holds the same expression (TestDeployBase compares them).
func MatchConditions() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{{Name: "signed-or-in-scope", Expression: MatchExpression()}}
}

// MatchExpression is the CEL expression of MatchConditions.
func MatchExpression() string {
	obj := func(o string) string {
		parts := []string{fmt.Sprintf("(has(%[1]s.metadata.annotations) && '%[2]s' in %[1]s.metadata.annotations)", o, secretsig.Annotation)}
		for _, l := range []string{GardenerReferenceLabel, TrellisScopeLabel} {
			k, v, _ := strings.Cut(l, "=")
			parts = append(parts, fmt.Sprintf("(has(%[1]s.metadata.labels) && '%[2]s' in %[1]s.metadata.labels && %[1]s.metadata.labels['%[2]s'] == '%[3]s')", o, k, v))
		}
		return strings.Join(parts, " || ")
	}
	return obj("object") + " || (oldObject != null && (" + obj("oldObject") + "))"
}
