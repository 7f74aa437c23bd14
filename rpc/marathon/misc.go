package marathon

import (
	"connectrpc.com/connect"
	"fmt"
	"math"
	"net/http"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
)

// deploymentJSON is Marathon's deployment object.
type deploymentJSON struct {
	ID             string          `json:"id"`
	Version        string          `json:"version"`
	AffectedApps   []string        `json:"affectedApps"`
	AffectedPods   []string        `json:"affectedPods"`
	Steps          []stepJSON      `json:"steps"`
	CurrentActions []currentAction `json:"currentActions"`
	CurrentStep    uint32          `json:"currentStep"`
	TotalSteps     int             `json:"totalSteps"`
}

type stepJSON struct {
	Actions []actionJSON `json:"actions"`
}

type actionJSON struct {
	Action string `json:"action"`
	App    string `json:"app"`
}

type currentAction struct {
	Action                string          `json:"action"`
	App                   string          `json:"app"`
	ReadinessCheckResults []readinessJSON `json:"readinessCheckResults"`
}

// readinessJSON is Marathon's readiness check result.
type readinessJSON struct {
	Name         string        `json:"name"`
	TaskID       string        `json:"taskId"`
	Ready        bool          `json:"ready"`
	LastResponse *httpResponse `json:"lastResponse,omitempty"`
}

