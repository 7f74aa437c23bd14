package mesoslocal

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gogo/protobuf/proto"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

const maxBodyBytes = 64 << 20

// handleScheduler serves POST /api/v1/scheduler.
func (c *Cluster) handleScheduler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "Expecting a 'POST' request, received '"+r.Method+"'")
		return
	}
	k, code, msg := requestCodec(r)
	if code != 0 {
		writeError(w, code, msg)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Failed to read request body: "+err.Error())
		return
	}
	if len(body) > maxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "Request body exceeds 64 MiB")
		return
	}
	var call scheduler.Call
	if err := k.unmarshal(body, &call); err != nil {
		writeError(w, http.StatusBadRequest, "Failed to parse body into Call protobuf: "+err.Error())
		return
	}
	if call.Type == scheduler.Call_UNKNOWN {
		writeError(w, http.StatusNotImplemented, "Received 'UNKNOWN' call")
		return
	}
	if err := validateCall(&call); err != nil {
		writeError(w, http.StatusBadRequest, "Failed to validate scheduler::Call: "+err.Error())
		return
	}
	if call.Type == scheduler.Call_SUBSCRIBE {
		c.subscribe(w, r, &call)
		return
	}
	status, msg := c.handleCall(r, &call)
	if status == http.StatusOK {
		// UPDATE_FRAMEWORK is synchronous: 200 with an empty body of the
		// request's type, so mesos-go's response checks pass.
		w.Header().Set("Content-Type", string(k))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	if status != http.StatusAccepted {
		writeError(w, status, msg)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// validateCall mirrors scheduler::call::validate.
// readBody reads a request body of at most maxBodyBytes+1 bytes into one
// buffer sized by Content-Length when it is given (io.ReadAll grows its
// buffer step by step: a large ACCEPT was copied a dozen times).
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= maxBodyBytes {
		// One byte more than announced: the read ends at the body's end (a
		// truncated body then fails to decode).
		buf := make([]byte, n+1)
		read, err := io.ReadFull(r.Body, buf)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, err
		}
		return buf[:read], nil
	}
	return io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
}

func validateCall(call *scheduler.Call) error {
	need := func(ok bool, field string) error {
		if !ok {
			return fmt.Errorf("Expecting '%s' to be present", field)
		}
		return nil
	}
	if call.Type == scheduler.Call_SUBSCRIBE {
		if call.Subscribe == nil || call.Subscribe.FrameworkInfo == nil {
			return need(false, "subscribe.framework_info")
		}
		a, b := call.GetFrameworkID(), call.Subscribe.FrameworkInfo.GetID()
		if (a == nil) != (b == nil) || (a != nil && a.Value != b.Value) {
			return fmt.Errorf("'framework_id' differs from 'subscribe.framework_info.id'")
		}
		return nil
	}
	if call.FrameworkID == nil || call.FrameworkID.Value == "" {
		return need(false, "framework_id")
	}
	switch call.Type {
	case scheduler.Call_ACCEPT:
		return need(call.Accept != nil, "accept")
	case scheduler.Call_DECLINE:
		return need(call.Decline != nil, "decline")
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		return need(call.AcceptInverseOffers != nil, "accept_inverse_offers")
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		return need(call.DeclineInverseOffers != nil, "decline_inverse_offers")
	case scheduler.Call_KILL:
		return need(call.Kill != nil, "kill")
	case scheduler.Call_SHUTDOWN:
		return need(call.Shutdown != nil, "shutdown")
	case scheduler.Call_ACKNOWLEDGE:
		if call.Acknowledge == nil {
			return need(false, "acknowledge")
		}
		if len(call.Acknowledge.UUID) != 16 {
			return fmt.Errorf("Failed to parse 'acknowledge.uuid': not a valid 16-byte UUID (got %d bytes)", len(call.Acknowledge.UUID))
		}
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS:
		return need(call.AcknowledgeOperationStatus != nil, "acknowledge_operation_status")
	case scheduler.Call_RECONCILE:
		return need(call.Reconcile != nil, "reconcile")
	case scheduler.Call_RECONCILE_OPERATIONS:
		return need(call.ReconcileOperations != nil, "reconcile_operations")
	case scheduler.Call_MESSAGE:
		return need(call.Message != nil, "message")
	case scheduler.Call_REQUEST:
		return need(call.Request != nil, "request")
	case scheduler.Call_UPDATE_FRAMEWORK:
		if call.UpdateFramework == nil {
			return need(false, "update_framework")
		}
		if call.UpdateFramework.FrameworkInfo.GetID().GetValue() != call.FrameworkID.Value {
			return fmt.Errorf("'framework_id' differs from 'update_framework.framework_info.id'")
		}
	case scheduler.Call_TEARDOWN, scheduler.Call_REVIVE, scheduler.Call_SUPPRESS:
	default:
		return fmt.Errorf("unknown call type %v", call.Type)
	}
	return nil
}

