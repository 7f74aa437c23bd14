package rpc

import (
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
)

// pager cuts a listing into pages. Items come sorted by a unique key; a
// page token is the (opaque) key of the last item of the previous page, so
// a page is found without counting from the start and stays correct while
// items are added or removed.
type pager struct {
	size  int    // 0: no limit
	after string // the last key of the previous page, "" for the first
	n     int    // items taken
	more  bool   // an item was left after a full page
	last  string // the key of the last item taken
}

func newPager(size int32, token string) (*pager, error) {
	if size < 0 {
		return nil, invalid("page_size", fmt.Sprintf("must not be negative (got %d)", size))
	}
	after, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || (token != "" && len(after) == 0) {
		return nil, invalid("page_token", "is not a token this server gave (pass next_page_token unchanged)")
	}
	return &pager{size: int(size), after: string(after)}, nil
}

// take reports whether the item with this key belongs on the page; it
// returns false for items before the page, and for every item once the page
// is full (noting that there are more).
func (p *pager) take(key string) bool {
	if p.after != "" && key <= p.after {
		return false
	}
	if p.size > 0 && p.n >= p.size {
		p.more = true
		return false
	}
	p.n++
	p.last = key
	return true
}

// done reports whether the page is full and one more item was seen: the
// caller may stop looking.
func (p *pager) done() bool { return p.more }

// next is the token of the next page, "" after the last.
func (p *pager) next() string {
	if !p.more {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(p.last))
}

// stillWanted checks, every so often in a long listing, whether the client
// is still there: work nobody waits for stops. It also yields the
// processor there, so that a write's goroutines, ready to run, do not wait
// for the listing's time slice to end.
func stillWanted(ctx context.Context, i int) error {
	if i%256 != 0 {
		return nil
	}
	if i > 0 {
		runtime.Gosched()
	}
	return ctx.Err()
}
