// Package marathon serves Marathon's /v2 REST API (apps, tasks,
// deployments, groups, queue, info, leader, ping and the /v2/events
// stream) for tools that speak Marathon: the DC/OS CLI, client libraries,
// marathon-lb-style load balancers.
//
// It is a thin layer: every route calls Berth's Connect services in
// process, through the same handler a remote Connect client reaches (see
// inProcess), so validation, locking, versioning, leader forwarding and
// every interceptor (ACLs, metrics) apply to a REST call exactly as to a
// Connect call. This package translates HTTP requests into Connect
// requests, and Connect answers and errors into Marathon's status codes
// and JSON shapes. Routes lists each route with the Connect procedures it
// calls.
package marathon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
	"github.com/berth-dev/berth/rpc"
)

// Config configures the REST API.
type Config struct {
	// Store returns the local state store; /v2/queue and /v2/info read
	// it (what waits for offers, the framework id), as Connect reads do.
	Store func() *fsm.Store
	// Version is Berth's version, shown by /v2/info.
	Version string
	// MesosMaster is the Mesos master URL, shown by /v2/info.
	MesosMaster string
	// Logger gets the API's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// KeepAlive is the interval of the event stream's keep-alive lines
	// (default 10 s, as Marathon's).
	KeepAlive time.Duration
}

// API serves Marathon's REST API over Berth's Connect services.
type API struct {
	cfg Config
	log *slog.Logger

	apps        berthv1connect.AppServiceClient
	tasks       berthv1connect.TaskServiceClient
	deployments berthv1connect.DeploymentServiceClient
	events      berthv1connect.EventServiceClient
	cluster     berthv1connect.ClusterServiceClient
}

// New returns the REST API for cfg; mount it with Handler (or through
// rpc.Config.REST = api.Handler).
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 10 * time.Second
	}
	return &API{cfg: cfg, log: cfg.Logger}
}

// inProcessBase is the base URL of the in-process Connect clients (never
// dialled).
const inProcessBase = "http://berth.in-process"

// Handler returns the handler of /v2/... and /ping, calling the Connect
// services through connectAPI (the rpc.Server's Connect handler).
func (a *API) Handler(connectAPI http.Handler) http.Handler {
	hc := &http.Client{Transport: inProcess{connectAPI}}
	a.apps = berthv1connect.NewAppServiceClient(hc, inProcessBase)
	a.tasks = berthv1connect.NewTaskServiceClient(hc, inProcessBase)
	a.deployments = berthv1connect.NewDeploymentServiceClient(hc, inProcessBase)
	a.events = berthv1connect.NewEventServiceClient(hc, inProcessBase)
	a.cluster = berthv1connect.NewClusterServiceClient(hc, inProcessBase)
	return http.HandlerFunc(a.serve)
}

// Route is one REST route and the Connect procedures it calls: a route
// needs every permission its procedures need.
type Route struct {
	Method     string
	Path       string
	Procedures []string
}

