package rpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-dev/berth/appmodel"
	"github.com/berth-dev/berth/backup"
	"github.com/berth-dev/berth/fsm"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/proto/berth/v1/berthv1connect"
)

// BackupService: backups and restores of instances' volumes. Starting
// one only commits a PENDING record; the leader's scheduler does the rest
// (see scheduler/backup.go). What needs the target itself (verify,
// delete, prune, and reading a finished backup's manifest) runs on the
// leader, which opens the target with the app's plain backup env values
// or, for values kept in secrets, its own environment.

type backupService struct{ *Server }

// backupNamespace derives backup and restore ids from request ids, so a
// retried request finds what its first attempt created.
var backupNamespace = uuid.MustParse("0c7d2f55-8a4b-4b1e-9d6a-3f0e5c2b7a91")

func backupIDFor(requestID, instanceID string) string {
	return uuid.NewSHA1(backupNamespace, []byte(requestID+"\x00"+instanceID)).String()
}

// backupClient is a BackupService client for the server at addr.
func (s *Server) backupClient(addr string) berthv1connect.BackupServiceClient {
	base := "http://" + addr
	if s.cfg.TLS != nil {
		base = "https://" + addr
	}
	if strings.Contains(addr, "://") {
		base = addr
	}
	return berthv1connect.NewBackupServiceClient(s.httpClient, base)
}

func failedPrecondition(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(format, args...))
}

// CreateBackup commits PENDING backups of one instance, or of every
// instance of the app that has a berth.
func (b *backupService) CreateBackup(ctx context.Context, req *connect.Request[v1.CreateBackupRequest]) (*connect.Response[v1.CreateBackupResponse], error) {
	msg := req.Msg
	appID := appmodel.NormalizeID(msg.AppId)
	if appID == "" {
		return nil, invalid("app_id", "must not be empty")
	}
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.CreateBackupResponse], error) {
		st := b.store().Snapshot()
		app, err := existingApp(st, appID)
		if err != nil {
			return nil, err
		}
		if !appmodel.HasBackup(app) {
			return nil, failedPrecondition("app %s has no backup target: set backup.target in its definition", appID)
		}
		insts, err := st.InstancesByApp(appID)
		if err != nil {
			return nil, stateError(err)
		}
		var out []*v1.Backup
		for _, inst := range insts {
			if msg.InstanceId != "" && inst.GetId() != msg.InstanceId {
				continue
			}
			if inst.GetReservation().GetState() != v1.ReservationState_RESERVATION_STATE_RESERVED || inst.GetGoal() == v1.Goal_GOAL_DECOMMISSIONED {
				if msg.InstanceId != "" {
					return nil, failedPrecondition("instance %s has no berth to back up (reservation %s, goal %s)", inst.GetId(), inst.GetReservation().GetState(), inst.GetGoal())
				}
				continue
			}
			id := backupIDFor(msg.RequestId, inst.GetId())
			if prev, err := st.Backup(id); err != nil {
				return nil, stateError(err)
			} else if prev != nil {
				out = append(out, prev) // a retry of an applied request
				continue
			}
			out = append(out, appmodel.NewBackup(app, inst, id, time.Now()))
		}
		if len(out) == 0 {
			if msg.InstanceId != "" {
				return nil, notFound("instance %s of app %s does not exist", msg.InstanceId, appID)
			}
			return nil, failedPrecondition("app %s has no instance with a berth to back up", appID)
		}
		var fresh []*v1.Backup
		for _, r := range out {
			if r.GetState() == v1.BackupState_BACKUP_STATE_PENDING && r.GetStartedAt() == nil {
				fresh = append(fresh, r)
			}
		}
		if len(fresh) > 0 {
			if _, err := b.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{RequestId: msg.RequestId, Backups: fresh}); err != nil {
				return nil, err
			}
			for _, r := range fresh {
				b.publish(&v1.Event{Type: "backup_event", AppId: r.GetAppId(), InstanceId: r.GetInstanceId(), Message: "backup requested", Backup: r,
					Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
			}
		}
		return connect.NewResponse(&v1.CreateBackupResponse{Backups: out}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.CreateBackupResponse], error) {
		return b.backupClient(pc.addr).CreateBackup(ctx, forwarded(ctx, msg))
	})
}

