package mrsigner

import (
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/trellis-garden/trellis/internal/secretsig"
)

// MatchConditions are the CEL conditions under which the API server calls the
// Secret webhooks: every CREATE (a new Secret may take a name that a
// ManagedResource references, which CEL cannot look up: the webhook decides from
// its ManagedResource cache), and an UPDATE or DELETE whose new or old Secret
// carries a signature annotation or one of the default scope labels. Other Secret
// updates and deletes never reach mr-signer, so it cannot slow down or (with
// failurePolicy Fail) block them. deploy/mr-signer/base holds the same expression
// (TestDeployBase compares them).
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
	// object is null on DELETE, oldObject on CREATE.
	return "request.operation == 'CREATE' || (object != null && (" + obj("object") + ")) || (oldObject != null && (" + obj("oldObject") + "))"
}

// ManagedResourceMatchExpression is the CEL condition of the ManagedResource
// webhook: creations and changes of spec (secretRefs and everything else that
// decides what the resource manager applies). The resource manager's own finalizer
// updates and every status or metadata write never reach mr-signer.
func ManagedResourceMatchExpression() string {
	return "request.operation == 'CREATE' || !has(oldObject.spec) || !has(object.spec) || object.spec != oldObject.spec"
}