// validateFrameworkInfo mirrors the master's FrameworkInfo validation.
func validateFrameworkInfo(info *mesos.FrameworkInfo, suppressed []string) error {
	multi := hasCap(info, mesos.FrameworkInfo_Capability_MULTI_ROLE)
	var roles []string
	if multi {
		if info.Role != nil {
			return fmt.Errorf("'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable")
		}
		roles = info.Roles
	} else {
		if len(info.Roles) > 0 {
			return fmt.Errorf("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable")
		}
		roles = []string{info.GetRole()}
		if info.Role == nil {
			roles = []string{"*"}
		}
	}
	seen := map[string]bool{}
	for _, r := range roles {
		if err := validateRoleName(r); err != nil {
			return fmt.Errorf("'FrameworkInfo.roles' is not valid: %v", err)
		}
		if seen[r] {
			return fmt.Errorf("'FrameworkInfo.roles' contains duplicate role %q", r)
		}
		seen[r] = true
	}
	for _, s := range suppressed {
		if !seen[s] {
			return fmt.Errorf("Suppressed role %q is not contained in the list of roles", s)
		}
	}
	if ft := info.FailoverTimeout; ft != nil && (math.IsNaN(*ft) || math.IsInf(*ft, 0) || *ft < 0) {
		return fmt.Errorf("Invalid framework's 'failover_timeout': %v", *ft)
	}
	if info.ID != nil && info.ID.Value == "" {
		return fmt.Errorf("'FrameworkInfo.id' must not be empty when set")
	}
	return nil
}

func errorEvent(msg string) *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_ERROR, Error: &scheduler.Event_Error{Message: msg}}
}

// subscribe handles SUBSCRIBE: it answers 200 with a RecordIO stream that
// lives as long as the connection.
func (c *Cluster) subscribe(w http.ResponseWriter, r *http.Request, call *scheduler.Call) {
	if r.Header.Get("Mesos-Stream-Id") != "" {
		writeError(w, http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
		return
	}
	rk, ok := responseCodec(r)
	if !ok {
		writeError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow application/json or application/x-protobuf")
		return
	}
	info := *proto.Clone(call.Subscribe.FrameworkInfo).(*mesos.FrameworkInfo)
	s := newStream(rk, newUUIDString())

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "Master is shutting down")
		return
	}
	fw, errMsg := c.subscribeLocked(s, &info, call.Subscribe.SuppressedRoles)
	if errMsg != "" {
		s.send(errorEvent(errMsg))
		s.close()
	}
	c.mu.Unlock()

	w.Header().Set("Content-Type", string(rk))
	w.Header().Set("Mesos-Stream-Id", s.streamID)
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	defer cancel()
	s.serve(ctx, w, rc, &scheduler.Event{Type: scheduler.Event_HEARTBEAT}, c.cfg.HeartbeatInterval)

	if fw != nil {
		c.mu.Lock()
		if fw.sub == s && !c.closed {
			c.disconnectFramework(fw)
		}
		c.mu.Unlock()
	}
}