// ListBackups lists records newest first, by app (the app or its
// group) and instance.
func (b *backupService) ListBackups(_ context.Context, req *connect.Request[v1.ListBackupsRequest]) (*connect.Response[v1.ListBackupsResponse], error) {
	msg := req.Msg
	all, err := b.store().Snapshot().Backups()
	if err != nil {
		return nil, stateError(err)
	}
	prefix := appmodel.NormalizeID(msg.AppId)
	out := &v1.ListBackupsResponse{}
	for _, r := range all {
		if msg.AppId != "" && r.GetAppId() != prefix && !strings.HasPrefix(r.GetAppId(), strings.TrimSuffix(prefix, "/")+"/") {
			continue
		}
		if msg.InstanceId != "" && r.GetInstanceId() != msg.InstanceId {
			continue
		}
		if r.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE && !msg.IncludeRestores {
			continue
		}
		out.Backups = append(out.Backups, r)
	}
	return connect.NewResponse(out), nil
}

// GetBackup returns one record.
func (b *backupService) GetBackup(_ context.Context, req *connect.Request[v1.GetBackupRequest]) (*connect.Response[v1.GetBackupResponse], error) {
	r, err := b.backupRecord(b.store().Snapshot(), req.Msg.Id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.GetBackupResponse{Backup: r}), nil
}

func (s *Server) backupRecord(st *fsm.Snapshot, id string) (*v1.Backup, error) {
	if id == "" {
		return nil, invalid("id", "must not be empty")
	}
	r, err := st.Backup(id)
	if err != nil {
		return nil, stateError(err)
	}
	if r == nil {
		return nil, notFound("backup %s does not exist", id)
	}
	return r, nil
}

// openTarget opens a record's target with its app's backup env.
func (s *Server) openTarget(ctx context.Context, st *fsm.Snapshot, r *v1.Backup) (*backup.Target, error) {
	env := map[string]string{}
	if app, err := st.App(r.GetAppId()); err == nil && app != nil {
		env = appmodel.BackupEnv(app)
	}
	t, err := backup.OpenExisting(ctx, r.GetTarget(), env)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return t, nil
}

// VerifyBackup re-reads every chunk of a succeeded backup and records the
// outcome on it.
func (b *backupService) VerifyBackup(ctx context.Context, req *connect.Request[v1.VerifyBackupRequest]) (*connect.Response[v1.VerifyBackupResponse], error) {
	msg := req.Msg
	return onLeader(ctx, b.Server, req.Header(), func(ctx context.Context) (*connect.Response[v1.VerifyBackupResponse], error) {
		st := b.store().Snapshot()
		r, err := b.backupRecord(st, msg.Id)
		if err != nil {
			return nil, err
		}
		if r.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP || r.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
			return nil, failedPrecondition("%s %s is %s: only a succeeded backup can be verified", kindWord(r), r.GetId(), r.GetState())
		}
		t, err := b.openTarget(ctx, st, r)
		if err != nil {
			return nil, err
		}
		defer t.Close()
		res, err := t.Verify(ctx, r.GetId(), r.GetManifestSha256(), nil)
		next := proto.Clone(r).(*v1.Backup)
		next.VerifiedAt = timestamppb.Now()
		switch {
		case err != nil:
			next.VerifyError = err.Error()
		case !res.OK():
			next.VerifyError = res.Err().Error()
		default:
			next.VerifyError = ""
		}
		if _, aerr := b.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{
			Backups: []*v1.Backup{next}, ExpectStates: []v1.BackupState{v1.BackupState_BACKUP_STATE_SUCCEEDED}}); aerr != nil {
			return nil, aerr
		}
		if err != nil {
			return nil, connect.NewError(connect.CodeDataLoss, fmt.Errorf("verify %s: %w", r.GetId(), err))
		}
		return connect.NewResponse(&v1.VerifyBackupResponse{Backup: next, Ok: res.OK(), Chunks: uint64(res.Chunks), Bytes: uint64(res.Bytes),
			MissingChunks: res.Missing, CorruptChunks: res.Corrupt}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.VerifyBackupResponse], error) {
		return b.backupClient(pc.addr).VerifyBackup(ctx, forwarded(ctx, msg))
	})
}

func kindWord(r *v1.Backup) string {
	if r.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		return "restore"
	}
	return "backup"
}

// DeleteBackup deletes a backup's manifest, forgets its record and
// collects the chunks no other backup uses.
func (b *backupService) DeleteBackup(ctx context.Context, req *connect.Request[v1.DeleteBackupRequest]) (*connect.Response[v1.DeleteBackupResponse], error) {
	msg := req.Msg
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.DeleteBackupResponse], error) {
		st := b.store().Snapshot()
		r, err := st.Backup(msg.Id)
		if err != nil {
			return nil, stateError(err)
		}
		if r == nil {
			return connect.NewResponse(&v1.DeleteBackupResponse{}), nil // already deleted (a retry)
		}
		if _, _, err := b.deleteBackups(ctx, st, []*v1.Backup{r}); err != nil {
			return nil, err
		}
		return connect.NewResponse(&v1.DeleteBackupResponse{}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.DeleteBackupResponse], error) {
		return b.backupClient(pc.addr).DeleteBackup(ctx, forwarded(ctx, msg))
	})
}

