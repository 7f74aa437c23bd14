package scheduler

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/berth-dev/berth/appmodel"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// pickPorts chooses host ports for specs from available ranges: fixed ports
// must be available, dynamic ones take the lowest free port. It returns nil,
// false when the ranges cannot satisfy the specs.
func pickPorts(specs []appmodel.Port, avail []mesos.Value_Range) ([]uint32, []mesos.Value_Range, bool) {
	out := make([]uint32, len(specs))
	rs := avail
	for i, s := range specs {
		if s.Fixed == 0 {
			continue
		}
		if !rangesContain(rs, uint64(s.Fixed)) {
			return nil, avail, false
		}
		out[i] = s.Fixed
		rs = removePort(rs, uint64(s.Fixed))
	}
	for i, s := range specs {
		if s.Fixed != 0 {
			continue
		}
		if len(rs) == 0 {
			return nil, avail, false
		}
		p := rs[0].Begin
		out[i] = uint32(p)
		rs = removePort(rs, p)
	}
	return out, rs, true
}

var nonEnvChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

// taskEnv builds Marathon's task environment, then the app's own env on top.
func taskEnv(a *v1.App, taskID, host string, ports []uint32, specs []appmodel.Port) []mesos.Environment_Variable {
	env := map[string]string{
		"HOST":                         host,
		"MESOS_TASK_ID":                taskID,
		"MARATHON_APP_ID":              a.GetId(),
		"MARATHON_APP_VERSION":         a.GetVersion(),
		"MARATHON_APP_RESOURCE_CPUS":   formatFloat(appmodel.CPUs(a)),
		"MARATHON_APP_RESOURCE_MEM":    formatFloat(appmodel.Mem(a)),
		"MARATHON_APP_RESOURCE_DISK":   formatFloat(appmodel.Disk(a)),
		"MARATHON_APP_RESOURCE_GPUS":   strconv.Itoa(int(a.GetGpus())),
		"MARATHON_APP_DOCKER_IMAGE":    a.GetContainer().GetDocker().GetImage(),
		"MARATHON_APP_LABELS":          "",
		"MARATHON_APP_CONTAINER_PORTS": "",
	}
	if a.GetContainer().GetDocker().GetImage() == "" {
		delete(env, "MARATHON_APP_DOCKER_IMAGE")
	}
	var labelKeys []string
	for k, v := range a.GetLabels() {
		k2 := strings.ToUpper(nonEnvChars.ReplaceAllString(k, "_"))
		env["MARATHON_APP_LABEL_"+k2] = v
		labelKeys = append(labelKeys, k2)
	}
	sort.Strings(labelKeys)
	env["MARATHON_APP_LABELS"] = strings.Join(labelKeys, " ")
	if len(labelKeys) == 0 {
		delete(env, "MARATHON_APP_LABELS")
	}
	strs := make([]string, len(ports))
	var cports []string
	for i, p := range ports {
		s := strconv.Itoa(int(p))
		strs[i] = s
		env["PORT"+strconv.Itoa(i)] = s
		if i < len(specs) {
			if n := specs[i].Name; n != "" {
				env["PORT_"+strings.ToUpper(nonEnvChars.ReplaceAllString(n, "_"))] = s
			}
			if sp := specs[i].ServicePort; sp != 0 {
				env["PORT_"+strconv.Itoa(int(sp))] = s
			}
			if cp := specs[i].ContainerPort; cp != 0 {
				cports = append(cports, strconv.Itoa(int(cp)))
			}
		}
	}
	if len(ports) > 0 {
		env["PORT"] = strs[0]
		env["PORTS"] = strings.Join(strs, ",")
	}
	if len(cports) > 0 {
		env["MARATHON_APP_CONTAINER_PORTS"] = strings.Join(cports, ",")
	} else {
		delete(env, "MARATHON_APP_CONTAINER_PORTS")
	}
	// The app's own variables: strings, or references to the app's secrets
	// that the agent resolves (Mesos secrets of type REFERENCE, as Marathon
	// passes them; Berth never holds a secret's value).
	secrets := map[string]string{}
	splitEnv(a.GetEnv(), a.GetSecrets(), env, secrets)
	return mesosEnv(env, secrets)
}

// splitEnv adds variables to env (plain values) and secrets (variable →
// secret source), a later one replacing an earlier one of the same name.
func splitEnv(vars map[string]*v1.EnvValue, appSecrets map[string]*v1.Secret, env, secrets map[string]string) {
	for k, v := range vars {
		switch kind := v.GetKind().(type) {
		case *v1.EnvValue_Value:
			env[k] = kind.Value
			delete(secrets, k)
		case *v1.EnvValue_Secret:
			secrets[k] = appSecrets[kind.Secret].GetSource()
			delete(env, k)
		}
	}
}

