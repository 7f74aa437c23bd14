package mesoslocal

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
)

// handleOperator serves the v1 operator API, POST /api/v1.
func (c *Cluster) handleOperator(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1" && r.URL.Path != "/api/v1/" {
		http.NotFound(w, r)
		return
	}
	var call master.Call
	rk, ok := readCall(w, r, &call)
	if !ok {
		return
	}
	respond := func(resp *master.Response) { respondWith(w, rk, resp) }
	switch call.Type {
	case master.Call_GET_HEALTH:
		respond(&master.Response{Type: master.Response_GET_HEALTH, GetHealth: &master.Response_GetHealth{Healthy: true}})
	case master.Call_GET_VERSION:
		respond(&master.Response{Type: master.Response_GET_VERSION, GetVersion: &master.Response_GetVersion{VersionInfo: versionInfo()}})
	case master.Call_GET_STATE:
		c.mu.Lock()
		st := c.getState()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_STATE, GetState: st})
	case master.Call_GET_AGENTS:
		c.mu.Lock()
		ag := c.getAgents()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_AGENTS, GetAgents: ag})
	case master.Call_GET_FRAMEWORKS:
		c.mu.Lock()
		fs := c.getFrameworks()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_FRAMEWORKS, GetFrameworks: fs})
	case master.Call_GET_TASKS:
		c.mu.Lock()
		ts := c.getTasks()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_TASKS, GetTasks: ts})
	case master.Call_GET_EXECUTORS:
		c.mu.Lock()
		ex := c.getExecutors()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_EXECUTORS, GetExecutors: ex})
	case master.Call_GET_MASTER:
		respond(&master.Response{Type: master.Response_GET_MASTER, GetMaster: &master.Response_GetMaster{
			MasterInfo: c.masterInfo(), StartTime: proto.Float64(float64(c.startTime.UnixNano()) / 1e9)}})
	case master.Call_SUBSCRIBE:
		c.operatorSubscribe(w, r, rk)
	case master.Call_TEARDOWN:
		if call.Teardown == nil {
			writeError(w, http.StatusBadRequest, "Expecting 'teardown' to be present")
			return
		}
		c.mu.Lock()
		fw := c.frameworks[call.Teardown.FrameworkID.Value]
		if fw == nil {
			c.mu.Unlock()
			writeError(w, http.StatusBadRequest, "No framework found with specified ID")
			return
		}
		c.recordOp("TEARDOWN", fw, "", nil, nil, nil)
		c.removeFramework(fw, "operator TEARDOWN")
		c.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	case master.Call_MARK_AGENT_GONE, master.Call_DRAIN_AGENT, master.Call_DEACTIVATE_AGENT, master.Call_REACTIVATE_AGENT,
		master.Call_UPDATE_MAINTENANCE_SCHEDULE, master.Call_START_MAINTENANCE, master.Call_STOP_MAINTENANCE:
		c.mu.Lock()
		code, msg, runners := c.agentCall(&call)
		c.mu.Unlock()
		for _, rn := range runners {
			rn.wait()
		}
		if code != http.StatusOK {
			writeError(w, code, msg)
			return
		}
		w.WriteHeader(http.StatusOK)
	case master.Call_GET_MAINTENANCE_SCHEDULE:
		c.mu.Lock()
		sch := c.maintSchedule()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_MAINTENANCE_SCHEDULE, GetMaintenanceSchedule: &master.Response_GetMaintenanceSchedule{Schedule: sch}})
	case master.Call_GET_MAINTENANCE_STATUS:
		c.mu.Lock()
		st := c.maintStatus()
		c.mu.Unlock()
		respond(&master.Response{Type: master.Response_GET_MAINTENANCE_STATUS, GetMaintenanceStatus: &master.Response_GetMaintenanceStatus{Status: st}})
	case master.Call_UNKNOWN:
		writeError(w, http.StatusBadRequest, "Expecting 'type' to be present")
	default:
		writeError(w, http.StatusNotImplemented, "mesos-local does not implement operator call "+call.Type.String())
	}
}

// readCall reads a POSTed operator call (JSON or protobuf) into call and
// negotiates the response encoding; on failure it has answered already.
func readCall(w http.ResponseWriter, r *http.Request, call proto.Message) (codec, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "Expecting a 'POST' request, received '"+r.Method+"'")
		return "", false
	}
	k, code, msg := requestCodec(r)
	if code != 0 {
		writeError(w, code, msg)
		return "", false
	}
	rk, ok := responseCodec(r)
	if !ok {
		writeError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow application/json or application/x-protobuf")
		return "", false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Failed to read request body: "+err.Error())
		return "", false
	}
	if err := k.unmarshal(body, call); err != nil {
		writeError(w, http.StatusBadRequest, "Failed to parse body into Call protobuf: "+err.Error())
		return "", false
	}
	return rk, true
}

