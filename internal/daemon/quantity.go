package daemon

import (
	"fmt"
	"math"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
)

// BytesVar registers a size flag written as a Kubernetes quantity (`256Mi`,
// `4Mi`, `1G`, or plain bytes), the one way every daemon takes a size
// (docs/daemon-runtime.md); value is the default in bytes. Its pflag type is
// "quantity", which the flag naming test in docs/ looks for.
func BytesVar(fs *pflag.FlagSet, p *int64, name string, value int64, usage string) {
	*p = value
	fs.Var((*bytesValue)(p), name, usage)
}

type bytesValue int64

func (b *bytesValue) String() string {
	return resource.NewQuantity(int64(*b), resource.BinarySI).String()
}

func (b *bytesValue) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a quantity such as 256Mi", s)
	}
	v := q.Value() // rounded up; exact below or refused
	if q.Sign() < 0 || q.Cmp(*resource.NewQuantity(math.MaxInt64, resource.BinarySI)) > 0 ||
		q.Cmp(*resource.NewQuantity(v, resource.BinarySI)) != 0 {
		return fmt.Errorf("%q is not a whole, non-negative number of bytes", s)
	}
	*b = bytesValue(v)
	return nil
}

func (b *bytesValue) Type() string { return "quantity" }