// Routes lists every route of the REST API. {id} is an app or group id
// (it may contain slashes), {taskId} a task or instance id.
var Routes = []Route{
	{"GET", "/ping", nil},
	{"GET", "/v2/apps", []string{berthv1connect.AppServiceListAppsProcedure, berthv1connect.TaskServiceListTasksProcedure, berthv1connect.TaskServiceListCheckResultsProcedure}},
	{"POST", "/v2/apps", []string{berthv1connect.AppServiceCreateAppProcedure}},
	{"PUT", "/v2/apps", []string{berthv1connect.AppServiceUpdateAppProcedure, berthv1connect.AppServiceCreateAppProcedure}},
	{"PATCH", "/v2/apps", []string{berthv1connect.AppServiceUpdateAppProcedure}},
	{"GET", "/v2/apps/{id}", []string{berthv1connect.AppServiceGetAppProcedure, berthv1connect.TaskServiceListTasksProcedure, berthv1connect.TaskServiceListCheckResultsProcedure}},
	{"PUT", "/v2/apps/{id}", []string{berthv1connect.AppServiceUpdateAppProcedure, berthv1connect.AppServiceCreateAppProcedure, berthv1connect.AppServiceGetAppProcedure}},
	{"PATCH", "/v2/apps/{id}", []string{berthv1connect.AppServiceUpdateAppProcedure}},
	{"DELETE", "/v2/apps/{id}", []string{berthv1connect.AppServiceDeleteAppProcedure, berthv1connect.DeploymentServiceGetDeploymentProcedure}},
	{"POST", "/v2/apps/{id}/restart", []string{berthv1connect.AppServiceRestartAppProcedure}},
	{"GET", "/v2/apps/{id}/*", []string{berthv1connect.AppServiceListAppsProcedure, berthv1connect.TaskServiceListTasksProcedure}},
	{"GET", "/v2/apps/{id}/*/tasks", []string{berthv1connect.AppServiceListAppsProcedure, berthv1connect.TaskServiceListTasksProcedure}},
	{"GET", "/v2/apps/{id}/tasks", []string{berthv1connect.AppServiceGetAppProcedure, berthv1connect.TaskServiceListTasksProcedure}},
	{"DELETE", "/v2/apps/{id}/tasks", []string{berthv1connect.AppServiceGetAppProcedure, berthv1connect.TaskServiceListTasksProcedure, berthv1connect.TaskServiceKillTaskProcedure, berthv1connect.AppServiceUpdateAppProcedure}},
	{"DELETE", "/v2/apps/{id}/tasks/{taskId}", []string{berthv1connect.AppServiceGetAppProcedure, berthv1connect.TaskServiceListTasksProcedure, berthv1connect.TaskServiceKillTaskProcedure}},
	{"GET", "/v2/apps/{id}/versions", []string{berthv1connect.AppServiceListAppVersionsProcedure}},
	{"GET", "/v2/apps/{id}/versions/{version}", []string{berthv1connect.AppServiceGetAppProcedure}},
	{"GET", "/v2/tasks", []string{berthv1connect.TaskServiceListTasksProcedure, berthv1connect.AppServiceListAppsProcedure}},
	{"POST", "/v2/tasks/delete", []string{berthv1connect.TaskServiceListTasksProcedure, berthv1connect.TaskServiceKillTaskProcedure, berthv1connect.AppServiceGetAppProcedure, berthv1connect.AppServiceUpdateAppProcedure}},
	{"GET", "/v2/deployments", []string{berthv1connect.DeploymentServiceListDeploymentsProcedure}},
	{"DELETE", "/v2/deployments/{id}", []string{berthv1connect.DeploymentServiceCancelDeploymentProcedure}},
	{"GET", "/v2/groups", []string{berthv1connect.AppServiceListAppsProcedure}},
	{"GET", "/v2/groups/{id}", []string{berthv1connect.AppServiceListAppsProcedure}},
	{"POST", "/v2/groups", []string{berthv1connect.AppServiceCreateAppProcedure}},
	{"POST", "/v2/groups/{id}", []string{berthv1connect.AppServiceCreateAppProcedure}},
	{"PUT", "/v2/groups", []string{berthv1connect.AppServiceUpdateAppProcedure, berthv1connect.AppServiceCreateAppProcedure}},
	{"PUT", "/v2/groups/{id}", []string{berthv1connect.AppServiceUpdateAppProcedure, berthv1connect.AppServiceCreateAppProcedure}},
	{"DELETE", "/v2/groups/{id}", []string{berthv1connect.AppServiceListAppsProcedure, berthv1connect.AppServiceDeleteAppProcedure}},
	{"GET", "/v2/queue", []string{berthv1connect.TaskServiceListTasksProcedure, berthv1connect.AppServiceListAppsProcedure, berthv1connect.AppServiceGetQueueProcedure}},
	{"DELETE", "/v2/queue/{id}/delay", []string{berthv1connect.AppServiceResetDelayProcedure}},
	{"GET", "/v2/info", []string{berthv1connect.ClusterServiceLeaderProcedure}},
	{"GET", "/v2/leader", []string{berthv1connect.ClusterServiceLeaderProcedure}},
	{"DELETE", "/v2/leader", []string{berthv1connect.ClusterServiceTransferLeadershipProcedure}},
	{"GET", "/v2/events", []string{berthv1connect.EventServiceStreamEventsProcedure}},
}

// forwardedHeaders are copied from a REST request to the Connect calls it
// makes, so that credentials reach the Connect interceptors.
var forwardedHeaders = []string{"Authorization"}

