package appmodel

import (
	"strings"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Port is one host port an app's task needs.
type Port struct {
	// Name is the port's name, if any.
	Name string
	// Fixed is the required host port; 0 takes any port from the offer.
	Fixed uint32
	// ServicePort is the declared port number, exported as PORT_<n>.
	ServicePort uint32
	// ContainerPort is the port inside the container (port mappings).
	ContainerPort uint32
	// Protocol is tcp, udp or both.
	Protocol string
}

// Ports lists the host ports of an app: its port mappings when it has any,
// else its port definitions (fixed only with requirePorts), else the legacy
// ports list. (Canonicalize gives a host-network app Marathon's default of
// one dynamic port.)
func Ports(a *v1.App) []Port {
	mappings := a.GetContainer().GetPortMappings()
	if len(mappings) == 0 {
		mappings = a.GetContainer().GetDocker().GetPortMappings()
	}
	if len(mappings) > 0 {
		userNet := false
		for _, n := range a.GetNetworks() {
			if strings.EqualFold(n.GetMode(), NetworkModeContainer) {
				userNet = true
			}
		}
		var out []Port
		for _, m := range mappings {
			if m.HostPort == nil && userNet {
				continue // container network, no host port asked for
			}
			out = append(out, Port{
				Name:          m.GetName(),
				Fixed:         uint32(max(m.GetHostPort(), 0)),
				ServicePort:   uint32(max(m.GetServicePort(), 0)),
				ContainerPort: uint32(max(m.GetContainerPort(), 0)),
				Protocol:      m.GetProtocol(),
			})
		}
		return out
	}
	if defs := a.GetPortDefinitions(); len(defs) > 0 {
		out := make([]Port, 0, len(defs))
		for _, d := range defs {
			ps := Port{Name: d.GetName(), ServicePort: uint32(max(d.GetPort(), 0)), Protocol: d.GetProtocol()}
			if a.GetRequirePorts() {
				ps.Fixed = ps.ServicePort
			}
			out = append(out, ps)
		}
		return out
	}
	if ports := a.GetPorts(); len(ports) > 0 {
		out := make([]Port, 0, len(ports))
		for _, p := range ports {
			ps := Port{ServicePort: uint32(max(p, 0))}
			if a.GetRequirePorts() {
				ps.Fixed = ps.ServicePort
			}
			out = append(out, ps)
		}
		return out
	}
	return nil
}
