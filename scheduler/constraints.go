package scheduler

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// constraint is one parsed Marathon constraint ["field", "OPERATOR", "value"].
type constraint struct {
	field, op, value string
	re               *regexp.Regexp
	n                int
}

// parseConstraints reads an app's constraints. Invalid ones are reported so
// that the instance stays unplaced with a clear reason instead of ignoring a
// rule the operator asked for.
func parseConstraints(a *v1.App) ([]constraint, error) {
	var out []constraint
	for i, lv := range a.GetConstraints() {
		vals := lv.GetValues()
		if len(vals) < 2 || len(vals) > 3 {
			return nil, fmt.Errorf("constraints[%d]: want [field, operator, value?], got %d elements", i, len(vals))
		}
		c := constraint{field: valueString(vals[0]), op: strings.ToUpper(valueString(vals[1]))}
		if len(vals) == 3 {
			c.value = valueString(vals[2])
		}
		if c.field == "" {
			return nil, fmt.Errorf("constraints[%d]: empty field", i)
		}
		switch c.op {
		case "UNIQUE", "CLUSTER":
		case "LIKE", "UNLIKE":
			re, err := regexp.Compile("^(?:" + c.value + ")$")
			if err != nil {
				return nil, fmt.Errorf("constraints[%d]: bad regex %q: %w", i, c.value, err)
			}
			c.re = re
		case "GROUP_BY":
			if c.value != "" {
				n, err := strconv.Atoi(c.value)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("constraints[%d]: GROUP_BY value %q is not a count", i, c.value)
				}
				c.n = n
			}
		case "MAX_PER":
			n, err := strconv.Atoi(c.value)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("constraints[%d]: MAX_PER value %q must be a positive count", i, c.value)
			}
			c.n = n
		case "IS":
			if len(vals) != 3 {
				return nil, fmt.Errorf("constraints[%d]: IS needs a value", i)
			}
		default:
			return nil, fmt.Errorf("constraints[%d]: unknown operator %q", i, c.op)
		}
		out = append(out, c)
	}
	return out, nil
}

func valueString(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}

// agentInfo is what constraints need to know about an agent.
type agentInfo struct {
	hostname   string
	attributes map[string]string
}

func agentInfoFromOffer(o *mesos.Offer) agentInfo {
	ai := agentInfo{hostname: o.Hostname, attributes: map[string]string{}}
	for _, a := range o.Attributes {
		ai.attributes[a.Name] = attributeString(a)
	}
	return ai
}

func attributeString(a mesos.Attribute) string {
	switch a.Type {
	case mesos.TEXT:
		if a.Text != nil {
			return a.Text.Value
		}
	case mesos.SCALAR:
		if a.Scalar != nil {
			return strconv.FormatFloat(a.Scalar.Value, 'f', -1, 64)
		}
	case mesos.RANGES:
		if a.Ranges != nil {
			var parts []string
			for _, r := range a.Ranges.Range {
				parts = append(parts, fmt.Sprintf("%d-%d", r.Begin, r.End))
			}
			return "[" + strings.Join(parts, ",") + "]"
		}
	case mesos.SET:
		if a.Set != nil {
			items := append([]string(nil), a.Set.Item...)
			sort.Strings(items)
			return "{" + strings.Join(items, ",") + "}"
		}
	}
	return ""
}

// fieldValue returns the value of a constraint field on an agent.
func (ai agentInfo) fieldValue(field string) (string, bool) {
	if field == "hostname" {
		return ai.hostname, ai.hostname != ""
	}
	v, ok := ai.attributes[field]
	return v, ok
}

// placedValues counts, per field value, the app's instances already placed.
type placedValues struct {
	counts map[string]int
}

// constraintsMet checks every constraint of an app for a candidate agent,
// given the values of the app's already placed instances per field.
func constraintsMet(cs []constraint, cand agentInfo, placed map[string]*placedValues) bool {
	for _, c := range cs {
		val, ok := cand.fieldValue(c.field)
		pv := placed[c.field]
		count := func(v string) int {
			if pv == nil {
				return 0
			}
			return pv.counts[v]
		}
		switch c.op {
		case "UNIQUE":
			if !ok || count(val) > 0 {
				return false
			}
		case "CLUSTER":
			if !ok {
				return false
			}
			if c.value != "" {
				if val != c.value {
					return false
				}
			} else if pv != nil {
				for v, n := range pv.counts {
					if n > 0 && v != val {
						return false
					}
				}
			}
		case "IS":
			if !ok || val != c.value {
				return false
			}
		case "LIKE":
			if !ok || !c.re.MatchString(val) {
				return false
			}
		case "UNLIKE":
			if ok && c.re.MatchString(val) {
				return false
			}
		case "MAX_PER":
			if !ok || count(val) >= c.n {
				return false
			}
		case "GROUP_BY":
			if !ok {
				return false
			}
			mine := count(val)
			if mine == 0 {
				continue
			}
			distinct := 0
			minOther := -1
			if pv != nil {
				for _, n := range pv.counts {
					if n <= 0 {
						continue
					}
					distinct++
					if minOther < 0 || n < minOther {
						minOther = n
					}
				}
			}
			if c.n > 0 && distinct < c.n {
				return false // other groups still empty: wait for them
			}
			if mine > minOther {
				return false
			}
		}
	}
	return true
}