// call prepares a Connect request for a REST request r.
func call[T any](r *http.Request, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	for _, h := range forwardedHeaders {
		if v := r.Header.Get(h); v != "" {
			req.Header().Set(h, v)
		}
	}
	for k, vs := range r.Header {
		if strings.HasPrefix(k, "X-Berth-") {
			req.Header()[k] = vs
		}
	}
	return req
}

// serve routes a request. App ids contain slashes, so /v2/apps/... is
// split by its known suffixes (as Marathon does).
func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			a.log.Error("panic in REST handler", "method", r.Method, "path", r.URL.Path, "panic", p)
			writeMessage(w, http.StatusInternalServerError, fmt.Sprintf("internal error in %s %s", r.Method, r.URL.Path))
		}
	}()
	r = r.WithContext(withRemoteAddr(r.Context(), r.RemoteAddr))
	// Ids and query values become protobuf strings, which must be UTF-8:
	// say so instead of failing to encode the Connect call.
	if !utf8.ValidString(r.URL.Path) {
		writeMessage(w, http.StatusBadRequest, fmt.Sprintf("path %q is not valid UTF-8", r.URL.Path))
		return
	}
	if q, err := url.QueryUnescape(r.URL.RawQuery); err == nil && !utf8.ValidString(q) {
		writeMessage(w, http.StatusBadRequest, fmt.Sprintf("query %q is not valid UTF-8", r.URL.RawQuery))
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/ping":
		a.ping(w, r)
	case p == "/v2/apps":
		a.routeApps(w, r)
	case strings.HasPrefix(p, "/v2/apps/"):
		a.routeApp(w, r, strings.TrimPrefix(p, "/v2/apps"))
	case p == "/v2/tasks" && r.Method == http.MethodGet:
		a.listAllTasks(w, r)
	case p == "/v2/tasks/delete" && r.Method == http.MethodPost:
		a.deleteTasks(w, r)
	case p == "/v2/deployments" && r.Method == http.MethodGet:
		a.listDeployments(w, r)
	case strings.HasPrefix(p, "/v2/deployments/") && r.Method == http.MethodDelete:
		a.deleteDeployment(w, r, strings.TrimPrefix(p, "/v2/deployments/"))
	case p == "/v2/groups" || strings.HasPrefix(p, "/v2/groups/"):
		a.routeGroups(w, r, strings.TrimPrefix(p, "/v2/groups"))
	case p == "/v2/queue" && r.Method == http.MethodGet:
		a.queue(w, r)
	case strings.HasPrefix(p, "/v2/queue/") && strings.HasSuffix(p, "/delay") && r.Method == http.MethodDelete:
		a.resetDelay(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/v2/queue"), "/delay"))
	case p == "/v2/info" && r.Method == http.MethodGet:
		a.info(w, r)
	case p == "/v2/leader":
		a.leader(w, r)
	case p == "/v2/events" && r.Method == http.MethodGet:
		a.streamEvents(w, r)
	default:
		writeMessage(w, http.StatusNotFound, fmt.Sprintf("URI not found: %s %s", r.Method, r.URL.Path))
	}
}

func (a *API) routeApps(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		a.listApps(w, r)
	case http.MethodPost:
		a.createApp(w, r)
	case http.MethodPut, http.MethodPatch:
		a.updateApps(w, r)
	default:
		methodNotAllowed(w, r)
	}
}

// routeApp routes /v2/apps/{id}[/restart|/tasks[/{taskId}]|/versions[/{v}]].
func (a *API) routeApp(w http.ResponseWriter, r *http.Request, rest string) {
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	n := len(segs)
	id := func(k int) string { return appmodel.NormalizeID("/" + strings.Join(segs[:n-k], "/")) }
	switch {
	case segs[n-1] == "*" && r.Method == http.MethodGet:
		a.getGroupApps(w, r, id(1))
	case n >= 2 && segs[n-2] == "*" && segs[n-1] == "tasks" && r.Method == http.MethodGet:
		a.groupTasks(w, r, id(2))
	case n >= 2 && segs[n-1] == "restart" && r.Method == http.MethodPost:
		a.restartApp(w, r, id(1))
	case n >= 2 && segs[n-1] == "tasks" && r.Method == http.MethodGet:
		a.appTasks(w, r, id(1))
	case n >= 2 && segs[n-1] == "tasks" && r.Method == http.MethodDelete:
		a.killAppTasks(w, r, id(1))
	case n >= 3 && segs[n-2] == "tasks" && r.Method == http.MethodDelete:
		a.killAppTask(w, r, id(2), segs[n-1])
	case n >= 2 && segs[n-1] == "versions" && r.Method == http.MethodGet:
		a.appVersions(w, r, id(1))
	case n >= 3 && segs[n-2] == "versions" && r.Method == http.MethodGet:
		a.appVersion(w, r, id(2), segs[n-1])
	default:
		switch r.Method {
		case http.MethodGet:
			a.getApp(w, r, id(0))
		case http.MethodPut:
			a.putApp(w, r, id(0), false)
		case http.MethodPatch:
			a.putApp(w, r, id(0), true)
		case http.MethodDelete:
			a.deleteApp(w, r, id(0))
		default:
			methodNotAllowed(w, r)
		}
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeMessage(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path))
}

