package backup

import (
	"context"
	"encoding/json"
	"fmt"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Progress of a running copy is written to the target beside the chunks
// (progress/<id>.json) by the copy task and read by the leader, which
// publishes it in the event stream: the target is the one place both can
// reach without a new channel between agents and servers.

const progressPrefix = "progress/"

func progressKey(id string) string { return progressPrefix + id + ".json" }

// PutProgress records the progress of copy id.
func (t *Target) PutProgress(ctx context.Context, id string, p Progress) error {
	data, _ := json.Marshal(p)
	if err := t.bucket.WriteAll(ctx, progressKey(id), data, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write progress of %s: %w", id, err)
	}
	return nil
}

// Progress reads the last progress recorded for copy id; ok is false when
// there is none.
func (t *Target) Progress(ctx context.Context, id string) (p Progress, ok bool, err error) {
	data, err := t.bucket.ReadAll(ctx, progressKey(id))
	if gcerrors.Code(err) == gcerrors.NotFound {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read progress of %s: %w", id, err)
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, false, fmt.Errorf("read progress of %s: %w", id, err)
	}
	return p, true, nil
}

// ClearProgress removes the progress record of copy id.
func (t *Target) ClearProgress(ctx context.Context, id string) error {
	if err := t.bucket.Delete(ctx, progressKey(id)); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete progress of %s: %w", id, err)
	}
	return nil
}
