package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// MesosStatus answers from the Mesos master's operator API (POST /api/v1,
// JSON), which real masters and mesos-local serve alike: GET_FRAMEWORKS
// says whether the master holds a subscription of Berth's framework,
// GET_AGENTS lists the agents. Any server can ask; nothing is forwarded.

// mesosOperatorTimeout bounds one call to the master's operator API.
const mesosOperatorTimeout = 10 * time.Second

// mesosOperatorMax bounds an operator API response (a large cluster's
// agents list).
const mesosOperatorMax = 64 << 20

// MesosMaster is how a server reaches the Mesos master's operator API.
type MesosMaster struct {
	// Master is the master's URL (http:// or https://).
	Master string
	// Principal and Secret, when Secret is set, authenticate with HTTP
	// basic authentication, as the scheduler does.
	Principal, Secret string
	// TLS verifies an https:// master (nil: the system's CAs).
	TLS *tls.Config
}

// client returns the HTTP client for the master's operator API.
func (m *MesosMaster) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.TLS != nil {
		tr.TLSClientConfig = m.TLS.Clone()
	}
	return &http.Client{Transport: tr, Timeout: mesosOperatorTimeout}
}

// mesosResource is the part of a Mesos Resource (JSON) that is summed.
type mesosResource struct {
	Name   string `json:"name"`
	Scalar *struct {
		Value float64 `json:"value"`
	} `json:"scalar"`
	Ranges *struct {
		Range []struct {
			Begin uint64 `json:"begin"`
			End   uint64 `json:"end"`
		} `json:"range"`
	} `json:"ranges"`
	// Reservations is the reservation stack (the refinement format);
	// Role and Reservation the pre-refinement format.
	Reservations []json.RawMessage `json:"reservations"`
	Role         string            `json:"role"`
	Reservation  json.RawMessage   `json:"reservation"`
}

func (r mesosResource) reserved() bool {
	return len(r.Reservations) > 0 || (r.Role != "" && r.Role != "*") || (len(r.Reservation) > 0 && string(r.Reservation) != "null")
}

// sumResources sums resources by kind; keep selects which.
func sumResources(rs []mesosResource, keep func(mesosResource) bool) *v1.MesosResources {
	out := &v1.MesosResources{}
	for _, r := range rs {
		if keep != nil && !keep(r) {
			continue
		}
		v := 0.0
		if r.Scalar != nil {
			v = r.Scalar.Value
		}
		switch r.Name {
		case "cpus":
			out.Cpus += v
		case "mem":
			out.Mem += v
		case "disk":
			out.Disk += v
		case "gpus":
			out.Gpus += v
		case "ports":
			if r.Ranges != nil {
				for _, rg := range r.Ranges.Range {
					if rg.End >= rg.Begin {
						out.Ports += rg.End - rg.Begin + 1
					}
				}
			}
		}
	}
	return out
}

// minus is a - b by kind, never below zero.
func minus(a, b *v1.MesosResources) *v1.MesosResources {
	sub := func(x, y float64) float64 { return max(0, x-y) }
	ports := uint64(0)
	if a.Ports > b.Ports {
		ports = a.Ports - b.Ports
	}
	return &v1.MesosResources{Cpus: sub(a.Cpus, b.Cpus), Mem: sub(a.Mem, b.Mem), Disk: sub(a.Disk, b.Disk), Gpus: sub(a.Gpus, b.Gpus), Ports: ports}
}

// call POSTs one operator API call and decodes the JSON answer.
func (m *MesosMaster) call(ctx context.Context, hc *http.Client, typ string, out any) error {
	url := strings.TrimSuffix(m.Master, "/") + "/api/v1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(`{"type":"`+typ+`"}`)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if m.Secret != "" {
		req.SetBasicAuth(m.Principal, m.Secret)
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, mesosOperatorMax))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", typ, res.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: decode the answer: %w", typ, err)
	}
	return nil
}

// MesosStatus asks the Mesos master about Berth's framework and the agents.
func (c *clusterService) MesosStatus(ctx context.Context, _ *connect.Request[v1.MesosStatusRequest]) (*connect.Response[v1.MesosStatusResponse], error) {
	m := c.cfg.Mesos
	if m == nil || m.Master == "" {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("this server knows no Mesos master"))
	}
	fid, err := c.store().Snapshot().FrameworkID()
	if err != nil {
		return nil, stateError(err)
	}
	res := &v1.MesosStatusResponse{Master: m.Master, FrameworkId: fid}
	hc := m.client()
	unavailable := func(err error) error {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("ask the Mesos master at %s: %w", m.Master, err))
	}

	var fw struct {
		GetFrameworks struct {
			Frameworks []struct {
				FrameworkInfo struct {
					ID struct {
						Value string `json:"value"`
					} `json:"id"`
				} `json:"framework_info"`
				Active    bool `json:"active"`
				Connected bool `json:"connected"`
			} `json:"frameworks"`
		} `json:"get_frameworks"`
	}
	if err := m.call(ctx, hc, "GET_FRAMEWORKS", &fw); err != nil {
		return nil, unavailable(err)
	}
	for _, f := range fw.GetFrameworks.Frameworks {
		if fid != "" && f.FrameworkInfo.ID.Value == fid {
			res.FrameworkConnected, res.FrameworkActive = f.Connected, f.Active
		}
	}

	var ag struct {
		GetAgents struct {
			Agents []struct {
				AgentInfo struct {
					Hostname string `json:"hostname"`
					ID       struct {
						Value string `json:"value"`
					} `json:"id"`
				} `json:"agent_info"`
				Active    bool            `json:"active"`
				Total     []mesosResource `json:"total_resources"`
				Allocated []mesosResource `json:"allocated_resources"`
			} `json:"agents"`
		} `json:"get_agents"`
	}
	if err := m.call(ctx, hc, "GET_AGENTS", &ag); err != nil {
		return nil, unavailable(err)
	}
	for _, a := range ag.GetAgents.Agents {
		total := sumResources(a.Total, nil)
		allocated := sumResources(a.Allocated, nil)
		res.Agents = append(res.Agents, &v1.MesosAgent{
			Id:        a.AgentInfo.ID.Value,
			Hostname:  a.AgentInfo.Hostname,
			Active:    a.Active,
			Total:     total,
			Allocated: allocated,
			Free:      minus(total, allocated),
			Reserved:  sumResources(a.Total, mesosResource.reserved),
		})
	}
	return connect.NewResponse(res), nil
}
