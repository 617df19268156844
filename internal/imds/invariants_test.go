package imds

import "testing"

var knownTypes = map[EventType]bool{
	TypeReboot: true, TypeRedeploy: true, TypeFreeze: true, TypeMaintenance: true, TypeLiveMigrate: true,
	TypePreempt: true, TypeTerminate: true, TypeRebalance: true,
}

// checkEvents asserts what every parser promises about the events it returns.
func checkEvents(t *testing.T, provider string, events []Event, unknown []UnknownEvent) {
	t.Helper()
	for _, e := range events {
		if e.ID == "" || e.Provider != provider || !knownTypes[e.Type] || e.RawType == "" {
			t.Fatalf("bad event %+v", e)
		}
		switch e.Status {
		case StatusScheduled:
		case StatusStarted:
			if !e.NotBefore.IsZero() {
				t.Fatalf("started event with NotBefore %+v", e)
			}
		default:
			t.Fatalf("bad status %+v", e)
		}
		if e.Duration < 0 && e.Duration != DurationUnknown {
			t.Fatalf("negative duration %+v", e)
		}
		if e.Approvable != (provider == Azure) {
			t.Fatalf("approvable %+v", e)
		}
	}
	for _, u := range unknown {
		if u.Provider != provider {
			t.Fatalf("bad unknown %+v", u)
		}
	}
}
