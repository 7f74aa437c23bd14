package mesoslocal

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// Config configures an embedded Mesos master with its agents.
type Config struct {
	// Listen is the master's HTTP address, e.g. "127.0.0.1:5050". A zero port
	// picks a free one; Addr reports the bound address.
	Listen string
	// WorkDir holds the agents' checkpoints, sandboxes and persistent
	// volumes. Required unless Simulate is set (then empty means in memory).
	WorkDir string
	// Agents is the number of agents to run (default 1). Agents found in the
	// work dir's checkpoints always come back, even if there are more.
	Agents int
	// AgentResources is each agent's total, in the Mesos --resources syntax
	// ("cpus:4;mem:8192;disk:20000;ports:[31000-32000]"). Default: this
	// machine's CPUs, memory and free disk shared among the agents.
	AgentResources string
	// Simulate runs tasks without processes (see SimTaskDuration).
	Simulate bool
	// Logger receives structured logs, including one "operation applied"
	// line per operation (with its resources at debug level). Default:
	// slog.Default().
	Logger *slog.Logger

	// Hostname is the agents' hostname in offers (default "127.0.0.1", or
	// the host part of Listen when it names a specific address).
	Hostname string
	// DistinctHosts gives each new agent its own loopback address as its
	// hostname: agent i is 127.0.0.(i+1) (Linux routes all of 127/8 to the
	// loopback interface), so that constraints on the hostname
	// (hostname:UNIQUE) spread instances and each task binds its agent's
	// address ($HOST). Hostname is then ignored.
	DistinctHosts bool
	// AgentAttributes are the agents' attributes in the Mesos --attributes
	// syntax ("rack:r1;zone:a"). Several specs separated by '|' are given to
	// the agents in turn: agent i gets spec i mod n
	// ("rack:r1;zone:a|rack:r2;zone:b").
	AgentAttributes string
	// AllocationInterval is the offer batching interval (default 1s).
	AllocationInterval time.Duration
	// HeartbeatInterval is the HEARTBEAT period on event streams (default 15s).
	HeartbeatInterval time.Duration
	// DefaultRefuse is the filter for declined or unused resources when a
	// call carries no refuse_seconds or a negative one (Mesos: 5s). Filters
	// last at least AllocationInterval, as in Mesos.
	DefaultRefuse time.Duration
	// StatusUpdateRetry is the first resend interval of an unacknowledged
	// status update; it doubles up to StatusUpdateRetryMax (10s / 10min).
	StatusUpdateRetry    time.Duration
	StatusUpdateRetryMax time.Duration
	// KillGracePeriod is the SIGTERM→SIGKILL delay when a task has no kill
	// policy (Mesos: 3s).
	KillGracePeriod time.Duration
	// SimTaskDuration is how long a simulated task runs before it finishes;
	// zero means it runs until killed.
	SimTaskDuration time.Duration
	// SimTaskFinalState is the state a simulated task ends in after
	// SimTaskDuration (default TASK_FINISHED).
	SimTaskFinalState mesos.TaskState
	// KillTasksOnClose makes Close kill every task process. By default, as
	// a Mesos agent restart, the tasks of checkpointing frameworks keep
	// running and the next start on the same work dir adopts them.
	KillTasksOnClose bool
	// MaxOperationRecords bounds the history kept for Operations()
	// (default 100000; the oldest are dropped).
	MaxOperationRecords int
	// FaultInjection serves /fault/partition and /fault/heal, which cut an
	// agent off the master and reconnect it (partition.go): a facility for
	// tests and demos, not a Mesos API. Off by default.
	FaultInjection bool
	// AgentPingTimeout is how long the master waits for a partitioned
	// agent before it marks it unreachable: Mesos' agent_ping_timeout ×
	// max_agent_ping_timeouts (default 15s × 5 = 75s).
	AgentPingTimeout time.Duration
}

const (
	defaultListen       = "127.0.0.1:5050"
	mesosVersion        = "1.11.0"
	defaultPortsPerSlot = 1000
	// defaultAgentPingTimeout is Mesos' agent_ping_timeout (15s) times
	// max_agent_ping_timeouts (5).
	defaultAgentPingTimeout = 75 * time.Second
)

