package egressreporter

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestNodeAddresses(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, c := range []struct {
		name      string
		ann       map[string]string
		want      string
		fresh, ok bool
	}{
		{"none", map[string]string{"other": "x"}, "", false, true},
		{"fresh", map[string]string{AddressAnnotation: "203.0.113.7,2001:db8::7", ObservedAtAnnotation: at(-time.Minute)}, "203.0.113.7/32,2001:db8::7/128", true, true},
		{"clock ahead", map[string]string{AddressAnnotation: "203.0.113.7", ObservedAtAnnotation: at(time.Minute)}, "203.0.113.7/32", true, true},
		{"stale", map[string]string{AddressAnnotation: "203.0.113.7", ObservedAtAnnotation: at(-31 * time.Minute)}, "203.0.113.7/32", false, true},
		{"no time", map[string]string{AddressAnnotation: "203.0.113.7"}, "", false, false},
		{"bad address", map[string]string{AddressAnnotation: "203.0.113.7,nope", ObservedAtAnnotation: at(0)}, "", false, false},
		{"cidr not address", map[string]string{AddressAnnotation: "203.0.113.0/24", ObservedAtAnnotation: at(0)}, "", false, false},
		{"empty", map[string]string{AddressAnnotation: "", ObservedAtAnnotation: at(0)}, "", false, false},
	} {
		ps, fresh, err := nodeAddresses(c.ann, now, 30*time.Minute)
		if (err == nil) != c.ok || FormatCIDRs(ps) != c.want || fresh != c.fresh {
			t.Errorf("%s: %v fresh=%v err=%v", c.name, ps, fresh, err)
		}
	}
}

func TestInfrastructureCIDRs(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "shoot"},
		"status": map[string]any{"egressCIDRs": []any{"3.74.173.24/32", "63.177.125.178", "bogus", int64(7)}}}}
	ps, problems := infrastructureCIDRs(u)
	if FormatCIDRs(ps) != "3.74.173.24/32,63.177.125.178/32" || len(problems) != 2 {
		t.Fatalf("got %v, problems %v", ps, problems)
	}
	u.Object["status"] = map[string]any{}
	if ps, problems := infrastructureCIDRs(u); ps != nil || problems != nil {
		t.Fatalf("no egressCIDRs: %v %v", ps, problems)
	}
}
