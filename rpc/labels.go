package rpc

import (
	"fmt"
	"slices"
	"strings"
)

// labelSelector is a parsed Marathon label selector: terms joined by
// commas, all of which must match.
type labelSelector []labelTerm

// labelTerm is one condition on one label. As in Marathon, every form but
// existence alone still needs the label to be present: `tier!=db` does not
// match an app without a tier label.
type labelTerm struct {
	key    string
	op     string // "exists", "==", "!=", "in", "notin"
	values []string
}

// parseLabelSelector parses Marathon's label selector syntax: `k` (the
// label exists), `k==v` (or `k=v`), `k!=v`, `k in (a,b)` and `k notin
// (a,b)`, joined by commas; a backslash escapes the next character.
func parseLabelSelector(s string) (labelSelector, error) {
	var sel labelSelector
	for _, part := range splitUnescaped(s, ',', true) {
		t, err := parseLabelTerm(part)
		if err != nil {
			return nil, err
		}
		sel = append(sel, t)
	}
	return sel, nil
}

func parseLabelTerm(s string) (labelTerm, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return labelTerm{}, fmt.Errorf("empty condition (want key, key==value, key!=value, key in (a,b) or key notin (a,b))")
	}
	// The key runs up to the first unescaped operator character or space.
	end := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if s[i] == '=' || s[i] == '!' || s[i] == ' ' || s[i] == '(' {
			end = i
			break
		}
	}
	key := unescape(s[:end])
	rest := strings.TrimSpace(s[end:])
	if key == "" {
		return labelTerm{}, fmt.Errorf("%q: no label key", s)
	}
	switch {
	case rest == "":
		return labelTerm{key: key, op: "exists"}, nil
	case strings.HasPrefix(rest, "=="):
		return labelTerm{key: key, op: "==", values: []string{unescape(strings.TrimSpace(rest[2:]))}}, nil
	case strings.HasPrefix(rest, "!="):
		return labelTerm{key: key, op: "!=", values: []string{unescape(strings.TrimSpace(rest[2:]))}}, nil
	case strings.HasPrefix(rest, "="):
		return labelTerm{key: key, op: "==", values: []string{unescape(strings.TrimSpace(rest[1:]))}}, nil
	}
	op, list, _ := strings.Cut(rest, " ")
	list = strings.TrimSpace(list)
	if (op != "in" && op != "notin") || !strings.HasPrefix(list, "(") || !strings.HasSuffix(list, ")") || strings.HasSuffix(list, `\)`) {
		return labelTerm{}, fmt.Errorf("%q: want key, key==value, key!=value, key in (a,b) or key notin (a,b)", s)
	}
	t := labelTerm{key: key, op: op}
	for _, v := range splitUnescaped(list[1:len(list)-1], ',', false) {
		t.values = append(t.values, unescape(strings.TrimSpace(v)))
	}
	return t, nil
}

// matches reports whether labels satisfy every term.
func (sel labelSelector) matches(labels map[string]string) bool {
	for _, t := range sel {
		v, ok := labels[t.key]
		if !ok {
			return false
		}
		switch t.op {
		case "==", "in":
			if !slices.Contains(t.values, v) {
				return false
			}
		case "!=", "notin":
			if slices.Contains(t.values, v) {
				return false
			}
		}
	}
	return true
}

// splitUnescaped splits s at every sep that is not escaped by a backslash
// (and, if outsideParens, not inside parentheses). Escapes are kept.
func splitUnescaped(s string, sep byte, outsideParens bool) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '(' && outsideParens:
			depth++
		case c == ')' && outsideParens && depth > 0:
			depth--
		case c == sep && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape drops the backslash of every escaped character.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
