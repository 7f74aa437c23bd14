package rpc

import (
	"strings"
	"testing"
)

func TestLabelSelector(t *testing.T) {
	web := map[string]string{"tier": "web", "team": "b", "a,b": "x y"}
	db := map[string]string{"tier": "db"}
	none := map[string]string{}
	cases := []struct {
		sel             string
		web, db, noneOK bool
	}{
		{"tier", true, true, false},
		{"team", true, false, false},
		{"team==b", true, false, false},
		{"team=b", true, false, false}, // `=` works like `==`
		{"team = b", true, false, false},
		{"team==a", false, false, false},
		{"tier!=db", true, false, false}, // the label must exist
		{"tier in (db, web)", true, true, false},
		{"tier in (db)", false, true, false},
		{"tier notin (db,x)", true, false, false},
		{"tier==web,team==b", true, false, false},
		{"tier==web, team==c", false, false, false},
		{`a\,b==x y`, true, false, false},
		{`tier in (web\,x,db)`, false, true, false},
	}
	for _, c := range cases {
		sel, err := parseLabelSelector(c.sel)
		if err != nil {
			t.Errorf("%q: %v", c.sel, err)
			continue
		}
		if got := sel.matches(web); got != c.web {
			t.Errorf("%q matches %v = %v, want %v", c.sel, web, got, c.web)
		}
		if got := sel.matches(db); got != c.db {
			t.Errorf("%q matches %v = %v, want %v", c.sel, db, got, c.db)
		}
		if got := sel.matches(none); got != c.noneOK {
			t.Errorf("%q matches no labels = %v", c.sel, got)
		}
	}
	for _, bad := range []string{"", "tier,", "==b", "tier <> b", "tier in db", "tier in (db", "tier like (a)"} {
		_, err := parseLabelSelector(bad)
		if err == nil {
			t.Errorf("%q: accepted, want an error", bad)
			continue
		}
		if bad != "" && !strings.Contains(err.Error(), "key") {
			t.Errorf("%q: error %q does not say what is expected", bad, err)
		}
	}
}