// deleteBackups deletes the manifests of records (all of one target),
// then the records, then collects unreferenced chunks unless a backup to
// the target is in progress (it may rely on a chunk it found present).
// Restore records are only forgotten.
func (s *Server) deleteBackups(ctx context.Context, st *fsm.Snapshot, rs []*v1.Backup) ([]string, *backup.GCResult, error) {
	if len(rs) == 0 {
		return nil, nil, nil
	}
	var ids []string
	var t *backup.Target
	for _, r := range rs {
		if fsm.BackupActive(r) {
			return nil, nil, failedPrecondition("%s %s is in progress", kindWord(r), r.GetId())
		}
		if r.GetKind() == v1.BackupKind_BACKUP_KIND_BACKUP {
			if t == nil {
				var err error
				if t, err = s.openTarget(ctx, st, r); err != nil {
					return nil, nil, err
				}
				defer t.Close()
			}
			if err := t.Delete(ctx, r.GetId()); err != nil {
				return nil, nil, connect.NewError(connect.CodeUnavailable, err)
			}
		}
		ids = append(ids, r.GetId())
	}
	if _, err := s.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_DELETE, &v1.BackupDeleteCommand{Ids: ids}); err != nil {
		return nil, nil, err
	}
	if t == nil {
		return ids, nil, nil
	}
	all, err := st.Backups()
	if err != nil {
		return ids, nil, stateError(err)
	}
	for _, o := range all {
		if fsm.BackupActive(o) && o.GetKind() == v1.BackupKind_BACKUP_KIND_BACKUP && o.GetTarget() == rs[0].GetTarget() {
			return ids, nil, nil // collected by a later prune
		}
	}
	gc, err := t.GC(ctx)
	if err != nil {
		return ids, nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return ids, gc, nil
}

// PruneBackups applies the app's retention now.
func (b *backupService) PruneBackups(ctx context.Context, req *connect.Request[v1.PruneBackupsRequest]) (*connect.Response[v1.PruneBackupsResponse], error) {
	msg := req.Msg
	appID := appmodel.NormalizeID(msg.AppId)
	if appID == "" {
		return nil, invalid("app_id", "must not be empty")
	}
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.PruneBackupsResponse], error) {
		st := b.store().Snapshot()
		app, err := existingApp(st, appID)
		if err != nil {
			return nil, err
		}
		ids, gc, err := b.pruneApp(ctx, st, app, time.Now())
		if err != nil {
			return nil, err
		}
		res := &v1.PruneBackupsResponse{Deleted: ids}
		if gc != nil {
			res.ChunksDeleted = uint64(gc.Deleted)
		}
		return connect.NewResponse(res), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.PruneBackupsResponse], error) {
		return b.backupClient(pc.addr).PruneBackups(ctx, forwarded(ctx, msg))
	})
}

// pruneApp deletes the succeeded backups of an app's current target that
// its retention drops, per instance.
func (s *Server) pruneApp(ctx context.Context, st *fsm.Snapshot, app *v1.App, now time.Time) ([]string, *backup.GCResult, error) {
	r := appmodel.BackupRetention(app)
	if r.Keep == 0 && r.MaxAge == 0 {
		return nil, nil, nil
	}
	all, err := st.Backups()
	if err != nil {
		return nil, nil, stateError(err)
	}
	byID := map[string]*v1.Backup{}
	var entries []backup.Entry
	for _, b := range all {
		if b.GetAppId() != app.GetId() || b.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP ||
			b.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED || b.GetTarget() != app.GetBackup().GetTarget() {
			continue
		}
		byID[b.GetId()] = b
		entries = append(entries, backup.Entry{ID: b.GetId(), Group: b.GetInstanceId(), Created: b.GetCreatedAt().AsTime()})
	}
	var drop []*v1.Backup
	for _, id := range backup.Expired(entries, r, now) {
		drop = append(drop, byID[id])
	}
	return s.deleteBackups(ctx, st, drop)
}

