package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// PeersFile is the name, in the data dir's raft directory, of the file an
// operator writes to recover from an outage that lost a majority of the
// servers for good (as Consul's and Nomad's peers.json): on start, the
// server replaces its Raft configuration with the servers the file lists,
// keeping every entry it holds, and renames the file so that it applies
// once. Write the same file on every surviving server, then start them.
//
// Its format is hashicorp/raft's configuration JSON:
//
//	[{"id": "berth-1", "address": "10.0.0.11:7071", "non_voter": false}]
const PeersFile = "peers.json"

// recoverFromPeersFile applies PeersFile, if there is one, before Raft
// starts. The survivors keep their log and snapshots, so the recovered
// cluster has every write they hold and the same Mesos framework id: the
// new leader re-subscribes as the same framework and running tasks are
// untouched.
func (n *Node) recoverFromPeersFile(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	if n.cfg.InMemory {
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, "raft", PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("recovery file %s: %w", path, err)
	}
	self := false
	for _, s := range conf.Servers {
		self = self || s.ID == rc.LocalID
	}
	if !self {
		return fmt.Errorf("recovery file %s: it does not list this server (%s); every server it lists must be one of the survivors that read it", path, rc.LocalID)
	}
	n.log.Warn("recovering the raft configuration from the recovery file: the servers it lists become the whole cluster", "file", path, "servers", fmt.Sprint(conf.Servers))
	if err := raft.RecoverCluster(rc, n.cfg.FSM, logs, stable, snaps, n.trans, conf); err != nil {
		return fmt.Errorf("recover the raft configuration from %s: %w", path, err)
	}
	if err := os.Rename(path, path+".applied"); err != nil {
		return fmt.Errorf("recovery done, but rename %s (remove it before the next start): %w", path, err)
	}
	n.log.Warn("raft configuration recovered", "file", path+".applied")
	return nil
}