func (cfg *Config) withDefaults() (Config, error) {
	c := *cfg
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return c, fmt.Errorf("listen %q: %v (want HOST:PORT)", c.Listen, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return c, fmt.Errorf("listen %q: port %q is not a number between 0 and 65535", c.Listen, port)
	}
	if c.Agents < 0 {
		return c, fmt.Errorf("agents: %d must not be negative", c.Agents)
	}
	if c.Agents == 0 {
		c.Agents = 1
	}
	if !c.Simulate && c.Agents > 200 {
		return c, fmt.Errorf("agents: %d is too many agents running real processes (max 200; use simulation mode for more)", c.Agents)
	}
	if c.WorkDir == "" && !c.Simulate {
		return c, fmt.Errorf("work dir: must be set (agents keep sandboxes, volumes and checkpoints there)")
	}
	if c.WorkDir != "" {
		// Tasks run inside their sandboxes: a relative path handed to them
		// (MESOS_SANDBOX, volume links) would no longer resolve there.
		abs, err := filepath.Abs(c.WorkDir)
		if err != nil {
			return c, fmt.Errorf("work dir %q: %v", c.WorkDir, err)
		}
		c.WorkDir = abs
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AgentPingTimeout < 0 {
		return c, fmt.Errorf("agent ping timeout: %s must not be negative", c.AgentPingTimeout)
	}
	if c.AgentPingTimeout == 0 {
		c.AgentPingTimeout = defaultAgentPingTimeout
	}
	if c.Hostname == "" {
		c.Hostname = "127.0.0.1"
		if ip := net.ParseIP(host); (ip != nil && !ip.IsUnspecified()) || (ip == nil && host != "") {
			c.Hostname = host
		}
	}
	for name, d := range map[string]*time.Duration{
		"allocation interval": &c.AllocationInterval, "heartbeat interval": &c.HeartbeatInterval,
		"default refuse": &c.DefaultRefuse, "status update retry": &c.StatusUpdateRetry,
		"status update retry max": &c.StatusUpdateRetryMax, "kill grace period": &c.KillGracePeriod,
		"simulated task duration": &c.SimTaskDuration,
	} {
		if *d < 0 {
			return c, fmt.Errorf("%s: %v must not be negative", name, *d)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AllocationInterval, time.Second)
	def(&c.HeartbeatInterval, 15*time.Second)
	def(&c.DefaultRefuse, 5*time.Second)
	def(&c.StatusUpdateRetry, 10*time.Second)
	def(&c.StatusUpdateRetryMax, 10*time.Minute)
	def(&c.KillGracePeriod, 3*time.Second)
	if c.StatusUpdateRetryMax < c.StatusUpdateRetry {
		c.StatusUpdateRetryMax = c.StatusUpdateRetry
	}
	if c.SimTaskFinalState == 0 {
		c.SimTaskFinalState = mesos.TASK_FINISHED
	}
	switch c.SimTaskFinalState {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR:
	default:
		return c, fmt.Errorf("simulated task final state: %v is not a terminal state", c.SimTaskFinalState)
	}
	if c.MaxOperationRecords <= 0 {
		c.MaxOperationRecords = 100000
	}
	if c.AgentResources != "" {
		if _, err := parseResources(c.AgentResources); err != nil {
			return c, fmt.Errorf("agent resources: %w", err)
		}
	}
	if c.DistinctHosts && c.Agents > 254*254 {
		return c, fmt.Errorf("agents: %d is more than the loopback addresses of distinct hosts allow", c.Agents)
	}
	if _, err := parseAttributeSpecs(c.AgentAttributes); err != nil {
		return c, fmt.Errorf("agent attributes: %w", err)
	}
	return c, nil
}

// hostnameFor is the hostname of the agent with index i.
func (c *Config) hostnameFor(i int) string {
	if !c.DistinctHosts {
		return c.Hostname
	}
	return loopbackAddr(i)
}

// loopbackAddr is the i-th loopback address: 127.0.0.1, 127.0.0.2, ...,
// 127.0.0.254, 127.0.1.1, ...
func loopbackAddr(i int) string {
	return fmt.Sprintf("127.0.%d.%d", i/254, i%254+1)
}

// attributesFor returns the attributes of the agent with index i, false
// when none are configured.
func (c *Config) attributesFor(i int) ([]mesos.Attribute, bool) {
	specs, _ := parseAttributeSpecs(c.AgentAttributes)
	if len(specs) == 0 {
		return nil, false
	}
	return specs[i%len(specs)], true
}

// parseAttributeSpecs parses '|'-separated attribute specs.
func parseAttributeSpecs(s string) ([][]mesos.Attribute, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out [][]mesos.Attribute
	for i, spec := range strings.Split(s, "|") {
		attrs, err := parseAttributes(spec)
		if err != nil {
			return nil, fmt.Errorf("spec %d %q: %w", i+1, spec, err)
		}
		out = append(out, attrs)
	}
	return out, nil
}

// parseAttributes parses the Mesos agent --attributes syntax:
// "name:value;name:value". A value is a scalar when it is a number, ranges
// as "[a-b,c-d]", a set as "{a,b}", else text.
func parseAttributes(spec string) ([]mesos.Attribute, error) {
	var out []mesos.Attribute
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("attribute %q: expected name:value", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("attribute %q: %s given twice", part, name)
		}
		seen[name] = true
		a := mesos.Attribute{Name: name}
		switch {
		case strings.HasPrefix(value, "["):
			r, err := parseResources("x:" + value)
			if err != nil || len(r) != 1 || r[0].Ranges == nil {
				return nil, fmt.Errorf("attribute %q: bad ranges", part)
			}
			a.Type, a.Ranges = mesos.RANGES, r[0].Ranges
		case strings.HasPrefix(value, "{"):
			if !strings.HasSuffix(value, "}") {
				return nil, fmt.Errorf("attribute %q: a set must end with '}'", part)
			}
			set := &mesos.Value_Set{}
			for _, it := range strings.Split(value[1:len(value)-1], ",") {
				if it = strings.TrimSpace(it); it != "" {
					set.Item = append(set.Item, it)
				}
			}
			a.Type, a.Set = mesos.SET, set
		default:
			if f, err := strconv.ParseFloat(value, 64); err == nil {
				a.Type, a.Scalar = mesos.SCALAR, &mesos.Value_Scalar{Value: f}
			} else {
				a.Type, a.Text = mesos.TEXT, &mesos.Value_Text{Value: value}
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// agentResources returns the total for the i-th agent.
func (c *Cluster) agentResources(i int) (rset, error) {
	if c.cfg.AgentResources != "" {
		return parseResources(c.cfg.AgentResources)
	}
	n := float64(c.cfg.Agents)
	cpus := float64(runtime.NumCPU()) / n
	mem := float64(machineMemoryMB()) / n
	disk := float64(freeDiskMB(c.cfg.WorkDir)) / n
	// Agents on one machine share its ports: give each its own slice of
	// the default range so tasks on different agents never collide.
	lo := 31000 + i*defaultPortsPerSlot
	if c.cfg.Simulate || lo+defaultPortsPerSlot > 65535 {
		lo = 31000
	}
	spec := fmt.Sprintf("cpus:%.3f;mem:%.0f;disk:%.0f;ports:[%d-%d]", cpus, mem, disk, lo, lo+defaultPortsPerSlot-1)
	return parseResources(spec)
}

// machineMemoryMB is total memory minus what Mesos keeps for the system
// (min(1 GiB, half)).
func machineMemoryMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 4096
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				break
			}
			mb := kb / 1024
			return mb - min(1024, mb/2)
		}
	}
	return 4096
}

// freeDiskMB is the work dir's file system size minus min(5 GiB, half), as
// the Mesos agent computes its default disk.
func freeDiskMB(dir string) int64 {
	if dir == "" {
		dir = "."
	}
	for d := dir; ; {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d, &st); err == nil {
			mb := int64(st.Blocks) * int64(st.Bsize) / (1 << 20)
			return mb - min(5120, mb/2)
		}
		parent := d[:max(strings.LastIndex(d, "/"), 0)]
		if parent == d || parent == "" {
			return 10240
		}
		d = parent
	}
}
