package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdCluster is n embedded etcd members in this process, on loopback,
// each with its own data directory (WAL and bbolt on disk, fsync on).
type etcdCluster struct {
	members []*embed.Etcd
	clients []string // client URL of each member
}

// freePort asks the kernel for a free loopback port. etcd's embed API
// takes URLs, not listeners, so the port is closed before etcd binds it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(ctx context.Context, dir string, n int) (*etcdCluster, error) {
	type urls struct{ peer, client url.URL }
	addrs := make([]urls, n)
	var initial []string
	for i := range n {
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = urls{
			peer:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pp)},
			client: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", cp)},
		}
		initial = append(initial, fmt.Sprintf("etcd%d=%s", i, addrs[i].peer.String()))
	}
	c := &etcdCluster{}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("etcd%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenPeerUrls = []url.URL{addrs[i].peer}
		cfg.AdvertisePeerUrls = []url.URL{addrs[i].peer}
		cfg.ListenClientUrls = []url.URL{addrs[i].client}
		cfg.AdvertiseClientUrls = []url.URL{addrs[i].client}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "berth-bench"
		cfg.LogLevel = "error"
		// Its shutdown logs "server closed" errors: keep the table readable.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("start etcd%d: %w", i, err)
		}
		c.members = append(c.members, e)
		c.clients = append(c.clients, addrs[i].client.String())
	}
	for _, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.stop()
			return nil, err
		case <-time.After(2 * time.Minute):
			c.stop()
			return nil, errors.New("etcd: not ready after 2m")
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
	// Ready means a leader was known once; wait until every member knows
	// the same one.
	if err := c.waitAgreed(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitAgreed waits until every member names the same leader.
func (c *etcdCluster) waitAgreed(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for !c.agreed() {
		if time.Now().After(deadline) {
			return errors.New("etcd: no agreed leader after 2m")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (c *etcdCluster) agreed() bool {
	lead := c.members[0].Server.Leader()
	for _, e := range c.members {
		if l := e.Server.Leader(); l == 0 || l != lead {
			return false
		}
	}
	return true
}

func (c *etcdCluster) stop() {
	for _, e := range c.members {
		e.Close()
	}
}

// leader and follower return a member's client URL.
func (c *etcdCluster) leader() string {
	for i, e := range c.members {
		if e.Server.Leader() == e.Server.MemberID() {
			return c.clients[i]
		}
	}
	return c.clients[0]
}

func (c *etcdCluster) follower() string {
	for i, e := range c.members {
		if e.Server.Leader() != e.Server.MemberID() {
			return c.clients[i]
		}
	}
	return c.clients[0]
}