// respondWith writes a 200 response encoded as rk.
func respondWith(w http.ResponseWriter, rk codec, resp proto.Message) {
	b, err := rk.marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", string(rk))
	// Announced, so that a client can size its buffer (or refuse).
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func versionInfo() mesos.VersionInfo {
	return mesos.VersionInfo{Version: mesosVersion, BuildUser: proto.String("mesos-local")}
}

func (c *Cluster) getState() *master.Response_GetState {
	return &master.Response_GetState{
		GetTasks:      c.getTasks(),
		GetExecutors:  c.getExecutors(),
		GetFrameworks: c.getFrameworks(),
		GetAgents:     c.getAgents(),
	}
}

// agentPort is the port every agent answers on: mesos-local serves the
// agents' endpoints (such as /files) on the master's listener.
func (c *Cluster) agentPort() int32 {
	_, p, err := net.SplitHostPort(c.Addr())
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(p, 10, 32)
	return int32(n)
}

// agentURL is the agent's address as a Mesos master puts it in offers
// (Offer.url): scheme, hostname, ip when the listener has a specific one,
// port, and the agent's libprocess path.
func (c *Cluster) agentURL(a *agent) *mesos.URL {
	u := &mesos.URL{Scheme: "http", Address: mesos.Address{Hostname: proto.String(a.hostname), Port: c.agentPortOf(a)}, Path: proto.String("/slave(1)")}
	if ip := net.ParseIP(c.agentHost(a)); ip != nil && !ip.IsUnspecified() {
		u.Address.IP = proto.String(ip.String())
	}
	return u
}

// agentInfo describes an agent with its total resources as rendered.
func (c *Cluster) agentInfo(a *agent, total []mesos.Resource) mesos.AgentInfo {
	port := c.agentPortOf(a)
	return mesos.AgentInfo{Hostname: a.hostname, Port: &port, ID: &mesos.AgentID{Value: a.id}, Resources: total,
		Attributes: a.attrs}
}

func (c *Cluster) renderAgent(a *agent) master.Response_GetAgents_Agent {
	// The total is rendered once for both fields (responses are encoded,
	// never changed): with thousands of reservations per agent it is most
	// of a GET_AGENTS, built under the master lock.
	total := render(a.res.totalSet(), formatEndpoint, "")
	return master.Response_GetAgents_Agent{
		AgentInfo:          c.agentInfo(a, total),
		Active:             a.active,
		Version:            mesosVersion,
		PID:                proto.String("slave(1)@" + net.JoinHostPort(*c.machineOf(a).IP, strconv.Itoa(int(c.agentPortOf(a))))),
		RegisteredTime:     timeInfo(a.regTime),
		TotalResources:     total,
		AllocatedResources: render(a.allocated(), formatEndpoint, ""),
		OfferedResources:   render(a.offered(), formatEndpoint, ""),
		Deactivated:        proto.Bool(a.deactivated),
		DrainInfo:          cloneDrainInfo(a.drain),
		Capabilities:       []mesos.AgentInfo_Capability{{Type: mesos.AgentInfo_Capability_AGENT_DRAINING}},
	}
}

// cloneDrainInfo copies a drain info: responses are encoded after the
// master lock is released.
func cloneDrainInfo(d *mesos.DrainInfo) *mesos.DrainInfo {
	if d == nil {
		return nil
	}
	return proto.Clone(d).(*mesos.DrainInfo)
}

func (c *Cluster) getAgents() *master.Response_GetAgents {
	out := &master.Response_GetAgents{}
	for _, a := range c.agentList {
		if a.gone {
			continue
		}
		out.Agents = append(out.Agents, c.renderAgent(a))
	}
	return out
}

func (c *Cluster) renderFramework(fw *framework) master.Response_GetFrameworks_Framework {
	f := master.Response_GetFrameworks_Framework{
		FrameworkInfo:    fw.info,
		Active:           fw.connected,
		Connected:        fw.connected,
		Recovered:        fw.recovered,
		RegisteredTime:   timeInfo(fw.registered),
		ReregisteredTime: timeInfo(fw.reregistered),
		UnregisteredTime: timeInfo(fw.unregistered),
	}
	alloc, offered := newRindex(nil), newRindex(nil)
	for _, t := range fw.tasks {
		if t.alive {
			alloc.add(t.res...)
		}
	}
	oids := make([]string, 0, len(fw.offers))
	for id := range fw.offers {
		oids = append(oids, id)
	}
	sort.Strings(oids)
	for _, id := range oids {
		o := fw.offers[id]
		f.Offers = append(f.Offers, c.renderOffer(o))
		offered.add(o.res...)
	}
	f.AllocatedResources = render(alloc.slice(), formatEndpoint, "")
	f.OfferedResources = render(offered.slice(), formatEndpoint, "")
	return f
}

func (c *Cluster) sortedFrameworks() []*framework {
	fws := make([]*framework, 0, len(c.frameworks))
	for _, fw := range c.frameworks {
		fws = append(fws, fw)
	}
	sort.Slice(fws, func(i, j int) bool { return fws[i].id < fws[j].id })
	return fws
}

func (c *Cluster) getFrameworks() *master.Response_GetFrameworks {
	out := &master.Response_GetFrameworks{}
	for _, fw := range c.sortedFrameworks() {
		out.Frameworks = append(out.Frameworks, c.renderFramework(fw))
	}
	for _, fw := range c.completedFw {
		out.CompletedFrameworks = append(out.CompletedFrameworks, c.renderFramework(fw))
	}
	return out
}

func sortTasks(ts []mesos.Task) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].TaskID.Value < ts[j].TaskID.Value })
}

