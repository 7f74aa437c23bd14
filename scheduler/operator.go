package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/mesos/mesos-go/api/v1/lib/master"
)

// OperatorClient calls the Mesos master's v1 operator API (POST /api/v1)
// with the framework's master URL, TLS and credentials: what `berth agent`
// asks of Mesos (drain, gone, maintenance) goes through it.
type OperatorClient struct {
	endpoint  string
	hc        *http.Client
	principal string
	secret    string
}

// operatorTimeout bounds one operator call.
const operatorTimeout = 30 * time.Second

// maxOperatorResponse bounds an operator response (GET_AGENTS of a large
// cluster).
const maxOperatorResponse = 64 << 20

// NewOperatorClient returns a client for the master of cfg.
func NewOperatorClient(cfg Config) (*OperatorClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &OperatorClient{
		endpoint:  strings.TrimRight(cfg.MesosMaster, "/") + "/api/v1",
		hc:        &http.Client{Transport: mesosTransport(cfg), Timeout: operatorTimeout},
		principal: cfg.Principal,
		secret:    cfg.Secret,
	}, nil
}

// mesosTransport is an HTTP transport with the framework's TLS settings.
func mesosTransport(cfg Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.MesosTLS != nil {
		tr.TLSClientConfig = cfg.MesosTLS
	}
	return tr
}

// OperatorError is a call the master refused: its HTTP status and message.
type OperatorError struct {
	Call    master.Call_Type
	Status  int
	Message string
}

func (e *OperatorError) Error() string {
	return fmt.Sprintf("mesos master refused %v: HTTP %d: %s", e.Call, e.Status, e.Message)
}

// Call sends one operator call and decodes the response (empty for calls
// that answer with no body).
func (c *OperatorClient) Call(ctx context.Context, call *master.Call) (*master.Response, error) {
	return c.call(ctx, call, nil)
}

// call sends one operator call and decodes the response, passing its
// encoded bytes through filter first when there is one.
func (c *OperatorClient) call(ctx context.Context, call *master.Call, filter func([]byte) ([]byte, error)) (*master.Response, error) {
	b, status, err := postCall(ctx, c.hc, c.endpoint, c.principal, c.secret, call, call.Type)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, &OperatorError{Call: call.Type, Status: status, Message: strings.TrimSpace(string(b))}
	}
	if filter != nil {
		if b, err = filter(b); err != nil {
			return nil, fmt.Errorf("%v to %s: decode response: %w", call.Type, c.endpoint, err)
		}
	}
	out := &master.Response{}
	if len(b) > 0 {
		if err := proto.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%v to %s: decode response: %w", call.Type, c.endpoint, err)
		}
	}
	return out, nil
}

// postCall POSTs a protobuf-encoded v1 operator call (to a master or an
// agent) with the framework's credentials, and returns the response's
// body and status.
func postCall(ctx context.Context, hc *http.Client, url, principal, secret string, call proto.Message, what fmt.Stringer) ([]byte, int, error) {
	body, err := proto.Marshal(call)
	if err != nil {
		return nil, 0, fmt.Errorf("encode %v: %w", what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Accept", "application/x-protobuf")
	if secret != "" {
		req.SetBasicAuth(principal, secret)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%v to %s: %w", what, url, err)
	}
	defer res.Body.Close()
	if res.ContentLength > maxOperatorResponse {
		return nil, res.StatusCode, fmt.Errorf("%v to %s: a response of %d bytes is over the limit of %d", what, url, res.ContentLength, maxOperatorResponse)
	}
	b, err := readResponse(res)
	if err != nil {
		return nil, res.StatusCode, fmt.Errorf("%v to %s: read response: %w", what, url, err)
	}
	return b, res.StatusCode, nil
}

// readResponse reads a response body of at most maxOperatorResponse bytes,
// into one buffer when its length is known (io.ReadAll would copy a large
// GET_AGENTS response many times over as its buffer grows).
func readResponse(res *http.Response) ([]byte, error) {
	if n := res.ContentLength; n > 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(res.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(res.Body, maxOperatorResponse))
}
