package scheduler

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
)

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

// fieldValue returns the value of a constraint field on an agent:
// "hostname" (or Marathon's "@hostname") is the agent's hostname, anything
// else an attribute.
func (ai agentInfo) fieldValue(field string) (string, bool) {
	if field == "hostname" || field == "@hostname" {
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
func constraintsMet(cs []appmodel.Placement, cand agentInfo, placed map[string]*placedValues) bool {
	for _, c := range cs {
		val, ok := cand.fieldValue(c.Field)
		pv := placed[c.Field]
		count := func(v string) int {
			if pv == nil {
				return 0
			}
			return pv.counts[v]
		}
		switch c.Operator {
		case "UNIQUE":
			if !ok || count(val) > 0 {
				return false
			}
		case "CLUSTER":
			if !ok {
				return false
			}
			if c.Value != "" {
				if val != c.Value {
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
			if !ok || val != c.Value {
				return false
			}
		case "LIKE":
			if !ok || !c.Regexp.MatchString(val) {
				return false
			}
		case "UNLIKE":
			if ok && c.Regexp.MatchString(val) {
				return false
			}
		case "MAX_PER":
			if !ok || count(val) >= c.Count {
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
			if c.Count > 0 && distinct < c.Count {
				return false // other groups still empty: wait for them
			}
			if mine > minOther {
				return false
			}
		}
	}
	return true
}