func (c *Cluster) getTasks() *master.Response_GetTasks {
	out := &master.Response_GetTasks{}
	for _, fw := range c.sortedFrameworks() {
		for _, t := range fw.tasks {
			if t.state == mesos.TASK_STAGING {
				out.PendingTasks = append(out.PendingTasks, t.toTask())
			}
			if isTerminal(t.state) {
				out.CompletedTasks = append(out.CompletedTasks, t.toTask())
			} else {
				out.Tasks = append(out.Tasks, t.toTask())
			}
		}
		for _, t := range fw.lost {
			out.UnreachableTasks = append(out.UnreachableTasks, t.toTask())
		}
		for _, t := range fw.completed {
			out.CompletedTasks = append(out.CompletedTasks, t.toTask())
		}
	}
	for _, fw := range c.completedFw {
		for _, t := range fw.completed {
			out.CompletedTasks = append(out.CompletedTasks, t.toTask())
		}
	}
	sortTasks(out.Tasks)
	sortTasks(out.PendingTasks)
	sortTasks(out.UnreachableTasks)
	return out
}

func (c *Cluster) getExecutors() *master.Response_GetExecutors {
	out := &master.Response_GetExecutors{}
	for _, a := range c.agentList {
		for _, g := range a.groups {
			out.Executors = append(out.Executors, master.Response_GetExecutors_Executor{ExecutorInfo: g.info, AgentID: mesos.AgentID{Value: a.id}})
		}
	}
	return out
}

// operatorSubscribe streams master events to an operator.
func (c *Cluster) operatorSubscribe(w http.ResponseWriter, r *http.Request, rk codec) {
	s := newStream(rk, newUUIDString())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "Master is shutting down")
		return
	}
	hb := c.cfg.HeartbeatInterval.Seconds()
	s.send(&master.Event{Type: master.Event_SUBSCRIBED, Subscribed: &master.Event_Subscribed{GetState: c.getState(), HeartbeatIntervalSeconds: &hb}})
	s.send(&master.Event{Type: master.Event_HEARTBEAT})
	c.operators[s] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.operators, s)
		c.mu.Unlock()
	}()
	w.Header().Set("Content-Type", string(rk))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	defer cancel()
	s.serve(ctx, w, rc, &master.Event{Type: master.Event_HEARTBEAT}, c.cfg.HeartbeatInterval)
}

// operatorEvent fans an event out to operator subscribers (c.mu held).
func (c *Cluster) operatorEvent(build func() *master.Event) {
	if len(c.operators) == 0 {
		return
	}
	ev := build()
	if ev == nil {
		return
	}
	for s := range c.operators {
		s.send(ev)
	}
}

func frameworkEvent(c *Cluster, fw *framework, added bool) *master.Event {
	f := c.renderFramework(fw)
	if added {
		return &master.Event{Type: master.Event_FRAMEWORK_ADDED, FrameworkAdded: &master.Event_FrameworkAdded{Framework: f}}
	}
	return &master.Event{Type: master.Event_FRAMEWORK_UPDATED, FrameworkUpdated: &master.Event_FrameworkUpdated{Framework: f}}
}

func frameworkRemovedEvent(fw *framework) *master.Event {
	return &master.Event{Type: master.Event_FRAMEWORK_REMOVED, FrameworkRemoved: &master.Event_FrameworkRemoved{FrameworkInfo: fw.info}}
}

func taskAddedEvent(t *task) *master.Event {
	return &master.Event{Type: master.Event_TASK_ADDED, TaskAdded: &master.Event_TaskAdded{Task: t.toTask()}}
}

func taskUpdatedEvent(fwID string, st mesos.TaskStatus, state mesos.TaskState) *master.Event {
	return &master.Event{Type: master.Event_TASK_UPDATED, TaskUpdated: &master.Event_TaskUpdated{
		FrameworkID: mesos.FrameworkID{Value: fwID}, Status: st, State: state.Enum()}}
}

func agentAddedEvent(c *Cluster, a *agent) *master.Event {
	return &master.Event{Type: master.Event_AGENT_ADDED, AgentAdded: &master.Event_AgentAdded{Agent: c.renderAgent(a)}}
}

func agentRemovedEvent(a *agent) *master.Event {
	return &master.Event{Type: master.Event_AGENT_REMOVED, AgentRemoved: &master.Event_AgentRemoved{AgentID: mesos.AgentID{Value: a.id}}}
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

func ipv4ToUint32(host string) uint32 {
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return 0
	}
	// MasterInfo.ip is in network byte order, read as a little-endian integer.
	return binary.LittleEndian.Uint32(ip)
}