// subscribeLocked registers, fails over or recovers a framework. It returns
// an error message for an ERROR event when the subscription is refused.
func (c *Cluster) subscribeLocked(s *stream, info *mesos.FrameworkInfo, suppressed []string) (*framework, string) {
	if err := validateFrameworkInfo(info, suppressed); err != nil {
		return nil, err.Error()
	}
	now := time.Now()
	var fw *framework
	if info.ID != nil {
		id := info.ID.Value
		if c.removed[id] {
			return nil, "Framework has been removed"
		}
		fw = c.frameworks[id]
		if fw != nil {
			if fw.info.GetPrincipal() != info.GetPrincipal() && !fw.recovered {
				return nil, fmt.Sprintf("Changing framework's principal is not allowed (from %q to %q)", fw.info.GetPrincipal(), info.GetPrincipal())
			}
			if fw.sub != nil {
				fw.sub.send(errorEvent("Framework failed over"))
				fw.sub.close()
			}
			c.removeFrameworkOffers(fw, false)
			if !fw.recovered {
				// user and checkpoint cannot change on resubscription.
				info.User = fw.info.User
				info.Checkpoint = fw.info.Checkpoint
			}
			if fw.failoverTimer != nil {
				fw.failoverTimer.Stop()
				fw.failoverTimer = nil
			}
			fw.reregistered = now
		} else {
			// A never-seen id is accepted: the framework is rebuilt (Mesos' recoverFramework).
			fw = c.newFramework(id)
			fw.registered = now
		}
	} else {
		id := fmt.Sprintf("%s-%04d", c.masterID, c.nextFwID)
		c.nextFwID++
		fw = c.newFramework(id)
		fw.registered = now
		info.ID = &mesos.FrameworkID{Value: id}
	}
	wasKnown := !fw.registered.Equal(now)
	fw.setInfo(*info)
	fw.recovered = false
	fw.sub = s
	fw.streamID = s.streamID
	fw.connected = true
	fw.suppressed = map[string]bool{}
	for _, r := range suppressed {
		fw.suppressed[r] = true
	}
	hb := c.cfg.HeartbeatInterval.Seconds()
	s.send(&scheduler.Event{Type: scheduler.Event_SUBSCRIBED, Subscribed: &scheduler.Event_Subscribed{
		FrameworkID:              &mesos.FrameworkID{Value: fw.id},
		HeartbeatIntervalSeconds: &hb,
		MasterInfo:               c.masterInfo(),
	}})
	s.send(&scheduler.Event{Type: scheduler.Event_HEARTBEAT})
	for _, a := range c.agentList {
		if _, ok := a.fwInfos[fw.id]; ok && fw.checkpoint() {
			a.fwInfos[fw.id] = fw.info
		}
	}
	// Deliver unacknowledged updates now instead of at the next retry.
	for _, t := range fw.tasks {
		if len(t.pending) > 0 && t.agent.active {
			c.forwardUpdate(t)
		}
	}
	c.log.Info("framework subscribed", "framework_id", fw.id, "stream_id", fw.streamID, "name", fw.info.Name, "roles", fw.roles, "failover", wasKnown)
	if wasKnown {
		c.operatorEvent(func() *master.Event { return frameworkEvent(c, fw, false) })
	} else {
		c.operatorEvent(func() *master.Event { return frameworkEvent(c, fw, true) })
	}
	c.markAllDirty()
	c.kickAllocation()
	return fw, ""
}

func (c *Cluster) newFramework(id string) *framework {
	fw := &framework{
		id:         id,
		suppressed: map[string]bool{},
		filters:    map[string][]offerFilter{},
		offers:     map[string]*offer{},
		tasks:      map[string]*task{},
		lost:       map[string]*task{},
	}
	c.frameworks[id] = fw
	return fw
}

