package imds_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/imds"
)

// clients returns one client of each cloud pointed at url.
func clients(t *testing.T, url string) []imds.Client {
	t.Helper()
	az, err := imds.NewAzure(imds.AzureOptions{Endpoint: url, Resources: []string{"vm0"}})
	if err != nil {
		t.Fatal(err)
	}
	aws, err := imds.NewAWS(imds.AWSOptions{Endpoint: url})
	if err != nil {
		t.Fatal(err)
	}
	gcp, err := imds.NewGCP(imds.GCPOptions{Endpoint: url})
	if err != nil {
		t.Fatal(err)
	}
	return []imds.Client{az, aws, gcp}
}

func TestBodySizeLimit(t *testing.T) {
	big := bytes.Repeat([]byte(" "), 1<<20+1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", "x")
		_, _ = w.Write(big)
	}))
	t.Cleanup(srv.Close)
	for _, c := range clients(t, srv.URL) {
		_, err := c.Poll(ctxT(t))
		wantParseError(t, err)
		if !strings.Contains(err.Error(), "1 MiB") {
			t.Errorf("%s: %v, want an error about the size", c.Provider(), err)
		}
	}
}

func TestNoRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Errorf("redirect followed to %s", r.URL)
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	for _, c := range clients(t, srv.URL) {
		_, err := c.Poll(ctxT(t))
		if err == nil {
			t.Errorf("%s: no error", c.Provider())
		}
	}
}
