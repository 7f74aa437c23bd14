package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// Snapshots of the whole state travel in two ways: whole in one message
// (SaveSnapshot, RestoreSnapshot: older clients) and in chunks
// (SaveSnapshotStream, RestoreSnapshotStream). A snapshot of 100,000
// instances is about 58 MiB: received as one message, connect grew a
// buffer to hold it by doubling and copied it into the message, 1.4 s of
// CPU and 58-120 MiB of transient heap on the server (more through a
// follower, which re-encoded it for the leader). In chunks, each side
// holds one chunk at a time, and the leader reads the upload straight
// into the temporary file cluster.RestoreSnapshot checks it in.

// snapshotChunkBytes is the data size of one SnapshotChunk this package
// sends.
const snapshotChunkBytes = 1 << 20

// SaveSnapshot returns a snapshot of the replicated state, taken on the
// leader once it has applied everything committed before its term: it holds
// every write acknowledged before the call, whichever server received it. A
// follower's store may lag the leader's, so a follower forwards.
func (c *clusterService) SaveSnapshot(ctx context.Context, req *connect.Request[v1.SaveSnapshotRequest]) (*connect.Response[v1.SaveSnapshotResponse], error) {
	msg := req.Msg
	return onLeader(ctx, c.Server, req.Header(), func(ctx context.Context) (*connect.Response[v1.SaveSnapshotResponse], error) {
		if err := c.caughtUp(ctx); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		meta, err := c.clu.SaveSnapshot(ctx, &buf)
		if err != nil {
			return nil, c.saveError(err)
		}
		return connect.NewResponse(&v1.SaveSnapshotResponse{Data: buf.Bytes(), Index: meta.Index, Term: meta.Term}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.SaveSnapshotResponse], error) {
		return pc.cluster.SaveSnapshot(ctx, forwarded(ctx, msg))
	})
}

// saveError maps a failed save on this server: not being the leader (any
// more) sends the call to the new one.
func (c *clusterService) saveError(err error) error {
	if !c.clu.IsLeader() {
		return &notLeaderError{err}
	}
	return connect.NewError(connect.CodeUnavailable, prefixed("save snapshot", err))
}

// SaveSnapshotStream is SaveSnapshot in chunks: the leader writes the
// snapshot file into the stream as raft's snapshot store reads it, and a
// follower relays the leader's stream chunk by chunk. The last message
// carries the index and term, so a client can tell a complete stream.
func (c *clusterService) SaveSnapshotStream(ctx context.Context, req *connect.Request[v1.SaveSnapshotRequest], stream *connect.ServerStream[v1.SnapshotChunk]) error {
	msg := req.Msg
	w := &chunkWriter{send: stream.Send}
	// Once part of the file is sent, a failure cannot be mended by trying
	// again elsewhere: the client would get the start twice.
	broken := func(err error) error {
		return connect.NewError(connect.CodeAborted, fmt.Errorf("save snapshot: the stream broke after %d bytes (save again): %w", w.sent, err))
	}
	// end sends the last message, or fails as refuse says while nothing
	// is sent.
	end := func(meta SnapshotMeta, err error, refuse func(error) error) (struct{}, error) {
		if err == nil {
			err = w.flush()
		}
		switch {
		case err != nil && w.sent > 0:
			return struct{}{}, broken(err)
		case err != nil:
			return struct{}{}, refuse(err)
		}
		return struct{}{}, stream.Send(&v1.SnapshotChunk{Index: meta.Index, Term: meta.Term})
	}
	_, err := leaderCall(ctx, c.Server, req.Header(), 0, func(ctx context.Context) (struct{}, error) {
		w.reset()
		if err := c.caughtUp(ctx); err != nil {
			return struct{}{}, err
		}
		meta, err := c.clu.SaveSnapshot(ctx, w)
		return end(meta, err, c.saveError)
	}, func(ctx context.Context, pc *peerClients) (struct{}, error) {
		w.reset()
		meta, err := DownloadSnapshot(ctx, pc.cluster, forwarded(ctx, msg), w)
		return end(meta, err, func(err error) error { return err })
	})
	return err
}