// mesosEnv is the Mesos environment of plain and secret variables, sorted.
func mesosEnv(env, secrets map[string]string) []mesos.Environment_Variable {
	keys := make([]string, 0, len(env)+len(secrets))
	for k := range env {
		keys = append(keys, k)
	}
	for k := range secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]mesos.Environment_Variable, 0, len(keys))
	for _, k := range keys {
		if source, ok := secrets[k]; ok {
			out = append(out, mesos.Environment_Variable{Name: k, Type: mesos.Environment_Variable_SECRET.Enum(), Secret: secretReference(source)})
			continue
		}
		out = append(out, mesos.Environment_Variable{Name: k, Value: strPtr(env[k])})
	}
	return out
}

// secretReference is a Mesos secret the agent's secret resolver looks up by
// name.
func secretReference(name string) *mesos.Secret {
	return &mesos.Secret{Type: mesos.Secret_REFERENCE, Reference: &mesos.Secret_Reference{Name: name}}
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// taskName is the Mesos task name: the app id without its leading slash.
func taskName(appID string) string {
	n := strings.Trim(appID, "/")
	if n == "" {
		return "berth-task"
	}
	return n
}

// buildTaskInfo assembles the TaskInfo of one launch. resources are exactly
// the resources the task consumes (unreserved for a stateless app; the
// instance's reserved resources and volumes for a resident one).
func buildTaskInfo(a *v1.App, taskID string, offer *mesos.Offer, resources []mesos.Resource, ports []uint32) (mesos.TaskInfo, error) {
	specs := appmodel.Ports(a)
	ti := mesos.TaskInfo{
		Name:      taskName(a.GetId()),
		TaskID:    mesos.TaskID{Value: taskID},
		AgentID:   offer.AgentID,
		Resources: resources,
	}
	cmd := &mesos.CommandInfo{
		Environment: &mesos.Environment{Variables: taskEnv(a, taskID, offer.Hostname, ports, specs)},
	}
	image := a.GetContainer().GetDocker().GetImage()
	ctype := strings.ToUpper(a.GetContainer().GetType())
	switch {
	case a.Cmd != nil && *a.Cmd != "":
		shell := true
		cmd.Shell = &shell
		cmd.Value = strPtr(*a.Cmd)
	case len(a.GetArgs()) > 0:
		shell := false
		cmd.Shell = &shell
		if image == "" {
			cmd.Value = strPtr(a.GetArgs()[0])
		}
		cmd.Arguments = append([]string(nil), a.GetArgs()...)
	case image != "":
		shell := false
		cmd.Shell = &shell
	default:
		return ti, fmt.Errorf("app %s: cmd, args or container.docker.image is required", a.GetId())
	}
	if a.User != nil && *a.User != "" {
		cmd.User = strPtr(*a.User)
	}
	for _, f := range a.GetFetch() {
		u := mesos.CommandInfo_URI{Value: f.GetUri()}
		if f.Executable != nil {
			u.Executable = boolPtr(*f.Executable)
		}
		if f.Extract != nil {
			u.Extract = boolPtr(*f.Extract)
		}
		if f.Cache != nil {
			u.Cache = boolPtr(*f.Cache)
		}
		if f.GetDestPath() != "" {
			u.OutputFile = strPtr(f.GetDestPath())
		}
		cmd.URIs = append(cmd.URIs, u)
	}
	for _, u := range a.GetUris() {
		cmd.URIs = append(cmd.URIs, mesos.CommandInfo_URI{Value: u})
	}
	ti.Command = cmd

	if ci := containerInfo(a, ctype, image, specs, ports); ci != nil {
		ti.Container = ci
	}
	if hc := mesosHealthCheck(a, ports); hc != nil {
		ti.HealthCheck = hc
	}
	if a.TaskKillGracePeriodSeconds != nil && *a.TaskKillGracePeriodSeconds > 0 {
		ti.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{
			Nanoseconds: int64(*a.TaskKillGracePeriodSeconds) * int64(time.Second),
		}}
	}
	if len(a.GetLabels()) > 0 {
		keys := make([]string, 0, len(a.GetLabels()))
		for k := range a.GetLabels() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		ls := &mesos.Labels{}
		for _, k := range keys {
			ls.Labels = append(ls.Labels, mesos.Label{Key: k, Value: strPtr(a.GetLabels()[k])})
		}
		ti.Labels = ls
	}
	return ti, nil
}