// disconnectFramework deactivates a framework whose stream broke and starts
// its failover timeout. Tasks keep running. Its offers go back and its
// filters are dropped, as Mesos' allocator does when a framework is
// deactivated: after resubscribing it is offered everything afresh.
func (c *Cluster) disconnectFramework(fw *framework) {
	fw.sub = nil
	fw.connected = false
	fw.unregistered = time.Now()
	c.removeFrameworkOffers(fw, false)
	clear(fw.filters)
	timeout := time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second))
	c.log.Info("framework disconnected", "framework_id", fw.id, "stream_id", fw.streamID, "failover_timeout", timeout)
	c.operatorEvent(func() *master.Event { return frameworkEvent(c, fw, false) })
	if timeout <= 0 {
		c.removeFramework(fw, "failover timeout 0")
		return
	}
	if fw.failoverTimer != nil {
		fw.failoverTimer.Stop()
	}
	var timer *time.Timer
	timer = time.AfterFunc(timeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || fw.failoverTimer != timer || fw.connected || c.frameworks[fw.id] != fw {
			return
		}
		c.removeFramework(fw, "failover timeout expired")
	})
	fw.failoverTimer = timer
}

// removeFramework kills the framework's tasks everywhere and marks it
// completed; its id can never subscribe again.
func (c *Cluster) removeFramework(fw *framework, why string) {
	if fw.failoverTimer != nil {
		fw.failoverTimer.Stop()
		fw.failoverTimer = nil
	}
	if fw.sub != nil {
		fw.sub.close()
		fw.sub = nil
	}
	fw.connected = false
	c.removeFrameworkOffers(fw, false)
	for _, t := range fw.tasks {
		if t.alive {
			c.finishTask(t, mesos.TASK_KILLED, mesos.REASON_FRAMEWORK_REMOVED, "Framework "+fw.id+" removed: "+why, false)
		}
		if t.runner != nil {
			t.runner.abandon()
		}
		delete(c.retrying, t)
		t.pending = nil
		fw.addCompleted(t)
	}
	for _, t := range fw.lost {
		fw.addCompleted(t)
	}
	fw.tasks = map[string]*task{}
	fw.lost = map[string]*task{}
	for _, a := range c.agentList {
		if _, ok := a.fwInfos[fw.id]; ok {
			delete(a.fwInfos, fw.id)
			c.checkpointAgent(a)
		}
	}
	delete(c.frameworks, fw.id)
	c.removed[fw.id] = true
	c.completedFw = append(c.completedFw, fw)
	if len(c.completedFw) > 50 {
		c.completedFw = c.completedFw[1:]
	}
	c.log.Info("framework removed", "framework_id", fw.id, "reason", why)
	c.operatorEvent(func() *master.Event { return frameworkRemovedEvent(fw) })
	c.kickAllocation()
}

