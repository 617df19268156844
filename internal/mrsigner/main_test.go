package mrsigner

import (
	"os"
	"testing"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// The integration tests run against a real kube-apiserver, shared by the package
// and stopped after it; the unit tests need none.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