// RestoreSnapshot replaces the replicated state with a snapshot (on the
// leader).
func (c *clusterService) RestoreSnapshot(ctx context.Context, req *connect.Request[v1.RestoreSnapshotRequest]) (*connect.Response[v1.RestoreSnapshotResponse], error) {
	msg := req.Msg
	if len(msg.Data) == 0 {
		return nil, invalid("data", "must not be empty")
	}
	// A restore of a large state takes longer than ForwardTimeout on the
	// leader: a forward that gave up would restore it twice.
	return onLeaderFor(ctx, c.Server, req.Header(), 0, func(ctx context.Context) (*connect.Response[v1.RestoreSnapshotResponse], error) {
		return c.restore(ctx, bytes.NewReader(msg.Data), int64(len(msg.Data)))
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.RestoreSnapshotResponse], error) {
		return pc.cluster.RestoreSnapshot(ctx, forwarded(ctx, msg))
	})
}

// RestoreSnapshotStream is RestoreSnapshot in chunks. The leader reads the
// upload straight into cluster.RestoreSnapshot (which checks it in a
// temporary file of its own) and keeps a copy in a file (Config.SpoolDir);
// a follower first receives the whole upload into that file. Either can
// then send it (again) to whichever server leads: a leader that loses
// leadership during a large restore (while the followers install it, on a
// loaded machine) must not make the client send it again.
func (c *clusterService) RestoreSnapshotStream(ctx context.Context, stream *connect.ClientStream[v1.SnapshotChunk]) (*connect.Response[v1.RestoreSnapshotResponse], error) {
	hdr := stream.RequestHeader()
	leading := c.clu.IsLeader()
	if !leading && hdr.Get(forwardedHeader) != "" {
		// Before reading anything: the forwarding server tries another.
		return nil, errNotLeaderHere()
	}
	up := &uploadReader{recv: stream.Conn().Receive, limit: int64(c.cfg.MaxSnapshotBytes)}
	if err := up.start(); err != nil {
		return nil, err
	}
	copied, err := os.CreateTemp(c.cfg.SpoolDir, "restore-upload-*.snap")
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("restore snapshot: keep the upload: %w", err))
	}
	defer func() {
		copied.Close()
		os.Remove(copied.Name())
	}()
	// src is what the next attempt reads: on the leader, first the upload
	// as it arrives (copied as it is read); after that, or to forward it,
	// the copy, once the rest of the upload has joined it.
	var src io.Reader = io.TeeReader(up, copied)
	first := leading
	rewind := func(forward bool) error {
		if first && !forward {
			first = false
			return nil
		}
		first = false
		_, err := io.Copy(copied, up)
		if err == nil {
			src = copied
			_, err = copied.Seek(0, io.SeekStart)
		}
		if err != nil {
			if ce, ok := asUploadError(err); ok {
				return ce
			}
			return connect.NewError(connect.CodeInternal, fmt.Errorf("restore snapshot: keep the upload: %w", err))
		}
		return nil
	}
	if !leading {
		if err := rewind(true); err != nil {
			return nil, err
		}
	}
	return onLeaderFor(ctx, c.Server, hdr, 0, func(ctx context.Context) (*connect.Response[v1.RestoreSnapshotResponse], error) {
		if err := rewind(false); err != nil {
			return nil, err
		}
		return c.restore(ctx, src, max(up.size, up.received))
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.RestoreSnapshotResponse], error) {
		if err := rewind(true); err != nil {
			return nil, err
		}
		h := make(http.Header)
		markForwardedRequest(ctx, h)
		return UploadSnapshot(ctx, pc.cluster, h, src, up.received)
	})
}

// restore restores the snapshot file read from r (size bytes, 0 if not
// known yet) on this server, the leader.
func (c *clusterService) restore(ctx context.Context, r io.Reader, size int64) (*connect.Response[v1.RestoreSnapshotResponse], error) {
	c.log.Info("snapshot restore requested", "bytes", size)
	meta, err := c.clu.RestoreSnapshot(ctx, r)
	if err != nil {
		if ce, ok := asUploadError(err); ok {
			// The upload itself failed (over the limit, cut off).
			return nil, ce
		}
		if !c.clu.IsLeader() {
			return nil, &notLeaderError{err}
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, prefixed("restore snapshot", err))
	}
	c.log.Info("snapshot restored through the api", "index", meta.Index, "term", meta.Term)
	return connect.NewResponse(&v1.RestoreSnapshotResponse{}), nil
}

// asUploadError returns err as the Connect error of the upload that failed
// in it (the operation named once), if one did.
func asUploadError(err error) (*connect.Error, bool) {
	var ue *uploadError
	if !errors.As(err, &ue) {
		return nil, false
	}
	return connect.NewError(ue.code, prefixed("restore snapshot", err)), true
}