// handleCall runs a non-SUBSCRIBE call and returns the HTTP status.
func (c *Cluster) handleCall(r *http.Request, call *scheduler.Call) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return http.StatusServiceUnavailable, "Master is shutting down"
	}
	fw := c.frameworks[call.FrameworkID.Value]
	if fw == nil {
		return http.StatusBadRequest, "Framework cannot be found"
	}
	if !fw.connected {
		return http.StatusForbidden, "Framework is not subscribed"
	}
	sid := r.Header.Get("Mesos-Stream-Id")
	if sid == "" {
		return http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
	}
	if sid != fw.streamID {
		return http.StatusBadRequest, fmt.Sprintf("The stream ID '%s' included in this request didn't match the stream ID currently associated with framework ID %s", sid, fw.id)
	}
	c.countCall(fw, call)
	switch call.Type {
	case scheduler.Call_TEARDOWN:
		c.recordOp("TEARDOWN", fw, "", nil, nil, nil)
		c.removeFramework(fw, "TEARDOWN")
	case scheduler.Call_ACCEPT:
		c.accept(fw, call.Accept.OfferIDs, call.Accept.Operations, call.Accept.Filters)
	case scheduler.Call_DECLINE:
		c.decline(fw, call.Decline.OfferIDs, call.Decline.Filters)
	case scheduler.Call_REVIVE:
		roles := call.GetRevive().GetRoles()
		if err := checkRoles(fw, roles); err != nil {
			return http.StatusBadRequest, err.Error()
		}
		for _, role := range rolesOrAll(fw, roles) {
			delete(fw.suppressed, role)
			for aid, fs := range fw.filters {
				kept := fs[:0]
				for _, f := range fs {
					if f.role != role {
						kept = append(kept, f)
					}
				}
				fw.filters[aid] = kept
			}
		}
		c.markAllDirty()
		c.kickAllocation()
	case scheduler.Call_SUPPRESS:
		roles := call.GetSuppress().GetRoles()
		if err := checkRoles(fw, roles); err != nil {
			return http.StatusBadRequest, err.Error()
		}
		for _, role := range rolesOrAll(fw, roles) {
			fw.suppressed[role] = true
		}
	case scheduler.Call_KILL:
		c.killCall(fw, call.Kill)
	case scheduler.Call_SHUTDOWN:
		c.shutdownExecutor(fw, call.Shutdown.AgentID.Value, call.Shutdown.ExecutorID.Value)
	case scheduler.Call_ACKNOWLEDGE:
		c.acknowledge(fw, call.Acknowledge.TaskID.Value, call.Acknowledge.UUID)
	case scheduler.Call_RECONCILE:
		c.reconcile(fw, call.Reconcile.Tasks)
	case scheduler.Call_MESSAGE:
		// Command and default executors ignore framework messages.
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		c.answerInverseOffers(fw, call.AcceptInverseOffers.InverseOfferIDs, call.AcceptInverseOffers.Filters, true)
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		c.answerInverseOffers(fw, call.DeclineInverseOffers.InverseOfferIDs, call.DeclineInverseOffers.Filters, false)
	case scheduler.Call_REQUEST, scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS, scheduler.Call_RECONCILE_OPERATIONS:
		// No resource providers: nothing to do.
	case scheduler.Call_UPDATE_FRAMEWORK:
		return c.updateFramework(fw, call.UpdateFramework)
	}
	return http.StatusAccepted, ""
}

func checkRoles(fw *framework, roles []string) error {
	for _, r := range roles {
		if !fw.hasRole(r) {
			return fmt.Errorf("Role %q is not one of the framework's roles", r)
		}
	}
	return nil
}

func rolesOrAll(fw *framework, roles []string) []string {
	if len(roles) == 0 {
		return fw.roles
	}
	return roles
}

func (c *Cluster) updateFramework(fw *framework, u *scheduler.Call_UpdateFramework) (int, string) {
	info := *proto.Clone(&u.FrameworkInfo).(*mesos.FrameworkInfo)
	if err := validateFrameworkInfo(&info, u.SuppressedRoles); err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if info.User != fw.info.User {
		return http.StatusBadRequest, "Updating 'FrameworkInfo.user' is unsupported"
	}
	if info.GetCheckpoint() != fw.info.GetCheckpoint() {
		return http.StatusBadRequest, "Updating 'FrameworkInfo.checkpoint' is unsupported"
	}
	if info.GetPrincipal() != fw.info.GetPrincipal() {
		return http.StatusBadRequest, "Changing framework's principal is not allowed"
	}
	fw.setInfo(info)
	fw.suppressed = map[string]bool{}
	for _, r := range u.SuppressedRoles {
		fw.suppressed[r] = true
	}
	// Offers for roles the framework left are rescinded.
	for _, o := range fw.offers {
		if !fw.hasRole(o.role) {
			c.rescindOffer(o)
		}
	}
	c.operatorEvent(func() *master.Event { return frameworkEvent(c, fw, false) })
	c.markAllDirty()
	c.kickAllocation()
	return http.StatusOK, ""
}