// ping answers "pong", as text unless JSON is asked for.
func (a *API) ping(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, http.StatusOK, "pong")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "pong\n")
}

// writeJSON writes v as the JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, fmt.Appendf(nil, `{"message":%q}`, "encode response: "+err.Error())
	}
	writeRaw(w, status, b)
}

// writeRaw writes an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// message is Marathon's plain error body.
type message struct {
	Message string `json:"message"`
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, message{msg})
}

// detail is one entry of a 422 answer: a JSON path and its errors.
type detail struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

// invalidBody is Marathon's 422 body.
type invalidBody struct {
	Message string   `json:"message"`
	Details []detail `json:"details"`
}

// JSONPath turns a Berth field path (container.volumes[0].persistent.size)
// into Marathon's (/container/volumes(0)/persistent/size); prefix is
// prepended (e.g. "/apps(2)" for an app of a group).
func JSONPath(prefix, field string) string {
	if field == "" || field == "app" {
		if prefix == "" {
			return "/"
		}
		return prefix
	}
	field = strings.NewReplacer("[", "(", "]", ")", ".", "/").Replace(field)
	return prefix + "/" + field
}

// violationDetails groups violations by path, one entry per path (as
// Marathon answers).
func violationDetails(prefix string, vs []appmodel.Violation) []detail {
	var out []detail
	index := map[string]int{}
	for _, v := range vs {
		p := JSONPath(prefix, v.Field)
		i, ok := index[p]
		if !ok {
			i = len(out)
			index[p] = i
			out = append(out, detail{Path: p, Errors: nil})
		}
		out[i].Errors = append(out[i].Errors, v.Description)
	}
	return out
}

// writeViolations answers 422 "Object is not valid".
func writeViolations(w http.ResponseWriter, prefix string, vs []appmodel.Violation) {
	writeJSON(w, http.StatusUnprocessableEntity, invalidBody{Message: "Object is not valid", Details: violationDetails(prefix, vs)})
}

// maxBody bounds request bodies (an app is at most appmodel.MaxBytes; a
// group or a batch a few of them).
const maxBody = 8 << 20

// readBody reads a request body, answering 400 if it cannot.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "read request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// parseApp parses one Marathon app definition; on failure it answers
// Marathon's error (422 naming each path that does not fit the schema,
// 400 for text that is not JSON) and returns nil.
func parseApp(w http.ResponseWriter, data []byte, prefix string) *v1.App {
	app, err := appmodel.Parse(data)
	if err == nil {
		return app
	}
	var pe *appmodel.ParseError
	if errors.As(err, &pe) {
		writeJSON(w, http.StatusUnprocessableEntity, invalidBody{Message: "Invalid JSON", Details: violationDetails(prefix, pe.Problems)})
		return nil
	}
	if errors.Is(err, appmodel.ErrTooLarge) {
		writeMessage(w, http.StatusRequestEntityTooLarge, err.Error())
		return nil
	}
	writeJSON(w, http.StatusBadRequest, struct {
		Message string `json:"message"`
		Details string `json:"details"`
	}{"Invalid JSON", err.Error()})
	return nil
}

// boolParam reads a boolean query parameter (true/false in any case, 1/0).
func boolParam(r *http.Request, name string, def bool) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		return false, fmt.Errorf("query parameter %s: %q is not true or false", name, v)
	}
	return b, nil
}

