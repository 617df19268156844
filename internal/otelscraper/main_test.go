package otelscraper

import (
	"os"
	"testing"

	"github.com/trellis-garden/trellis/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
