package msgauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"kanmon/internal/config"
	"kanmon/internal/policy"
)

// errVerified stops the tee once the verifier needs no more input.
var errVerified = errors.New("msgauth: verifier done")

// Stream is one message going through the stage: write the message (as
// it goes into the queue file) to it, then call Finish, or Abort.
type Stream struct {
	c   *Checker
	s   Session
	out io.Writer

	hdr      []byte // the header section so far
	scanned  int    // hdr is known to hold no end of header before this
	inHeader bool
	overflow bool
	fields   [][]byte // the header fields, once the header is complete

	ctx    context.Context
	cancel context.CancelFunc
	pw     *io.PipeWriter // to the DKIM verifier; nil when none runs
	done   chan verified
	sigs   []DKIMResult // the signatures, in header order
}

type verified struct {
	v   []*dkim.Verification
	err error
}

// Start returns the Stream for one message; what it passes on is written
// to out (the queue file).
func (c *Checker) Start(out io.Writer, s Session) *Stream {
	st := &Stream{c: c, s: s, out: out, inHeader: true}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	return st
}

// Write takes the next bytes of the message. It never fails: the queue
// writer reports its own errors at commit, and the stage's at Finish.
func (st *Stream) Write(p []byte) (int, error) {
	switch {
	case st.overflow:
	case st.inHeader:
		st.hdr = append(st.hdr, p...)
		if end := headerEnd(st.hdr, st.scanned); end >= 0 {
			st.endHeader(end)
		} else if len(st.hdr) > MaxHeader {
			st.overflow, st.hdr = true, nil
		} else {
			st.scanned = max(0, len(st.hdr)-3)
		}
	default:
		st.out.Write(p)
		st.tee(p)
	}
	return len(p), nil
}

// headerEnd returns the length of the header fields in h (the offset of
// the blank line that ends them), or -1 while it has not come.
func headerEnd(h []byte, from int) int {
	if bytes.HasPrefix(h, []byte("\r\n")) {
		return 0
	}
	if i := bytes.Index(h[from:], []byte("\r\n\r\n")); i >= 0 {
		return from + i + 2
	}
	return -1
}

// endHeader passes the filtered header on, and starts the verifier on
// the original one when there are signatures to verify.
func (st *Stream) endHeader(end int) {
	st.inHeader = false
	fields := splitFields(st.hdr[:end])
	st.fields = fields
	kept, _ := FilterHeader(st.hdr[:end], st.c.authservID)
	st.out.Write(kept)
	st.out.Write(st.hdr[end:])
	if st.c.cfg.DMARC != config.ActionOff {
		st.startVerifier(fields)
	}
	st.tee(st.hdr)
	st.hdr = nil
}

// startVerifier starts go-msgauth's verifier on a pipe when the header
// has signatures (at most MaxSignatures of them are verified).
func (st *Stream) startVerifier(fields [][]byte) {
	for _, f := range fields {
		if is(f, fieldDKIMSig) {
			t := tags(fieldValue(f))
			st.sigs = append(st.sigs, DKIMResult{Domain: strings.ToLower(t["d"]), Selector: t["s"], Identifier: t["i"]})
		}
	}
	if len(st.sigs) == 0 {
		return
	}
	pr, pw := io.Pipe()
	st.pw, st.done = pw, make(chan verified, 1)
	opts := &dkim.VerifyOptions{LookupTXT: st.c.lookupTXT(st.ctx), MaxVerifications: MaxSignatures}
	go func() {
		var r verified
		defer func() {
			// A panic in the verifier (hostile input in a library's
			// parser) stays with this message: its signatures count as
			// not verified, and the server keeps serving.
			if p := recover(); p != nil {
				r = verified{err: fmt.Errorf("dkim verifier failed: %v", p)}
			}
			// A verifier that stopped early (a broken signature) must
			// not block the session's writes.
			pr.CloseWithError(errVerified)
			st.done <- r
		}()
		v, err := verifyDKIM(pr, opts)
		r = verified{v, err}
	}()
}

// verifyDKIM is go-msgauth's verifier; a variable so a test can make it
// panic.
var verifyDKIM = dkim.VerifyWithOptions

// tee feeds the verifier, until it stops reading.
func (st *Stream) tee(p []byte) {
	if st.pw == nil || len(p) == 0 {
		return
	}
	if _, err := st.pw.Write(p); err != nil {
		st.pw = nil
	}
}

// Abort ends the stream without a verdict (the transfer failed or the
// message was refused for another reason).
func (st *Stream) Abort() {
	if st.pw != nil {
		st.pw.CloseWithError(errVerified)
		st.pw = nil
	}
	st.cancel()
}

// Finish completes the message and gives the stage's verdict.
func (st *Stream) Finish() Result {
	defer st.cancel()
	if st.overflow {
		st.Abort()
		return st.refuse(RuleHeaderSize, 552, "5.3.4", "message header section over 256 KiB")
	}
	if st.inHeader {
		// No blank line: the message is all header.
		st.endHeader(len(st.hdr))
	}
	if st.pw != nil {
		st.pw.Close()
	}
	st.collect()
	return st.decide()
}

// collect waits (at most Budget) for the verifier's results.
func (st *Stream) collect() {
	if st.done == nil {
		return
	}
	var r verified
	select {
	case r = <-st.done:
	case <-time.After(st.c.Budget):
		st.cancel()
		r.err = errors.New("verification took too long")
	}
	if len(st.sigs) > MaxSignatures {
		st.s.Log.Info("decision", "rule", RuleDKIM, "action", config.ActionLog,
			"reason", "only the first signatures are verified", "signatures", len(st.sigs), "verified", MaxSignatures)
		st.sigs = st.sigs[:MaxSignatures]
	}
	for i := range st.sigs {
		d := &st.sigs[i]
		if i >= len(r.v) || r.v[i] == nil {
			d.Result, d.Reason = "temperror", "not verified"
			if r.err != nil {
				d.Reason = r.err.Error()
			}
			continue
		}
		d.Result, d.Reason = dkimResult(r.v[i].Err)
	}
}

// dkimResult maps go-msgauth's verdict to RFC 8601's words.
func dkimResult(err error) (string, string) {
	switch {
	case err == nil:
		return "pass", ""
	case dkim.IsTempFail(err):
		return "temperror", err.Error()
	case dkim.IsPermFail(err):
		return "permerror", err.Error()
	}
	return "fail", err.Error()
}

// refuse is a refusing Result for rule.
func (st *Stream) refuse(rule string, code int, enh, reason string, attrs ...any) Result {
	return Result{Refused: true, Verdict: policy.Rejected(rule, code, enh, reason+" (rule "+rule+")"), Attrs: attrs}
}
