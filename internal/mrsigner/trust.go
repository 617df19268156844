package mrsigner

import (
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