// Restore commits a PENDING restore of a backup into an instance's berth.
func (b *backupService) Restore(ctx context.Context, req *connect.Request[v1.RestoreRequest]) (*connect.Response[v1.RestoreResponse], error) {
	msg := req.Msg
	appID := appmodel.NormalizeID(msg.AppId)
	switch {
	case appID == "":
		return nil, invalid("app_id", "must not be empty")
	case msg.InstanceId == "":
		return nil, invalid("instance_id", "must not be empty")
	case msg.BackupId == "":
		return nil, invalid("backup_id", "must not be empty")
	}
	return onLeaderWrite(ctx, b.Server, req.Header(), &msg.RequestId, func(ctx context.Context) (*connect.Response[v1.RestoreResponse], error) {
		st := b.store().Snapshot()
		id := backupIDFor(msg.RequestId, "restore")
		if prev, err := st.Backup(id); err != nil {
			return nil, stateError(err)
		} else if prev != nil {
			return connect.NewResponse(&v1.RestoreResponse{Restore: prev}), nil
		}
		app, err := existingApp(st, appID)
		if err != nil {
			return nil, err
		}
		inst, err := st.Instance(msg.InstanceId)
		if err != nil {
			return nil, stateError(err)
		}
		if inst == nil || inst.GetAppId() != appID {
			return nil, notFound("instance %s of app %s does not exist", msg.InstanceId, appID)
		}
		if inst.GetReservation().GetState() != v1.ReservationState_RESERVATION_STATE_RESERVED || inst.GetGoal() == v1.Goal_GOAL_DECOMMISSIONED {
			return nil, failedPrecondition("instance %s has no berth to restore into (reservation %s, goal %s)", inst.GetId(), inst.GetReservation().GetState(), inst.GetGoal())
		}
		src, err := b.backupRecord(st, msg.BackupId)
		if err != nil {
			return nil, err
		}
		if src.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP || src.GetState() != v1.BackupState_BACKUP_STATE_SUCCEEDED {
			return nil, failedPrecondition("backup_id: %s %s is %s; only a succeeded backup can be restored", kindWord(src), src.GetId(), src.GetState())
		}
		if src.GetAppId() != appID {
			return nil, failedPrecondition("backup_id: backup %s belongs to app %s, not %s", src.GetId(), src.GetAppId(), appID)
		}
		r := appmodel.NewRestore(app, inst, src, id, time.Now())
		if msg.ToAgent != "" {
			if err := stillMoving(inst); err != nil {
				return nil, err
			}
			if r.ToAgent, err = b.agentNamed(ctx, msg.ToAgent); err != nil {
				return nil, err
			}
			if r.ToAgent == inst.GetReservation().GetAgentId() {
				return nil, invalid("to_agent", fmt.Sprintf("%q already holds the instance's berth; restore without to_agent", msg.ToAgent))
			}
			r.Move = true
			r.MigrationId = r.GetId()
			r.FromAgent = inst.GetReservation().GetAgentId()
		}
		if _, err := b.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{RequestId: msg.RequestId, Backups: []*v1.Backup{r}}); err != nil {
			return nil, err
		}
		b.publish(&v1.Event{Type: "backup_event", AppId: appID, InstanceId: inst.GetId(), Message: "restore requested", Backup: r,
			Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
		return connect.NewResponse(&v1.RestoreResponse{Restore: r}), nil
	}, func(ctx context.Context, pc *peerClients) (*connect.Response[v1.RestoreResponse], error) {
		return b.backupClient(pc.addr).Restore(ctx, forwarded(ctx, msg))
	})
}

// serveBinary serves this server's own executable, which the Mesos
// fetcher downloads for backup and restore tasks.
func (s *Server) serveBinary(w http.ResponseWriter, r *http.Request) {
	path := s.cfg.BinaryPath
	if path == "" {
		var err error
		if path, err = os.Executable(); err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "no binary to serve: " + err.Error()})
			return
		}
	}
	f, err := os.Open(path)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "no binary to serve: " + err.Error()})
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "berth", info.ModTime(), f)
}

// BackupDutiesInterval is how often the leader looks after backups.
const BackupDutiesInterval = 2 * time.Second

// RunBackupDuties looks after backups while this server leads, until ctx
// ends: it publishes the progress of running copies (read from their
// targets) as backup_progress events, records the totals and manifest
// checksum of each finished backup, applies the apps' retention after
// each backup that succeeded, and deletes the staging copies of moves that
// ended (staging.go).
func (s *Server) RunBackupDuties(ctx context.Context) {
	tick := time.NewTicker(BackupDutiesInterval)
	defer tick.Stop()
	seen := map[string]backup.Progress{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !s.clu.IsLeader() {
			continue
		}
		if err := s.backupDuties(ctx, seen); err != nil && ctx.Err() == nil {
			s.log.Warn("backup duties", "err", err)
		}
	}
}