// sendEvent queues an event to a connected framework.
func (c *Cluster) sendEvent(fw *framework, ev *scheduler.Event) {
	if fw != nil && fw.connected && fw.sub != nil {
		fw.sub.send(ev)
	}
}

// masterUpdate sends a master-generated status update (no uuid, never acknowledged).
func (c *Cluster) masterUpdate(fw *framework, st mesos.TaskStatus) {
	st.Source = mesos.SOURCE_MASTER.Enum()
	st.UUID = nil
	if st.Timestamp == nil {
		ts := nowSeconds()
		st.Timestamp = &ts
	}
	c.sendEvent(fw, &scheduler.Event{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{Status: st}})
	c.operatorEvent(func() *master.Event { return taskUpdatedEvent(fw.id, st, st.GetState()) })
}

func (c *Cluster) masterInfo() *mesos.MasterInfo {
	host, portStr, _ := splitHostPort(c.Addr())
	port, _ := strconv.Atoi(portStr)
	p := uint32(port)
	pid := "master@" + c.Addr()
	return &mesos.MasterInfo{
		ID:       c.masterID,
		IP:       ipv4ToUint32(host),
		Port:     &p,
		PID:      &pid,
		Hostname: proto.String(host),
		Version:  proto.String(mesosVersion),
		Address:  &mesos.Address{Hostname: proto.String(host), IP: proto.String(host), Port: int32(port)},
	}
}

// acknowledge handles ACKNOWLEDGE for an agent status update.
func (c *Cluster) acknowledge(fw *framework, taskID string, uuid []byte) {
	t := fw.tasks[taskID]
	if t == nil || len(t.pending) == 0 || string(t.pending[0].UUID) != string(uuid) {
		c.log.Debug("ignoring acknowledgement", "framework_id", fw.id, "task_id", taskID, "uuid", formatUUID(uuid))
		return
	}
	acked := t.pending[0]
	t.pending = t.pending[1:]
	t.retryDelay = 0
	if len(t.pending) > 0 {
		c.forwardUpdate(t)
	} else {
		delete(c.retrying, t)
	}
	if isTerminal(acked.GetState()) && len(t.pending) == 0 {
		// The terminal update was acknowledged: forget the task.
		delete(fw.tasks, taskID)
		fw.addCompleted(t)
	}
	if c.cfg.WorkDir != "" {
		// The acknowledgement is checkpointed too, as by Mesos' status
		// update manager: a restarted agent resends only what is unacked.
		c.checkpointTasks(t.agent)
	}
}

// reconcile answers RECONCILE per Mesos' table.
func (c *Cluster) reconcile(fw *framework, tasks []scheduler.Call_Reconcile_Task) {
	if len(tasks) == 0 {
		for _, t := range fw.tasks {
			c.masterUpdate(fw, reconcileStatus(t))
		}
		return
	}
	for _, rt := range tasks {
		aid := ""
		if rt.AgentID != nil {
			aid = rt.AgentID.Value
		}
		c.reconcileOne(fw, rt.TaskID.Value, aid)
	}
}

func (c *Cluster) reconcileOne(fw *framework, taskID, agentID string) {
	if t := fw.tasks[taskID]; t != nil {
		c.masterUpdate(fw, reconcileStatus(t))
		return
	}
	if t := fw.lost[taskID]; t != nil {
		c.masterUpdate(fw, reconcileStatus(t))
		return
	}
	st := mesos.TaskStatus{TaskID: mesos.TaskID{Value: taskID}, Reason: mesos.REASON_RECONCILIATION.Enum()}
	var state mesos.TaskState
	a := c.agents[agentID]
	switch {
	case agentID != "" && a != nil && a.gone:
		state = fw.lostState(mesos.TASK_GONE_BY_OPERATOR)
	case agentID != "" && a != nil && !a.active:
		state = fw.lostState(mesos.TASK_UNREACHABLE)
	case agentID != "" && a != nil:
		state = fw.lostState(mesos.TASK_GONE)
	default:
		state = fw.lostState(mesos.TASK_UNKNOWN)
	}
	st.State = state.Enum()
	if agentID != "" {
		st.AgentID = &mesos.AgentID{Value: agentID}
	}
	c.masterUpdate(fw, st)
}

