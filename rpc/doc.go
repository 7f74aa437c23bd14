// Package rpc is the Connect RPC API of a Berth server: the service handlers
// (apps, tasks, deployments, events, cluster), one write path that every
// write handler goes through, transparent forwarding of writes to the Raft
// leader, and the HTTP/1.1 + h2c server that carries the Connect, gRPC and
// gRPC-Web protocols on one port. App definitions are parsed, canonicalized
// and validated by package appmodel.
package rpc
