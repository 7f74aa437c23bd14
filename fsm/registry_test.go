package fsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func TestEveryCommandTypeIsRegistered(t *testing.T) {
	for n, name := range v1.CommandType_name {
		ct := v1.CommandType(n)
		if ct == v1.CommandType_COMMAND_TYPE_UNSPECIFIED {
			continue
		}
		if NewCommandMessage(ct) == nil {
			t.Errorf("%s has no entry in the command registry", name)
		}
	}
	if len(CommandTypes()) != len(v1.CommandType_name)-1 {
		t.Errorf("registry has %d types, the proto enum %d", len(CommandTypes()), len(v1.CommandType_name)-1)
	}
}

func TestEncodeChecksThePayloadType(t *testing.T) {
	if _, err := Encode(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppCreateCommand{}); err == nil || !strings.Contains(err.Error(), "AppDeleteCommand") {
		t.Fatalf("Encode with the wrong payload = %v, want an error naming the expected message", err)
	}
	if _, err := Encode(99, &v1.AppCreateCommand{}); err == nil {
		t.Fatal("Encode of an unknown type without the ignore flag must fail")
	}
	if _, err := Encode(99|IgnoreUnknownTypeFlag, &v1.AppCreateCommand{}); err != nil {
		t.Fatalf("Encode of an ignorable unknown type: %v", err)
	}
}

// TestCheckProposalWaitsForEveryServer: a command type added in a later
// release is proposed only once every server runs that release.
func TestCheckProposalWaitsForEveryServer(t *testing.T) {
	const newType v1.CommandType = 100
	registerCommand(newType, "0.2.0", func(*txn, logEntry, *v1.MetaRecord) (string, error) { return "", nil })
	t.Cleanup(func() { delete(commands, newType) })
	newCmd, err := Encode(newType, &v1.MetaRecord{})
	if err != nil {
		t.Fatal(err)
	}
	oldCmd, err := Encode(v1.CommandType_COMMAND_TYPE_APP_DELETE, &v1.AppDeleteCommand{})
	if err != nil {
		t.Fatal(err)
	}
	flagged, err := Encode(newType|IgnoreUnknownTypeFlag, &v1.MetaRecord{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cmd      []byte
		versions []string
		ok       bool
	}{
		{"first-release command, old servers", oldCmd, []string{"0.1.0", "0.1.0-dev"}, true},
		{"new command, all upgraded", newCmd, []string{"0.2.0", "0.2.1", "1.0.0"}, true},
		{"new command, dev build of the release", newCmd, []string{"0.2.0-dev", "0.2.0"}, true},
		{"new command, one server behind", newCmd, []string{"0.2.0", "0.1.9", "0.2.0"}, false},
		{"new command, a server's version unknown", newCmd, []string{"0.2.0", ""}, false},
		{"new command, garbage version", newCmd, []string{"0.2.0", "latest"}, false},
		{"new command flagged ignorable, old servers", flagged, []string{"0.1.0"}, true},
		{"unknown type", []byte{101}, []string{"9.9.9"}, false},
		{"empty", nil, nil, false},
	}
	for _, c := range cases {
		err := CheckProposal(c.cmd, c.versions)
		if (err == nil) != c.ok {
			t.Errorf("%s: CheckProposal = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && c.versions != nil && c.cmd != nil && len(c.cmd) > 1 && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v does not wrap ErrUnsupported", c.name, err)
		}
	}
}

// TestSchedulerPlanOfAnotherTermIsRefused: if_leader_term is checked
// against the term recorded in the entry itself.
func TestSchedulerPlanOfAnotherTermIsRefused(t *testing.T) {
	f := New(nil)
	plan := func(index, term, ifTerm uint64) *ApplyResult {
		data, err := Encode(v1.CommandType_COMMAND_TYPE_SCHEDULER_PLAN, &v1.SchedulerPlanCommand{
			IfLeaderTerm:   ifTerm,
			PutDeployments: []*v1.Deployment{{Id: "d", Status: v1.DeploymentStatus_DEPLOYMENT_STATUS_RUNNING}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return f.Apply(&raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: data}).(*ApplyResult)
	}
	if res := plan(1, 3, 2); !errors.Is(res.Err, ErrConflict) {
		t.Fatalf("plan of term 2 committed in term 3: err = %v, want ErrConflict", res.Err)
	}
	if NewTestReader(t, f.State).Deployment("d") != nil {
		t.Fatal("refused plan changed the state")
	}
	if res := plan(2, 3, 3); res.Err != nil {
		t.Fatalf("plan of the current term: %v", res.Err)
	}
	if res := plan(3, 4, 0); res.Err != nil {
		t.Fatalf("plan without a term: %v", res.Err)
	}
}