// uploadError is an upload that failed as an upload (over the size limit,
// cut off, not the size it said), whatever reads it.
type uploadError struct {
	code connect.Code
	err  error
}

func (e *uploadError) Error() string { return e.err.Error() }
func (e *uploadError) Unwrap() error { return e.err }

// uploadReader reads the snapshot file of a RestoreSnapshotStream: the
// chunks' data in order, into one chunk received again and again, so that
// it holds one chunk at a time (snapshotCodec reuses its data's memory).
// It refuses more than limit bytes, and, when the first chunk gives the
// size, more or fewer bytes than that.
type uploadReader struct {
	recv  func(any) error
	limit int64
	// size is the size the client gave (0: none).
	size     int64
	received int64
	// read counts the bytes Read returned.
	read  int64
	chunk v1.SnapshotChunk
	rest  []byte
	eof   bool
}

// start receives the first chunk and checks the size it gives against the
// limit: a snapshot too large is refused before it is sent.
func (u *uploadReader) start() error {
	if err := u.next(); err != nil {
		if ce, ok := asUploadError(err); ok {
			return ce
		}
		return invalid("data", "no snapshot data was sent")
	}
	u.size = u.chunk.Size
	switch {
	case u.size < 0:
		return invalid("size", fmt.Sprintf("%d is negative", u.size))
	case u.size > u.limit:
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("restore snapshot: %s", u.overLimit(u.size)))
	}
	return u.check()
}

func (u *uploadReader) overLimit(n int64) string {
	return fmt.Sprintf("the snapshot (%s) is larger than this server's limit of %s (berth server --max-snapshot-size)", byteSize(n), byteSize(u.limit))
}

// next receives the next chunk.
func (u *uploadReader) next() error {
	if err := u.recv(&u.chunk); err != nil {
		if errors.Is(err, io.EOF) {
			u.eof = true
			return io.EOF
		}
		return &uploadError{connect.CodeOf(err), fmt.Errorf("receive snapshot after %d bytes: %w", u.received, err)}
	}
	u.received += int64(len(u.chunk.Data))
	u.rest = u.chunk.Data
	return nil
}

// check refuses an upload that has gone over the limit or its size.
func (u *uploadReader) check() error {
	switch {
	case u.received > u.limit:
		return &uploadError{connect.CodeResourceExhausted, errors.New(u.overLimit(u.received))}
	case u.size > 0 && u.received > u.size:
		return &uploadError{connect.CodeInvalidArgument, fmt.Errorf("the upload has more than the %d bytes its first chunk gave as its size", u.size)}
	}
	return nil
}

