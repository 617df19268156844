package wggateway

import (
	"os"
	"testing"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// The Kubernetes source's tests run against a real kube-apiserver, shared by the
// package and stopped after it.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
