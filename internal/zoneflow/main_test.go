package zoneflow

import (
	"os"
	"testing"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// The enrichment, binary and deploy tests run against a real kube-apiserver,
// shared by the package and stopped after it; the unit and network namespace
// tests need none.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