type httpResponse struct {
	Status      int32  `json:"status"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

func readinessOf(rs []*v1.ReadinessCheckResult) []readinessJSON {
	out := []readinessJSON{}
	for _, r := range rs {
		j := readinessJSON{Name: r.GetName(), TaskID: r.GetTaskId(), Ready: r.GetReady()}
		if lr := r.GetLastResponse(); lr != nil {
			j.LastResponse = &httpResponse{Status: lr.GetStatus(), ContentType: lr.GetContentType(), Body: lr.GetBody()}
		}
		out = append(out, j)
	}
	return out
}

// planJSON is the plan inside deployment events.
type planJSON struct {
	ID      string     `json:"id"`
	Version string     `json:"version"`
	Steps   []stepJSON `json:"steps"`
}

func stepsOf(d *v1.Deployment) []stepJSON {
	steps := []stepJSON{}
	for _, s := range d.GetSteps() {
		st := stepJSON{Actions: []actionJSON{}}
		for _, act := range s.GetActions() {
			st.Actions = append(st.Actions, actionJSON{Action: act.GetAction(), App: act.GetApp()})
		}
		steps = append(steps, st)
	}
	return steps
}

// deploymentOf renders a deployment; current, when given, holds the
// readiness results of its current actions.
func deploymentOf(d *v1.Deployment, current *v1.CurrentActions) deploymentJSON {
	out := deploymentJSON{
		ID: d.GetId(), Version: d.GetVersion(), AffectedApps: d.GetAffectedApps(), AffectedPods: []string{},
		Steps: stepsOf(d), CurrentActions: []currentAction{}, CurrentStep: d.GetCurrentStep(), TotalSteps: len(d.GetSteps()),
	}
	if out.AffectedApps == nil {
		out.AffectedApps = []string{}
	}
	if i := int(d.GetCurrentStep()) - 1; i >= 0 && i < len(d.GetSteps()) {
		for _, act := range d.GetSteps()[i].GetActions() {
			ca := currentAction{Action: act.GetAction(), App: act.GetApp(), ReadinessCheckResults: []readinessJSON{}}
			for _, c := range current.GetActions() {
				if c.GetApp() == act.GetApp() && c.GetAction() == act.GetAction() {
					ca.ReadinessCheckResults = readinessOf(c.GetReadinessCheckResults())
				}
			}
			out.CurrentActions = append(out.CurrentActions, ca)
		}
	}
	return out
}

// listDeployments serves GET /v2/deployments: a bare array.
func (a *API) listDeployments(w http.ResponseWriter, r *http.Request) {
	res, err := a.deployments.ListDeployments(r.Context(), call(r, &v1.ListDeploymentsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	out := []deploymentJSON{}
	for i, d := range res.Msg.GetDeployments() {
		var current *v1.CurrentActions
		if i < len(res.Msg.GetCurrentActions()) {
			current = res.Msg.GetCurrentActions()[i]
		}
		out = append(out, deploymentOf(d, current))
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteDeployment serves DELETE /v2/deployments/{id} through
// CancelDeployment. With force=true the deployment stops where it stands
// (202, no body). Without, it is rolled back (each affected app returns to
// the version before the deployment's; an app the deployment created is
// removed) and the answer names the rollback's deployment.
func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request, id string) {
	params, ok := boolParams(w, r, map[string]bool{"force": false})
	if !ok {
		return
	}
	res, err := a.deployments.CancelDeployment(r.Context(), call(r, &v1.CancelDeploymentRequest{Id: id, Force: params["force"]}))
	if err != nil {
		a.writeError(w, r, err, failure{notFound: fmt.Sprintf("DeploymentPlan %s does not exist", id)})
		return
	}
	if res.Msg.GetDeploymentId() == "" {
		w.WriteHeader(http.StatusAccepted) // stopped, nothing rolled back
		return
	}
	a.writeDeployment(w, r, http.StatusOK, res.Msg.GetDeploymentId(), res.Msg.GetVersion())
}

// resetDelay serves DELETE /v2/queue/{id}/delay: the app's launch
// backoff is cleared (204, as Marathon answers; its RAML says 200).
func (a *API) resetDelay(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := a.apps.ResetDelay(r.Context(), call(r, &v1.ResetDelayRequest{Id: id})); err != nil {
		a.writeError(w, r, err, failure{notFound: appNotFound(id)})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// queueItem is one app waiting for offers.
type queueItem struct {
	App                    rawJSON          `json:"app"`
	Count                  int              `json:"count"`
	Delay                  queueDelay       `json:"delay"`
	Since                  string           `json:"since"`
	Role                   string           `json:"role,omitempty"`
	ProcessedOffersSummary offersSummary    `json:"processedOffersSummary"`
	LastUnusedOffers       []unusedOfferRef `json:"lastUnusedOffers,omitempty"`
}

// offersSummary is Marathon's processedOffersSummary: both reject
// summaries are always written, one entry per reason in funnel order.
type offersSummary struct {
	ProcessedOffersCount       int32           `json:"processedOffersCount"`
	UnusedOffersCount          int32           `json:"unusedOffersCount"`
	LastUnusedOfferAt          string          `json:"lastUnusedOfferAt,omitempty"`
	LastUsedOfferAt            string          `json:"lastUsedOfferAt,omitempty"`
	RejectSummaryLastOffers    []rejectSummary `json:"rejectSummaryLastOffers"`
	RejectSummaryLaunchAttempt []rejectSummary `json:"rejectSummaryLaunchAttempt"`
}

type rejectSummary struct {
	Reason    string `json:"reason"`
	Declined  int32  `json:"declined"`
	Processed int32  `json:"processed"`
}

// unusedOfferRef is one of lastUnusedOffers. Berth keeps the offer's id,
// agent and host, not its resources: resources and attributes are empty.
type unusedOfferRef struct {
	Offer struct {
		ID         string     `json:"id"`
		Hostname   string     `json:"hostname"`
		AgentID    string     `json:"agentId"`
		Resources  []struct{} `json:"resources"`
		Attributes []struct{} `json:"attributes"`
	} `json:"offer"`
	Reason    []string `json:"reason"`
	Timestamp string   `json:"timestamp"`
}

func rejectsOf(rs []*v1.OfferRejections) []rejectSummary {
	out := make([]rejectSummary, 0, len(rs))
	for _, r := range rs {
		out = append(out, rejectSummary{Reason: r.GetReason(), Declined: r.GetDeclined(), Processed: r.GetProcessed()})
	}
	return out
}

// withOffers adds what the leader knows of the offers processed for the
// app (an empty summary, with every reason at 0, when it processed none).
func (item *queueItem) withOffers(e *v1.QueueEntry, funnel []string, embedOffers bool) {
	s := e.GetProcessedOffersSummary()
	item.ProcessedOffersSummary = offersSummary{
		ProcessedOffersCount: s.GetProcessedOffersCount(), UnusedOffersCount: s.GetUnusedOffersCount(),
		LastUnusedOfferAt: s.GetLastUnusedOfferAt(), LastUsedOfferAt: s.GetLastUsedOfferAt(),
		RejectSummaryLastOffers:    rejectsOf(s.GetRejectSummaryLastOffers()),
		RejectSummaryLaunchAttempt: rejectsOf(s.GetRejectSummaryLaunchAttempt()),
	}
	if s == nil {
		for _, r := range funnel {
			item.ProcessedOffersSummary.RejectSummaryLastOffers = append(item.ProcessedOffersSummary.RejectSummaryLastOffers, rejectSummary{Reason: r})
			item.ProcessedOffersSummary.RejectSummaryLaunchAttempt = append(item.ProcessedOffersSummary.RejectSummaryLaunchAttempt, rejectSummary{Reason: r})
		}
	}
	if !embedOffers {
		return
	}
	item.LastUnusedOffers = []unusedOfferRef{}
	for _, o := range e.GetLastUnusedOffers() {
		var u unusedOfferRef
		u.Offer.ID, u.Offer.Hostname, u.Offer.AgentID = o.GetOfferId(), o.GetHostname(), o.GetAgentId()
		u.Offer.Resources, u.Offer.Attributes = []struct{}{}, []struct{}{}
		u.Reason, u.Timestamp = append([]string{}, o.GetReasons()...), o.GetTimestamp()
		item.LastUnusedOffers = append(item.LastUnusedOffers, u)
	}
}

type queueDelay struct {
	TimeLeftSeconds int  `json:"timeLeftSeconds"`
	Overdue         bool `json:"overdue"`
}

// rawJSON is pre-encoded JSON.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// queue serves GET /v2/queue: per app, the instances meant to run that
// have no live task (waiting for an offer, or for their launch backoff),
// with the longest backoff left. The instances and apps come through the
// Connect services (so a caller needs their permissions); the backoff
// and creation times, which they do not show, from the local store.
// Why each app waits (processedOffersSummary, and lastUnusedOffers with
// embed=lastUnusedOffers) comes from the leader's memory (GetQueue).
func (a *API) queue(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Store == nil {
		writeMessage(w, http.StatusNotImplemented, "the queue needs the state store (marathon.Config.Store)")
		return
	}
	tasks, err := a.tasks.ListTasks(r.Context(), call(r, &v1.ListTasksRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	apps, err := a.apps.ListApps(r.Context(), call(r, &v1.ListAppsRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	live, err := a.apps.GetQueue(r.Context(), call(r, &v1.GetQueueRequest{}))
	if err != nil {
		a.writeError(w, r, err, failure{})
		return
	}
	offers := map[string]*v1.QueueEntry{}
	for _, e := range live.Msg.GetQueue() {
		offers[e.GetAppId()] = e
	}
	st := a.cfg.Store().Snapshot()
	now := a.cfg.Now()
	waiting := map[string]*queueItem{}
	for _, tv := range tasks.Msg.GetTasks() {
		if tv.GetGoal() != "Running" || tv.GetState() != "" && !rpc.IsTerminalTaskState(tv.GetState()) {
			continue
		}
		item := waiting[tv.GetAppId()]
		if item == nil {
			item = &queueItem{Delay: queueDelay{Overdue: true}}
			waiting[tv.GetAppId()] = item
		}
		item.Count++
		inst, err := st.Instance(tv.GetInstanceId())
		if err != nil || inst == nil {
			continue // gone meanwhile
		}
		since := inst.GetCreatedAt()
		if t := inst.GetTask(); t != nil && t.GetStagedAt() != nil {
			since = t.GetStagedAt()
		}
		if s := appmodel.Timestamp(since); s != "" && (item.Since == "" || s < item.Since) {
			item.Since = s
		}
		if nb := inst.GetLaunchNotBefore(); nb != nil && nb.AsTime().After(now) {
			left := int(math.Ceil(nb.AsTime().Sub(now).Seconds()))
			item.Delay = queueDelay{TimeLeftSeconds: max(item.Delay.TimeLeftSeconds, left), Overdue: false}
		}
	}
	items := []queueItem{}
	for _, app := range apps.Msg.GetApps() {
		item := waiting[app.GetId()]
		if item == nil {
			continue
		}
		b, err := appmodel.Render(app)
		if err != nil {
			writeMessage(w, http.StatusInternalServerError, err.Error())
			return
		}
		item.App, item.Role = compact(b), app.GetRole()
		item.withOffers(offers[app.GetId()], live.Msg.GetReasonFunnel(), embeds(r)["lastUnusedOffers"])
		items = append(items, *item)
	}
	writeJSON(w, http.StatusOK, map[string][]queueItem{"queue": items})
}

// info serves GET /v2/info.
func (a *API) info(w http.ResponseWriter, r *http.Request) {
	// During an election there is no leader: "leader" is null then.
	leader, err := a.cluster.Leader(r.Context(), call(r, &v1.LeaderRequest{}))
	if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
		a.writeError(w, r, err, failure{})
		return
	}
	var frameworkID *string
	if a.cfg.Store != nil {
		if id, err := a.cfg.Store().Snapshot().FrameworkID(); err == nil && id != "" {
			frameworkID = &id
		}
	}
	var leaderAddr *string
	if err == nil && leader.Msg.GetApiAddr() != "" {
		addr := leader.Msg.GetApiAddr()
		leaderAddr = &addr
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":        "berth",
		"version":     a.cfg.Version,
		"buildref":    a.cfg.Version,
		"elected":     leaderAddr != nil && *leaderAddr == r.Host,
		"leader":      leaderAddr,
		"frameworkId": frameworkID,
		"marathon_config": map[string]any{
			"master":   a.cfg.MesosMaster,
			"features": []string{},
		},
		"zookeeper_config": map[string]any{},
		"http_config":      map[string]any{},
	})
}

// leader serves GET /v2/leader and DELETE /v2/leader (abdicate: leadership
// moves to another server; the process keeps running, unlike Marathon's).
func (a *API) leader(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		res, err := a.cluster.Leader(r.Context(), call(r, &v1.LeaderRequest{}))
		if err != nil {
			a.writeError(w, r, err, failure{})
			return
		}
		if res.Msg.GetApiAddr() == "" {
			writeMessage(w, http.StatusNotFound, "There is no leader")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"leader": res.Msg.GetApiAddr()})
	case http.MethodDelete:
		if _, err := a.cluster.TransferLeadership(r.Context(), call(r, &v1.TransferLeadershipRequest{})); err != nil {
			a.writeError(w, r, err, failure{notFound: "There is no leader"})
			return
		}
		writeMessage(w, http.StatusOK, "Leadership abdicated")
	default:
		methodNotAllowed(w, r)
	}
}
