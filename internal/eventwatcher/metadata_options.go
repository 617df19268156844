package eventwatcher

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/imds"
)

// MetadataOptions are the provider-specific flags of the metadata clients.
type MetadataOptions struct {
	// AWSTokenTTL is the IMDSv2 session token lifetime.
	AWSTokenTTL time.Duration
}

func (m *MetadataOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&m.AWSTokenTTL, "metadata.aws.token-ttl", imds.DefaultAWSTokenTTL,
		"AWS: lifetime of the IMDSv2 session token, 1s to 6h in whole seconds. A token is renewed a tenth of its lifetime (at most 1 min) before it expires, and at once after a 401.")
}

func (m *MetadataOptions) Complete() error { return nil }

func (m *MetadataOptions) Validate() error {
	if m.AWSTokenTTL < time.Second || m.AWSTokenTTL > imds.DefaultAWSTokenTTL || m.AWSTokenTTL%time.Second != 0 {
		return fmt.Errorf("--metadata.aws.token-ttl: must be 1s to 6h in whole seconds, got %s", m.AWSTokenTTL)
	}
	return nil
}
