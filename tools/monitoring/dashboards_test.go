package monitoring

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func readDashboard(t *testing.T, daemon string) *dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(component, "dashboards", daemon+".json"))
	if err != nil {
		t.Fatalf("%s: no dashboard: %v", daemon, err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s.json: %v", daemon, err)
	}
	return &d
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// TestDashboards: every daemon has a dashboard; every panel query and template
// variable query parses and names only metrics the daemon registers, with labels
// they carry (see checker); panels have unique ids and use the data source variable.
func TestDashboards(t *testing.T) {
	uids := map[string]bool{}
	for _, d := range daemons(t) {
		t.Run(d, func(t *testing.T) {
			dash := readDashboard(t, d)
			c := &checker{fams: registered(t, d)}
			if dash.Title != "trellis / "+d || dash.UID != "trellis-"+d {
				t.Errorf("title %q uid %q, want %q and %q", dash.Title, dash.UID, "trellis / "+d, "trellis-"+d)
			}
			if uids[dash.UID] {
				t.Errorf("uid %s twice", dash.UID)
			}
			uids[dash.UID] = true
			ids := map[int]bool{}
			exprs := 0
			var walk func(ps []panel)
			walk = func(ps []panel) {
				for _, p := range ps {
					if ids[p.ID] {
						t.Errorf("panel id %d twice", p.ID)
					}
					ids[p.ID] = true
					walk(p.Panels)
					if p.Type == "row" || p.Type == "text" {
						continue
					}
					if len(p.Targets) == 0 {
						t.Errorf("panel %q has no query", p.Title)
					}
					if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
						t.Errorf("panel %q: data source is not ${datasource}", p.Title)
					}
					for _, tg := range p.Targets {
						exprs++
						if strings.TrimSpace(tg.Expr) == "" {
							t.Errorf("panel %q target %s: empty query", p.Title, tg.RefID)
						}
						for _, problem := range c.check(expand(tg.Expr)) {
							t.Errorf("panel %q target %s: %s", p.Title, tg.RefID, problem)
						}
					}
				}
			}
			walk(dash.Panels)
			if exprs < 5 {
				t.Errorf("only %d queries", exprs)
			}
			for _, v := range dash.Templating.List {
				if v.Type != "query" {
					continue
				}
				var q string
				var obj struct {
					Query string `json:"query"`
				}
				if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
					q = obj.Query
				} else if err := json.Unmarshal(v.Query, &q); err != nil {
					t.Errorf("variable %s: query %s", v.Name, v.Query)
					continue
				}
				if m := labelValues.FindStringSubmatch(q); m != nil {
					// label_values(selector, label): the label must be on the selected series.
					q = "sum by (" + m[2] + ") (" + m[1] + ")"
				}
				for _, problem := range c.check(expand(q)) {
					t.Errorf("variable %s: %s", v.Name, problem)
				}
			}
		})
	}
}