// containerInfo builds the ContainerInfo: DOCKER for Docker apps, MESOS with
// a Docker image for a Mesos container with an image, MESOS for host volumes;
// nil for a plain command task.
func containerInfo(a *v1.App, ctype, image string, specs []appmodel.Port, ports []uint32) *mesos.ContainerInfo {
	var vols []mesos.Volume
	for _, v := range a.GetContainer().GetVolumes() {
		if v.GetPersistent() != nil || v.HostPath == nil {
			continue // persistent volumes travel in the resources
		}
		mode := mesos.RW
		if strings.EqualFold(v.GetMode(), "RO") {
			mode = mesos.RO
		}
		vols = append(vols, mesos.Volume{ContainerPath: v.GetContainerPath(), HostPath: strPtr(v.GetHostPath()), Mode: &mode})
	}
	switch {
	case ctype == "DOCKER":
		t := mesos.ContainerInfo_DOCKER
		d := a.GetContainer().GetDocker()
		di := &mesos.ContainerInfo_DockerInfo{Image: d.GetImage()}
		if nv, ok := mesos.ContainerInfo_DockerInfo_Network_value[appmodel.DockerNetwork(a)]; ok {
			n := mesos.ContainerInfo_DockerInfo_Network(nv)
			di.Network = &n
		}
		if d.Privileged != nil {
			di.Privileged = boolPtr(*d.Privileged)
		}
		if d.ForcePullImage != nil {
			di.ForcePullImage = boolPtr(*d.ForcePullImage)
		}
		for _, p := range d.GetParameters() {
			di.Parameters = append(di.Parameters, mesos.Parameter{Key: p.GetKey(), Value: p.GetValue()})
		}
		if di.Network != nil && *di.Network == mesos.ContainerInfo_DockerInfo_BRIDGE {
			for i, s := range specs {
				if i >= len(ports) {
					break
				}
				proto := s.Protocol
				if proto == "" {
					proto = "tcp"
				}
				di.PortMappings = append(di.PortMappings, mesos.ContainerInfo_DockerInfo_PortMapping{
					HostPort: ports[i], ContainerPort: s.ContainerPort, Protocol: strPtr(proto),
				})
			}
		}
		return &mesos.ContainerInfo{Type: &t, Docker: di, Volumes: vols}
	case image != "":
		t := mesos.ContainerInfo_MESOS
		it := mesos.Image_DOCKER
		img := &mesos.Image_Docker{Name: image}
		if pc := a.GetContainer().GetDocker().GetPullConfig(); pc != nil {
			// Registry credentials: a secret the agent resolves.
			img.Config = secretReference(a.GetSecrets()[pc.GetSecret()].GetSource())
		}
		return &mesos.ContainerInfo{Type: &t, Volumes: vols, Mesos: &mesos.ContainerInfo_MesosInfo{
			Image: &mesos.Image{Type: &it, Docker: img},
		}}
	case len(vols) > 0:
		t := mesos.ContainerInfo_MESOS
		return &mesos.ContainerInfo{Type: &t, Volumes: vols}
	}
	return nil
}

// healthCheckPort resolves the host port a health check targets.
func healthCheckPort(hc *v1.HealthCheck, ports []uint32) (uint32, bool) {
	if hc.Port != nil && *hc.Port > 0 {
		return uint32(*hc.Port), true
	}
	idx := int(hc.GetPortIndex())
	if idx < 0 || idx >= len(ports) {
		return 0, false
	}
	return ports[idx], true
}

// mesosHealthCheck converts the app's first COMMAND or MESOS_* check into a
// Mesos HealthCheck run by the executor; Marathon allows at most one.
func mesosHealthCheck(a *v1.App, ports []uint32) *mesos.HealthCheck {
	for _, hc := range a.GetHealthChecks() {
		proto := appmodel.HealthProtocol(hc)
		if appmodel.IsMarathonCheck(hc) {
			continue
		}
		d := appmodel.HealthCheckWithDefaults(hc)
		out := &mesos.HealthCheck{
			DelaySeconds:        f64Ptr(float64(d.GetDelaySeconds())),
			IntervalSeconds:     f64Ptr(float64(d.GetIntervalSeconds())),
			TimeoutSeconds:      f64Ptr(float64(d.GetTimeoutSeconds())),
			GracePeriodSeconds:  f64Ptr(float64(d.GetGracePeriodSeconds())),
			ConsecutiveFailures: u32Ptr(uint32(max(d.GetMaxConsecutiveFailures(), 0))),
		}
		switch proto {
		case "COMMAND":
			out.Type = mesos.HealthCheck_COMMAND
			out.Command = &mesos.CommandInfo{Value: strPtr(hc.GetCommand().GetValue())}
		case "MESOS_HTTP", "MESOS_HTTPS":
			port, ok := healthCheckPort(hc, ports)
			if !ok {
				continue
			}
			out.Type = mesos.HealthCheck_HTTP
			scheme := "http"
			if proto == "MESOS_HTTPS" {
				scheme = "https"
			}
			path := appmodel.HealthPath(hc)
			out.HTTP = &mesos.HealthCheck_HTTPCheckInfo{Scheme: strPtr(scheme), Port: port, Path: strPtr(path)}
		case "MESOS_TCP":
			port, ok := healthCheckPort(hc, ports)
			if !ok {
				continue
			}
			out.Type = mesos.HealthCheck_TCP
			out.TCP = &mesos.HealthCheck_TCPCheckInfo{Port: port}
		default:
			continue
		}
		return out
	}
	return nil
}

func boolPtr(b bool) *bool      { return &b }
func f64Ptr(f float64) *float64 { return &f }
func u32Ptr(u uint32) *uint32   { return &u }
