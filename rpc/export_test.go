package rpc

import "connectrpc.com/connect"

// SnapshotCodecForTest is the codec WithSnapshotCodec installs.
func SnapshotCodecForTest() connect.Codec { return snapshotCodec{} }