// reconcileStatus is the task's latest status as the master reports it on
// reconciliation: SOURCE_MASTER, REASON_RECONCILIATION, no message or data.
func reconcileStatus(t *task) mesos.TaskStatus {
	st := mesos.TaskStatus{
		TaskID:          t.info.TaskID,
		State:           t.state.Enum(),
		Reason:          mesos.REASON_RECONCILIATION.Enum(),
		AgentID:         &mesos.AgentID{Value: t.agent.id},
		Healthy:         t.status.Healthy,
		Labels:          t.status.Labels,
		CheckStatus:     t.status.CheckStatus,
		ContainerStatus: t.status.ContainerStatus,
		UnreachableTime: t.status.UnreachableTime,
	}
	if t.executorID != "" {
		st.ExecutorID = &mesos.ExecutorID{Value: t.executorID}
	}
	return st
}

// killCall handles KILL: known live tasks are killed, anything else is
// answered through reconciliation.
func (c *Cluster) killCall(fw *framework, k *scheduler.Call_Kill) {
	t := fw.tasks[k.TaskID.Value]
	aid := ""
	if k.AgentID != nil {
		aid = k.AgentID.Value
	}
	if t == nil || !t.alive || c.partitioned(t.agent) {
		// Unknown, ended, or out of reach (partition.go): its state says so.
		c.reconcileOne(fw, k.TaskID.Value, aid)
		return
	}
	c.recordOp("KILL", fw, t.agent.id, []string{t.info.TaskID.Value}, nil, nil)
	grace := c.cfg.KillGracePeriod
	if kp := k.KillPolicy; kp != nil && kp.GracePeriod != nil {
		grace = time.Duration(kp.GracePeriod.Nanoseconds)
	} else if kp := t.info.KillPolicy; kp != nil && kp.GracePeriod != nil {
		grace = time.Duration(kp.GracePeriod.Nanoseconds)
	}
	if grace < 0 {
		grace = 0
	}
	if t.group != nil {
		c.killGroup(t.group, grace, "Task "+t.info.TaskID.Value+" was killed by the framework")
		return
	}
	c.killTask(t, grace, false)
}

// killTask asks the task's runner to kill it (or ends a task that has not
// started yet).
func (c *Cluster) killTask(t *task, grace time.Duration, health bool) {
	if !t.alive {
		return
	}
	fw := c.frameworks[t.fwID]
	if fw != nil && fw.killingState && t.state != mesos.TASK_KILLING {
		c.agentUpdate(t, mesos.TaskStatus{State: mesos.TASK_KILLING.Enum(), Source: mesos.SOURCE_EXECUTOR.Enum()})
	}
	if t.runner == nil {
		c.finishTask(t, mesos.TASK_KILLED, 0, "Task killed before it was launched", true)
		return
	}
	t.runner.kill(grace, health)
}

func (c *Cluster) killGroup(g *execGroup, grace time.Duration, why string) {
	if g.killing {
		return
	}
	g.killing = true
	for _, t := range g.tasks {
		c.killTask(t, grace, false)
	}
}

func (c *Cluster) shutdownExecutor(fw *framework, agentID, executorID string) {
	a := c.agents[agentID]
	if a == nil {
		return
	}
	if g := a.groups[fw.id+"/"+executorID]; g != nil {
		c.killGroup(g, c.cfg.KillGracePeriod, "executor shut down")
		return
	}
	// A command executor's id is its task id.
	if t := fw.tasks[executorID]; t != nil && t.agent == a && t.group == nil {
		c.killTask(t, c.cfg.KillGracePeriod, false)
	}
}
