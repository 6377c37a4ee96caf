package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hcxfed/hcx"
	"github.com/hcxfed/hcx/auth"
)

// Batch verification (issue 12 item 1; docs/decisions.md, "Issue 12: batch
// verification and code images"). A checkpoint device or an operator posts
// many codes at once to POST /v1/verify/batch and gets one answer per code,
// in order, each exactly what POST /v1/verify answers for that code: the
// Verification, or {"error":{...}} as its error body. A bad item never fails
// the batch.
//
//   - application/json (the default): {"codes":[...]} with 1 to
//     MaxBatchCodes codes, answered {"results":[...]} once all are done.
//   - application/x-ndjson: one {"code":"..."} per line, any number of
//     lines, each at most MaxBatchLine bytes; answered as NDJSON, one line
//     per input line, in order, flushed as answers are ready. A bad line is
//     answered in place by an error carrying its "line" (1-based).
//
// The work runs on a pool: every batch in flight shares GOMAXPROCS core
// tokens, taken a chunk of codes at a time, so batches together never keep
// more goroutines verifying than there are cores, and single /v1/verify
// requests (which take no token) are scheduled beside them. At most
// MaxBatchesInFlight batches run at once; one more is refused with 503
// overloaded and Retry-After, before its body is read.
const (
	// MaxBatchCodes is the most codes in one JSON batch.
	MaxBatchCodes = 10_000
	// MaxBatchBody bounds a JSON batch's body: 10,000 codes of up to about
	// 800 bytes each (a code is about 400). It is the request token's body
	// limit too: a device's token signs the body's hash, so the
	// authenticator reads that much before the handler runs.
	MaxBatchBody = auth.DefaultTokenBody
	// MaxBatchLine bounds one NDJSON line: /v1/verify's body limit.
	MaxBatchLine = 8 << 10
	// MaxBatchesInFlight bounds the batches served at once by one node.
	MaxBatchesInFlight = 4
	// batchWindow bounds the NDJSON lines read but not yet answered, per
	// stream: the reader stops reading (TCP back-pressure) when it is full.
	batchWindow = 256
	// batchChunk is how many codes a worker verifies per core token.
	batchChunk = 16
	// streamIdle is how long a stream may wait for its next line or for
	// its client to take answers; each line read or answer written renews it
	// (the server's whole-request timeouts would end a long stream).
	streamIdle = 30 * time.Second
)

// ContentTypeNDJSON is the media type of the streamed batch.
const ContentTypeNDJSON = "application/x-ndjson"

// batchPool is the node handler's shared verification pool.
type batchPool struct {
	workers int
	cores   chan struct{} // one token per core, shared by all batches
	slots   chan struct{} // batches in flight
}

func newBatchPool(workers, batches int) *batchPool {
	return &batchPool{workers: workers, cores: make(chan struct{}, workers), slots: make(chan struct{}, batches)}
}

// admit takes a batch slot or refuses with 503 overloaded.
func (p *batchPool) admit() (release func(), err error) {
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	default:
		return nil, retryError(hcx.EUnavailable, "overloaded", time.Second,
			"the node is serving %d verification batches, its most at once; retry after the Retry-After delay", cap(p.slots))
	}
}

