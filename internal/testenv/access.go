package testenv

import (
	"context"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceAccountMay asks the API server (a SubjectAccessReview) whether the
// ServiceAccount namespace/name may do what attrs describe, with the groups every
// ServiceAccount has: the check a deploy test makes of a base's RBAC.
func (e *Env) ServiceAccountMay(t testing.TB, namespace, name string, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := e.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + namespace + ":" + name,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace},
		ResourceAttributes: &attrs,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}