func (u *uploadReader) Read(p []byte) (int, error) {
	for len(u.rest) == 0 {
		if u.eof {
			return 0, io.EOF
		}
		err := u.next()
		if errors.Is(err, io.EOF) {
			if u.size > 0 && u.received != u.size {
				return 0, &uploadError{connect.CodeInvalidArgument, fmt.Errorf("the upload ended after %d of the %d bytes its first chunk gave as its size", u.received, u.size)}
			}
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if err := u.check(); err != nil {
			return 0, err
		}
	}
	n := copy(p, u.rest)
	u.rest = u.rest[n:]
	return n, nil
}

// byteSize renders n bytes for people: 1.5 GiB, 58.0 MiB, 512 bytes.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// chunkWriter sends what is written to it as SnapshotChunks of
// snapshotChunkBytes, from one buffer it reuses (a stream's Send has
// encoded the message when it returns).
type chunkWriter struct {
	send  func(*v1.SnapshotChunk) error
	buf   []byte
	chunk v1.SnapshotChunk
	// sent counts the bytes sent.
	sent int64
}

// reset drops what is buffered and not sent, for another attempt.
func (w *chunkWriter) reset() { w.buf = w.buf[:0] }

func (w *chunkWriter) Write(p []byte) (int, error) {
	if w.buf == nil {
		w.buf = make([]byte, 0, snapshotChunkBytes)
	}
	written := 0
	for len(p) > 0 {
		n := min(cap(w.buf)-len(w.buf), len(p))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
		written += n
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush sends what is buffered.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.chunk.Data = w.buf
	err := w.send(&w.chunk)
	w.sent += int64(len(w.buf))
	w.buf = w.buf[:0]
	return err
}

// UploadSnapshot sends the snapshot file read from r (size bytes; 0 when
// not known) to a server's RestoreSnapshotStream, in chunks of 1 MiB, with
// the request headers hdr (may be nil). A read error from r cancels the
// call, so that the server never sees a clean end.
func UploadSnapshot(ctx context.Context, cl berthv1connect.ClusterServiceClient, hdr http.Header, r io.Reader, size int64) (*connect.Response[v1.RestoreSnapshotResponse], error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := cl.RestoreSnapshotStream(ctx)
	for k, v := range hdr {
		stream.RequestHeader()[k] = v
	}
	first := true
	w := &chunkWriter{send: func(c *v1.SnapshotChunk) error {
		c.Size = 0
		if first {
			c.Size, first = size, false
		}
		return stream.Send(c)
	}}
	src := &recordingReader{r: r}
	_, err := io.Copy(w, src)
	if err == nil {
		err = w.flush()
	}
	if src.err != nil {
		cancel()
		_, _ = stream.CloseAndReceive()
		return nil, fmt.Errorf("send snapshot: %w", src.err)
	}
	// A failed Send (io.EOF: the server has answered already, a
	// refusal) leaves the answer to CloseAndReceive.
	res, cerr := stream.CloseAndReceive()
	if cerr == nil && err != nil {
		return nil, fmt.Errorf("send snapshot: %w", err)
	}
	return res, cerr
}

// recordingReader keeps the error its reader returned, other than io.EOF.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

// DownloadSnapshot receives a server's SaveSnapshotStream into w and
// returns the snapshot's index and term from its last message. A stream
// that ends without that message is incomplete: an error.
func DownloadSnapshot(ctx context.Context, cl berthv1connect.ClusterServiceClient, req *connect.Request[v1.SaveSnapshotRequest], w io.Writer) (SnapshotMeta, error) {
	stream, err := cl.SaveSnapshotStream(ctx, req)
	if err != nil {
		return SnapshotMeta{}, err
	}
	defer stream.Close()
	conn, err := stream.Conn()
	if err != nil {
		return SnapshotMeta{}, err
	}
	var chunk v1.SnapshotChunk
	var meta SnapshotMeta
	done := false
	for {
		// One chunk received again and again (snapshotCodec reuses its
		// memory): the stream's Receive allocates a message per chunk.
		err := conn.Receive(&chunk)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return SnapshotMeta{}, err
		}
		if done {
			return SnapshotMeta{}, errors.New("save snapshot: data after the stream's last message")
		}
		if len(chunk.Data) == 0 {
			meta, done = SnapshotMeta{Index: chunk.Index, Term: chunk.Term}, true
			continue
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return SnapshotMeta{}, fmt.Errorf("save snapshot: %w", err)
		}
	}
	if !done {
		return SnapshotMeta{}, connect.NewError(connect.CodeDataLoss, errors.New("save snapshot: the stream ended before its last message; the snapshot is incomplete"))
	}
	return meta, nil
}

// WithSnapshotCodec is connect's protobuf binary codec, except that a
// SnapshotChunk received into a chunk that was received before reuses its
// data's memory (protobuf allocates a new slice for every bytes field: a
// new 1 MiB per chunk). For the clients and handlers of ClusterService.
func WithSnapshotCodec() connect.Option { return connect.WithCodec(snapshotCodec{}) }

type snapshotCodec struct{}

func (snapshotCodec) Name() string { return "proto" }

func (c snapshotCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend lets connect encode into its pooled buffers.
func (snapshotCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (snapshotCodec) Unmarshal(data []byte, msg any) error {
	if chunk, ok := msg.(*v1.SnapshotChunk); ok {
		return unmarshalChunk(data, chunk)
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.Unmarshal(data, m)
}

// unmarshalChunk decodes a SnapshotChunk into m, its data into m.Data's
// memory when it fits. Unknown fields are skipped.
func unmarshalChunk(b []byte, m *v1.SnapshotChunk) error {
	data := m.Data[:0]
	m.Size, m.Index, m.Term = 0, 0, 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("unmarshal SnapshotChunk: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		switch {
		case num == 1 && typ == protowire.BytesType:
			var bs []byte
			bs, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				// The last occurrence wins, as in protobuf.
				data = append(data[:0], bs...)
			}
		case num >= 2 && num <= 4 && typ == protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
			switch num {
			case 2:
				m.Size = int64(v)
			case 3:
				m.Index = v
			case 4:
				m.Term = v
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("unmarshal SnapshotChunk field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	m.Data = data
	return nil
}
