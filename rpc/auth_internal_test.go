package rpc

import (
	"testing"

	"connectrpc.com/grpchealth"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/berth-dev/berth/acl"
)

// TestServedMethodsInACLTable walks every method of every service that
// Handler mounts (Berth's, health checking, reflection) and fails if one
// has no row in acl.Table: the interceptor would refuse it.
func TestServedMethodsInACLTable(t *testing.T) {
	names := append([]string{grpchealth.HealthV1ServiceName, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}, serviceNames...)
	methods := 0
	for _, name := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		svc := d.(protoreflect.ServiceDescriptor)
		for i := 0; i < svc.Methods().Len(); i++ {
			methods++
			procedure := "/" + name + "/" + string(svc.Methods().Get(i).Name())
			if _, ok := acl.Table[procedure]; !ok {
				t.Errorf("%s is served but has no row in acl.Table", procedure)
			}
		}
	}
	if methods < 30 {
		t.Fatalf("walked only %d methods", methods)
	}
}
