package egressreporter

import (
	"os"
	"testing"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// Integration tests run against real kube-apiservers: the package's shared one
// (the seed) and, per test, a second one started for the shoot.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
