package rpc

import (
	"reflect"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
)

func TestViolationsError(t *testing.T) {
	vs := []appmodel.Violation{{Field: "container.volumes[0].persistent.size", Description: "must be greater than 0"}, {Field: "cmd", Description: "must not be set together with args"}}
	err := ViolationsError("app /x", vs)
	if err.Code() != connect.CodeInvalidArgument {
		t.Errorf("code = %v", err.Code())
	}
	if !strings.Contains(err.Message(), "container.volumes[0].persistent.size: must be greater than 0") {
		t.Errorf("message = %q", err.Message())
	}
	if got := ViolationsFromError(err); !reflect.DeepEqual(got, vs) {
		t.Errorf("details = %v", got)
	}
}
