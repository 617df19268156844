package imds

import (
	"net/http"
	"testing"
	"time"
)

// The metadata service is link-local: requests must never go through a proxy
// from HTTP_PROXY (which would also add X-Forwarded-For, refused by Azure).
func TestDefaultHTTPClientHasNoProxy(t *testing.T) {
	c := defaultHTTPClient(time.Second)
	tr, isTransport := c.Transport.(*http.Transport)
	if !isTransport || tr.Proxy != nil {
		t.Fatalf("transport %T with a proxy function", c.Transport)
	}
	if c.CheckRedirect == nil || c.Timeout != time.Second {
		t.Fatalf("client %+v", c)
	}
}