func (s *Server) backupDuties(ctx context.Context, seen map[string]backup.Progress) error {
	st := s.store().Snapshot()
	all, err := st.Backups()
	if err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].GetId() < all[j].GetId() })
	var errs []error
	prune := map[string]bool{}
	for _, r := range all {
		if r.GetKind() != v1.BackupKind_BACKUP_KIND_BACKUP {
			continue
		}
		switch {
		case r.GetState() == v1.BackupState_BACKUP_STATE_RUNNING:
			errs = append(errs, s.publishProgress(ctx, st, r, seen))
		case r.GetState() == v1.BackupState_BACKUP_STATE_SUCCEEDED && r.GetManifestSha256() == "" && r.GetVerifyError() == "":
			errs = append(errs, s.recordTotals(ctx, st, r))
			prune[r.GetAppId()] = true
			delete(seen, r.GetId())
		}
	}
	for appID := range prune {
		app, err := st.App(appID)
		if err != nil || app == nil {
			continue
		}
		if _, _, err := s.pruneApp(ctx, s.store().Snapshot(), app, time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("retention of %s: %w", appID, err))
		}
	}
	errs = append(errs, s.pruneStaging(ctx))
	return errors.Join(errs...)
}

func (s *Server) publishProgress(ctx context.Context, st *fsm.Snapshot, r *v1.Backup, seen map[string]backup.Progress) error {
	t, err := s.openTarget(ctx, st, r)
	if errors.Is(err, backup.ErrNotFound) {
		return nil // the copy has not written to the target yet
	}
	if err != nil {
		return err
	}
	defer t.Close()
	p, ok, err := t.Progress(ctx, r.GetId())
	if err != nil || !ok || seen[r.GetId()] == p {
		return err
	}
	seen[r.GetId()] = p
	ev := proto.Clone(r).(*v1.Backup)
	ev.Bytes, ev.ChunksTotal, ev.ChunksNew, ev.BytesUploaded = uint64(p.Bytes), uint64(p.Chunks), uint64(p.NewChunks), uint64(p.UploadedBytes)
	s.publish(&v1.Event{Type: "backup_progress", AppId: r.GetAppId(), InstanceId: r.GetInstanceId(), TaskId: r.GetTaskId(),
		Message: fmt.Sprintf("backup %s: %d of %d bytes, %d chunks (%d new)", r.GetId(), p.Bytes, p.TotalBytes, p.Chunks, p.NewChunks),
		Backup:  ev, RateBytesPerSecond: p.Rate(), Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
	return nil
}

// recordTotals reads a finished backup's manifest and records its totals
// and checksum (a restore checks the manifest against it).
func (s *Server) recordTotals(ctx context.Context, st *fsm.Snapshot, r *v1.Backup) error {
	next := proto.Clone(r).(*v1.Backup)
	t, err := s.openTarget(ctx, st, r)
	if err != nil {
		return err
	}
	defer t.Close()
	m, sum, err := t.ManifestWithSum(ctx, r.GetId())
	if err != nil {
		// Recorded, so the leader stops asking; the backup cannot be
		// restored without its manifest.
		next.VerifyError = "manifest unreadable: " + err.Error()
	} else {
		next.ManifestSha256 = sum
		next.Bytes, next.ChunksTotal, next.ChunksNew, next.BytesUploaded = uint64(m.Totals.Bytes), uint64(m.Totals.Chunks), uint64(m.Totals.NewChunks), uint64(m.Totals.NewBytes)
	}
	_, aerr := s.apply(ctx, v1.CommandType_COMMAND_TYPE_BACKUP_PUT, &v1.BackupPutCommand{
		Backups: []*v1.Backup{next}, ExpectStates: []v1.BackupState{v1.BackupState_BACKUP_STATE_SUCCEEDED}})
	if aerr != nil {
		return aerr
	}
	s.publish(&v1.Event{Type: "backup_event", AppId: r.GetAppId(), InstanceId: r.GetInstanceId(), Backup: next,
		Message:   fmt.Sprintf("backup %s: %d bytes, %d chunks, %d new (%d bytes uploaded)", r.GetId(), next.GetBytes(), next.GetChunksTotal(), next.GetChunksNew(), next.GetBytesUploaded()),
		Timestamp: time.Now().UTC().Format(time.RFC3339Nano)})
	return nil
}