// core waits for a core token; false when ctx is done first.
func (p *batchPool) core(ctx context.Context) bool {
	if ctx.Err() != nil { // select would pick at random between the two
		return false
	}
	select {
	case p.cores <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *batchPool) done() { <-p.cores }

// run calls fn(i) for every i in [0, n) on up to p.workers goroutines, a
// chunk at a time under a core token. It returns ctx's error if ctx ended
// before every item was done.
func (p *batchPool) run(ctx context.Context, n int, fn func(i int)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(p.workers, (n+batchChunk-1)/batchChunk) {
		wg.Go(func() {
			for {
				i0 := int(next.Add(batchChunk)) - batchChunk
				if i0 >= n || !p.core(ctx) {
					return
				}
				for i := i0; i < min(i0+batchChunk, n); i++ {
					fn(i)
				}
				p.done()
				runtime.Gosched() // let waiting single verifications in
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func (h *nodeHandler) batchRules() []Rule {
	operator := Grant{Role: auth.RoleOperator, Scope: ScopeProvince}
	checkpoint := Grant{Role: auth.RoleCheckpoint, Scope: ScopeProvince}
	return []Rule{
		{Method: http.MethodPost, Path: "/v1/verify/batch", Priority: PriorityCheckpoint, Allow: []Grant{checkpoint, operator}, Handler: h.verifyBatch},
	}
}

// batchRequest is the JSON batch. Codes are raw so that an item that is not
// a string is answered on its own, not as a failure of the whole batch.
type batchRequest struct {
	Codes []json.RawMessage `json:"codes"`
}

func (h *nodeHandler) verifyBatch(w http.ResponseWriter, r *http.Request) {
	stream, err := batchMediaType(r)
	var release func()
	if err == nil {
		release, err = h.batch.admit()
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	defer release()
	if stream {
		h.verifyStream(w, r)
		return
	}
	var req batchRequest
	err = DecodeJSON(w, r, MaxBatchBody, &req)
	switch {
	case err != nil:
	case len(req.Codes) == 0:
		err = hcx.Invalidf("codes", "no codes: send 1 to %d codes as {\"codes\":[\"HCX1:...\", ...]}", MaxBatchCodes)
	case len(req.Codes) > MaxBatchCodes:
		err = hcx.Invalidf("codes", "%d codes: at most %d in one request; send more as a stream (Content-Type: %s, one {\"code\":...} per line)",
			len(req.Codes), MaxBatchCodes, ContentTypeNDJSON)
	}
	if err != nil {
		WriteError(w, h.log, err)
		return
	}
	ctx := r.Context()
	out := make([][]byte, len(req.Codes))
	err = h.batch.run(ctx, len(req.Codes), func(i int) {
		var code string
		if raw := req.Codes[i]; len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &code) != nil {
			out[i] = h.itemError(badJSON("codes["+strconv.Itoa(i)+"]", "want a string with a code, got %s", kindOf(req.Codes[i])), 0)
			return
		}
		out[i] = h.verifyItem(ctx, code)
	})
	if err != nil {
		return // the client has gone
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(`{"results":[`)
	for i, b := range out {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	bw.WriteString("]}\n")
	_ = bw.Flush()
}

// batchMediaType says whether r is a streamed batch: application/x-ndjson;
// application/json or no Content-Type is the JSON batch; anything else is
// refused naming Content-Type.
func batchMediaType(r *http.Request) (bool, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
	case mt == "application/json":
		return false, nil
	case mt == ContentTypeNDJSON:
		return true, nil
	}
	return false, hcx.Invalidf("Content-Type", "%q: want application/json ({\"codes\":[...]}) or %s (one {\"code\":...} per line)", clip(ct), ContentTypeNDJSON)
}

// verifyItem is /v1/verify's answer to one code, as JSON without the final
// newline: the Verification, or {"error":{...}}.
func (h *nodeHandler) verifyItem(ctx context.Context, code string) []byte {
	v, err := h.n.Verify(ctx, code)
	if err != nil {
		return h.itemError(err, 0)
	}
	return marshalItem(v)
}

// itemError is err as WriteError's body, with the NDJSON line number when
// line > 0.
func (h *nodeHandler) itemError(err error, line int) []byte {
	_, body := errorMember(h.log, err)
	if line > 0 {
		body["line"] = line
	}
	return marshalItem(map[string]any{"error": body})
}

// marshalItem encodes v as WriteJSON does (no HTML escaping), without the
// newline.
func marshalItem(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(`{"error":{"code":"internal","message":"internal error; the server log has the detail"}}`)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// streamJob is one NDJSON line on its way through the pool.
type streamJob struct {
	line int
	text []byte
	done chan []byte // its answer, or nil when the stream was cancelled
}

// verifyStream serves a streamed batch: this goroutine reads lines, the
// pool's workers verify them, and a writer answers them in order, flushing
// whenever it has caught up with the workers. At most batchWindow lines are
// between reading and answering.
func (h *nodeHandler) verifyStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/1: read the body while answering
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	w.Header().Set("Content-Type", ContentTypeNDJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	jobs := make(chan *streamJob, batchWindow)
	order := make(chan *streamJob, batchWindow)
	var workers sync.WaitGroup
	for range h.batch.workers {
		workers.Go(func() {
			for j := range jobs {
				if !h.batch.core(ctx) {
					j.done <- nil
					continue
				}
				j.done <- h.streamAnswer(ctx, j)
				h.batch.done()
			}
		})
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		bw := bufio.NewWriterSize(w, 32<<10)
		var err error
		for j := range order {
			out := <-j.done
			if err != nil || out == nil {
				continue
			}
			bw.Write(out)
			err = bw.WriteByte('\n')
			if err == nil && len(order) == 0 { // caught up: send what we have
				_ = rc.SetWriteDeadline(time.Now().Add(streamIdle))
				if err = bw.Flush(); err == nil {
					err = rc.Flush()
				}
			}
			if err != nil {
				cancel() // the client is gone: stop reading and verifying
			}
		}
		if err == nil && bw.Flush() == nil {
			_ = rc.Flush()
		}
	}()

	br := bufio.NewReaderSize(r.Body, 16<<10)
	for line := 1; ctx.Err() == nil; line++ {
		_ = rc.SetReadDeadline(time.Now().Add(streamIdle))
		text, tooLong, err := readLine(br, MaxBatchLine)
		if errors.Is(err, io.EOF) && len(text) == 0 && !tooLong {
			break
		}
		j := &streamJob{line: line, text: text, done: make(chan []byte, 1)}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			j.done <- h.itemError(hcx.Errorf(hcx.EInvalid, "bad_body", "could not read the request body at line %d: %v", line, err), line)
		case tooLong:
			j.done <- h.itemError(badJSON("body", "line %d is over %d bytes: one {\"code\":...} per line", line, MaxBatchLine), line)
		}
		order <- j
		if len(j.done) == 0 {
			jobs <- j
		}
		if err != nil {
			break
		}
	}
	close(jobs)
	close(order)
	workers.Wait()
	<-written
}

// streamAnswer is the answer to one NDJSON line: {"code":...} decoded as
// /v1/verify's body is, then verified.
func (h *nodeHandler) streamAnswer(ctx context.Context, j *streamJob) []byte {
	var req verifyRequest
	if len(bytes.TrimSpace(j.text)) == 0 {
		return h.itemError(badJSON("body", "line %d is empty: send one {\"code\":\"HCX1:...\"} per line", j.line), j.line)
	}
	if err := decodeObject(j.text, &req); err != nil {
		return h.itemError(err, j.line)
	}
	v, err := h.n.Verify(ctx, req.Code)
	if err != nil {
		return h.itemError(err, j.line)
	}
	return marshalItem(v)
}

// readLine reads one line of at most max bytes, without its "\n" or "\r\n".
// A longer line is read to its end and dropped, with tooLong set. At the
// end of the body it returns the last line, if any, with io.EOF.
func readLine(br *bufio.Reader, max int) (text []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(text)+len(frag) > max+2 { // room for "\r\n"
				tooLong, text = true, nil
			} else {
				text = append(text, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		text = bytes.TrimSuffix(text, []byte("\n"))
		text = bytes.TrimSuffix(text, []byte("\r"))
		return text, tooLong, err
	}
}
