package appmodel

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Constraint operators (Marathon's).
const (
	OpUnique  = "UNIQUE"
	OpCluster = "CLUSTER"
	OpGroupBy = "GROUP_BY"
	OpLike    = "LIKE"
	OpUnlike  = "UNLIKE"
	OpMaxPer  = "MAX_PER"
	OpIs      = "IS"
)

var constraintOperators = []string{OpUnique, OpCluster, OpGroupBy, OpLike, OpUnlike, OpMaxPer, OpIs}

// Placement is a constraint checked against Marathon's rules and ready to
// evaluate against agents.
type Placement struct {
	// Field is "hostname" or an agent attribute name.
	Field string
	// Operator is one of the Op constants.
	Operator string
	// Value is the constraint's value ("" when it has none).
	Value string
	// Regexp is the anchored value of LIKE and UNLIKE.
	Regexp *regexp.Regexp
	// Count is GROUP_BY's number of groups (0: as many as there are
	// values) and MAX_PER's limit.
	Count int
}

// CompileConstraint checks a constraint against Marathon's rules (an
// operator it knows, the value that operator needs) and compiles it.
func CompileConstraint(c *v1.Constraint) (Placement, error) {
	pl := Placement{Field: c.GetField(), Operator: c.GetOperator(), Value: c.GetValue()}
	hasValue := c.Value != nil
	if pl.Field == "" {
		return pl, fmt.Errorf("the field name must not be empty")
	}
	switch pl.Operator {
	case OpUnique:
		if hasValue {
			return pl, fmt.Errorf("UNIQUE takes no value")
		}
	case OpCluster:
		// The value is optional: without it, all instances go where the
		// first one went.
	case OpGroupBy:
		if hasValue {
			n, err := strconv.Atoi(pl.Value)
			if err != nil || n < 1 {
				return pl, fmt.Errorf("GROUP_BY value must be a positive integer (got %q)", pl.Value)
			}
			pl.Count = n
		}
	case OpMaxPer:
		n, err := strconv.Atoi(pl.Value)
		if !hasValue || err != nil || n < 1 {
			return pl, fmt.Errorf("MAX_PER needs a positive integer value (got %q)", pl.Value)
		}
		pl.Count = n
	case OpLike, OpUnlike:
		if !hasValue {
			return pl, fmt.Errorf("%s needs a regular expression value", pl.Operator)
		}
		re, err := regexp.Compile("^(?:" + pl.Value + ")$")
		if err != nil {
			return pl, fmt.Errorf("%s value %q is not a valid regular expression: %v", pl.Operator, pl.Value, err)
		}
		pl.Regexp = re
	case OpIs:
		if pl.Value == "" {
			return pl, fmt.Errorf("IS needs a value")
		}
	default:
		return pl, fmt.Errorf("unknown operator %q (allowed: %s)", pl.Operator, strings.Join(constraintOperators, ", "))
	}
	return pl, nil
}

// Placements compiles an app's constraints; the error names the first
// invalid one by its path.
func Placements(app *v1.App) ([]Placement, error) {
	out := make([]Placement, 0, len(app.GetConstraints()))
	for i, c := range app.GetConstraints() {
		pl, err := CompileConstraint(c)
		if err != nil {
			return nil, fmt.Errorf("constraints[%d]: %w", i, err)
		}
		out = append(out, pl)
	}
	return out, nil
}