// boolParams reads several boolean query parameters, answering 400 for a
// malformed one.
func boolParams(w http.ResponseWriter, r *http.Request, defs map[string]bool) (map[string]bool, bool) {
	out := map[string]bool{}
	for name, def := range defs {
		b, err := boolParam(r, name, def)
		if err != nil {
			writeMessage(w, http.StatusBadRequest, err.Error())
			return nil, false
		}
		out[name] = b
	}
	return out, true
}

// failure describes what a request was about, to word Marathon's errors.
type failure struct {
	// notFound is the 404 message ("App '/x' does not exist").
	notFound string
	// apps are the apps the request changes (for a 409's blocking
	// deployments).
	apps []string
	// prefix is put before violation paths.
	prefix string
}

func appNotFound(id string) string { return fmt.Sprintf("App '%s' does not exist", id) }

// writeError answers a failed Connect call in Marathon's shape.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error, f failure) {
	code := connect.CodeOf(err)
	msg := err.Error()
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		msg = cerr.Message()
	}
	switch code {
	case connect.CodeInvalidArgument:
		if vs := rpc.ViolationsFromError(err); len(vs) > 0 {
			writeViolations(w, f.prefix, vs)
			return
		}
		writeMessage(w, http.StatusUnprocessableEntity, msg)
	case connect.CodeNotFound:
		if f.notFound != "" {
			msg = f.notFound
		}
		writeMessage(w, http.StatusNotFound, msg)
	case connect.CodeAlreadyExists:
		if len(f.apps) == 1 {
			msg = fmt.Sprintf("An app with id [%s] already exists.", f.apps[0])
		}
		writeMessage(w, http.StatusConflict, msg)
	case connect.CodeFailedPrecondition, connect.CodeAborted:
		a.writeConflict(w, r, msg, f.apps)
	case connect.CodePermissionDenied:
		writeMessage(w, http.StatusForbidden, msg)
	case connect.CodeUnauthenticated:
		writeMessage(w, http.StatusUnauthorized, msg)
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled:
		writeMessage(w, http.StatusServiceUnavailable, msg)
	case connect.CodeResourceExhausted:
		writeMessage(w, http.StatusRequestEntityTooLarge, msg)
	case connect.CodeUnimplemented:
		writeMessage(w, http.StatusNotImplemented, msg)
	default:
		a.log.Warn("rest call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeMessage(w, http.StatusInternalServerError, msg)
	}
}

// lockedBody is Marathon's 409 for an app held by a deployment.
type lockedBody struct {
	Message     string       `json:"message"`
	Deployments []deployment `json:"deployments"`
}

type deployment struct {
	ID string `json:"id"`
}

// writeConflict answers 409: with the running deployments that hold the
// request's apps, in Marathon's locked shape, or with msg alone.
func (a *API) writeConflict(w http.ResponseWriter, r *http.Request, msg string, apps []string) {
	var held []deployment
	if len(apps) > 0 {
		res, err := a.deployments.ListDeployments(r.Context(), call(r, &v1.ListDeploymentsRequest{}))
		if err == nil {
			for _, d := range res.Msg.GetDeployments() {
				for _, app := range d.GetAffectedApps() {
					if contains(apps, app) {
						held = append(held, deployment{d.GetId()})
						break
					}
				}
			}
		}
	}
	if len(held) == 0 {
		writeMessage(w, http.StatusConflict, msg)
		return
	}
	writeJSON(w, http.StatusConflict, lockedBody{
		Message:     fmt.Sprintf("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/%s'.", held[0].ID),
		Deployments: held,
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deploymentResult is Marathon's answer to a write that starts a
// deployment.
type deploymentResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

// writeDeployment answers {deploymentId, version} with the
// Marathon-Deployment-Id header. An empty version is read from the
// deployment.
func (a *API) writeDeployment(w http.ResponseWriter, r *http.Request, status int, id, version string) {
	if version == "" && id != "" {
		if res, err := a.deployments.GetDeployment(r.Context(), call(r, &v1.GetDeploymentRequest{Id: id})); err == nil {
			version = res.Msg.GetDeployment().GetVersion()
		}
	}
	if id != "" {
		w.Header().Set("Marathon-Deployment-Id", id)
	}
	writeJSON(w, status, deploymentResult{DeploymentID: id, Version: version})
}
