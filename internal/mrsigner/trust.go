package mrsigner

import (
	"fmt"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// Trust says whose writes get signed: exact user names (service accounts are
// users named system:serviceaccount:<namespace>:<name>) and groups.
type Trust struct {
	users  map[string]bool
	groups map[string]bool
}

// NewTrust builds a Trust; serviceAccounts are "namespace:name" pairs already split.
func NewTrust(users, groups []string, serviceAccounts [][2]string) Trust {
	t := Trust{users: map[string]bool{}, groups: map[string]bool{}}
	for _, u := range users {
		t.users[u] = true
	}
	for _, g := range groups {
		t.groups[g] = true
	}
	for _, sa := range serviceAccounts {
		t.users["system:serviceaccount:"+sa[0]+":"+sa[1]] = true
	}
	return t
}

// Trusted reports whether the identity the API server authenticated is trusted.
func (t Trust) Trusted(u authenticationv1.UserInfo) bool {
	if t.users[u.Username] {
		return true
	}
	for _, g := range u.Groups {
		if t.groups[g] {
			return true
		}
	}
	return false
}

// Names of the matchConditions whose expressions the leader keeps on the trust
// flags (TrustConditions); the shipped configuration holds PlaceholderTrusted.
const (
	TrustedWriterCondition   = "trusted-writer"
	UntrustedWriterCondition = "untrusted-writer"
	// PlaceholderTrusted treats everyone as untrusted until the leader writes the
	// real expression: fail-closed (every write goes to the failurePolicy Fail entries).
	PlaceholderTrusted = "false"
)

// Expression is the CEL expression (over the admission request of a webhook's
// matchConditions) that is true exactly when Trusted is: the user name is one of
// the trusted users or one of the groups is trusted. Names are quoted as CEL
// string literals with every character outside printable ASCII, the quote and
// the backslash escaped, so no user or group name can change the expression.
// Without trusted users and groups it is "false".
func (t Trust) Expression() string {
	var parts []string
	if len(t.users) > 0 {
		parts = append(parts, "(has(request.userInfo.username) && request.userInfo.username in "+celStringList(t.users)+")")
	}
	if len(t.groups) > 0 {
		parts = append(parts, "(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in "+celStringList(t.groups)+"))")
	}
	if len(parts) == 0 {
		return PlaceholderTrusted
	}
	return strings.Join(parts, " || ")
}

// TrustConditions maps the condition names to their expressions.
func (t Trust) TrustConditions() map[string]string {
	e := t.Expression()
	return map[string]string{TrustedWriterCondition: e, UntrustedWriterCondition: "!(" + e + ")"}
}

// celStringList is a CEL list literal of the sorted keys of set.
func celStringList(set map[string]bool) string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = celQuote(k)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// celQuote is s as a single-quoted CEL string literal. s must be valid UTF-8
// (Options.Validate refuses other trust flags).
func celQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r >= 0x20 && r < 0x7f && r != '\'' && r != '\\':
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
