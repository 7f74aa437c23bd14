package scheduler

import (
	"context"
	"slices"

	"github.com/mesos/mesos-go/api/v1/lib/master"
	"google.golang.org/protobuf/encoding/protowire"
)

// The agent poll needs of GET_AGENTS each agent's identity, activity,
// drain and machine, not its resources: total, allocated and offered
// resources list every berth on the agent (a reservation and a volume,
// with their labels, per instance), and with 100,000 berths decoding them
// took several seconds of the leader's CPU per poll (6% of the placing
// leader's CPU at 100,000; BENCHMARKS.md, issue 14). The response is
// decoded without them: the fields are dropped from the encoded bytes
// before mesos-go decodes the rest.

// Field numbers of mesos.master.Response (master.proto).
const (
	responseGetAgents       = 10 // Response.get_agents
	getAgentsAgents         = 1  // Response.GetAgents.agents
	agentTotalResources     = 7  // Response.GetAgents.Agent.total_resources
	agentAllocatedResources = 8  // .allocated_resources
	agentOfferedResources   = 9  // .offered_resources
	agentResourceProviders  = 11 // .resource_providers
)

// getAgentsLean calls GET_AGENTS and decodes the answer without the
// agents' resources.
func (c *OperatorClient) getAgentsLean(ctx context.Context) (*master.Response, error) {
	return c.call(ctx, &master.Call{Type: master.Call_GET_AGENTS}, withoutAgentResources)
}

// withoutAgentResources returns an encoded master.Response with the
// resource fields of its GET_AGENTS agents left out; every other field is
// kept as it was.
func withoutAgentResources(b []byte) ([]byte, error) {
	return filterField(b, responseGetAgents, func(getAgents []byte) ([]byte, error) {
		return filterField(getAgents, getAgentsAgents, func(agent []byte) ([]byte, error) {
			return dropFields(agent, agentTotalResources, agentAllocatedResources, agentOfferedResources, agentResourceProviders)
		})
	})
}

// filterField copies the encoded message b, passing the contents of each
// length-delimited field num through f.
func filterField(b []byte, num protowire.Number, f func([]byte) ([]byte, error)) ([]byte, error) {
	return rewrite(b, len(b), func(out []byte, n protowire.Number, typ protowire.Type, field []byte, tagLen int) ([]byte, error) {
		if n != num || typ != protowire.BytesType {
			return append(out, field...), nil
		}
		v, _ := protowire.ConsumeBytes(field[tagLen:])
		nv, err := f(v)
		if err != nil {
			return nil, err
		}
		return protowire.AppendBytes(protowire.AppendTag(out, n, typ), nv), nil
	})
}

// dropFields copies the encoded message b without the fields numbered
// drop.
func dropFields(b []byte, drop ...protowire.Number) ([]byte, error) {
	return rewrite(b, 256, func(out []byte, n protowire.Number, _ protowire.Type, field []byte, _ int) ([]byte, error) {
		if slices.Contains(drop, n) {
			return out, nil
		}
		return append(out, field...), nil
	})
}

// rewrite builds a message from the fields of the encoded message b: each
// field (its tag and value, the tag tagLen bytes long) is handed to f with
// what was built so far, and f returns it with what it makes of the field
// appended.
func rewrite(b []byte, size int, f func(out []byte, n protowire.Number, typ protowire.Type, field []byte, tagLen int) ([]byte, error)) ([]byte, error) {
	out := make([]byte, 0, size)
	for len(b) > 0 {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 {
			return nil, protowire.ParseError(tagLen)
		}
		valLen := protowire.ConsumeFieldValue(n, typ, b[tagLen:])
		if valLen < 0 {
			return nil, protowire.ParseError(valLen)
		}
		var err error
		if out, err = f(out, n, typ, b[:tagLen+valLen], tagLen); err != nil {
			return nil, err
		}
		b = b[tagLen+valLen:]
	}
	return out, nil
}
