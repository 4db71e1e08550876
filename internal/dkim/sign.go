package dkim

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// HeaderKeys are the header fields a signature covers, in the order they
// are hashed. From: is listed twice ("oversigned", RFC 6376 8.15): a
// second From: added on the way invalidates the signature, so nobody can
// prepend a forged From: that a reader's client would show. Fields that
// a message lacks are hashed as absent, which has the same effect for
// them: none can be added later.
var HeaderKeys = []string{
	"From", "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date",
	"Message-ID", "In-Reply-To", "References", "MIME-Version",
	"Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe",
	"List-Unsubscribe-Post",
}

// MaxHeaderBytes bounds the header section a signer reads into memory
// (go-msgauth keeps the header to hash it at the end). A message whose
// header section is larger is delivered unsigned.
const MaxHeaderBytes = 256 << 10

// ErrHeaderTooLarge means the message was not signed because its header
// section exceeds MaxHeaderBytes.
var ErrHeaderTooLarge = fmt.Errorf("dkim: header section over %d bytes", MaxHeaderBytes)

// Stream signs a message as it is written, with one signer per key, and
// keeps in memory only the header section (bounded) and the hash states.
// Write never fails: a message that cannot be signed is still a message,
// and Close says why it got no signature.
type Stream struct {
	keys    []*Key
	signers []*msgauth.Signer
	inHdr   bool
	hdrN    int
	tail    []byte // last bytes of the header seen, to find CRLF CRLF across writes
	err     error
	closed  bool
}

// NewStream starts signing a message with keys (relaxed/relaxed,
// HeaderKeys). The caller must call Close or Abort.
func NewStream(keys []*Key) (*Stream, error) {
	s := &Stream{keys: keys, inHdr: true}
	for _, k := range keys {
		sg, err := msgauth.NewSigner(&msgauth.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
			BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
			HeaderKeys:             HeaderKeys,
		})
		if err != nil {
			s.Abort()
			return nil, fmt.Errorf("dkim: signer %s %s: %w", k.Domain, k.Selector, err)
		}
		s.signers = append(s.signers, sg)
	}
	return s, nil
}

// Write feeds message bytes (CRLF line ends) to every signer.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil || s.closed {
		return len(p), nil
	}
	if s.inHdr {
		s.scanHeader(p)
		if s.err != nil {
			return len(p), nil
		}
	}
	for _, sg := range s.signers {
		if _, err := sg.Write(p); err != nil {
			s.err = fmt.Errorf("dkim: sign: %w", err)
			return len(p), nil
		}
	}
	return len(p), nil
}

// scanHeader follows the header section to its end (an empty line) and
// stops the signing once it grows past MaxHeaderBytes.
func (s *Stream) scanHeader(p []byte) {
	buf := append(s.tail, p...)
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		s.inHdr = false
		s.hdrN += i + 4 - len(s.tail)
	} else {
		s.hdrN += len(p)
	}
	if s.hdrN > MaxHeaderBytes {
		s.err = ErrHeaderTooLarge
	}
	if len(buf) > 3 {
		buf = buf[len(buf)-3:]
	}
	s.tail = append(s.tail[:0], buf...)
}

// Close ends the message and returns the DKIM-Signature header fields to
// put on top of it, one per key, each ending in CRLF. On error nothing is
// returned: the message goes unsigned.
func (s *Stream) Close() ([]byte, error) {
	if s.closed {
		return nil, errors.New("dkim: close after close")
	}
	s.closed = true
	var errs []error
	for _, sg := range s.signers {
		errs = append(errs, sg.Close())
	}
	if s.err != nil {
		return nil, s.err
	}
	var out strings.Builder
	for i, sg := range s.signers {
		if errs[i] != nil {
			return nil, fmt.Errorf("dkim: sign %s %s: %w", s.keys[i].Domain, s.keys[i].Selector, errs[i])
		}
		out.WriteString(sg.Signature())
	}
	return []byte(out.String()), nil
}

// Abort ends the signers without a signature (their goroutines exit).
func (s *Stream) Abort() {
	if s.closed {
		return
	}
	s.closed = true
	for _, sg := range s.signers {
		sg.Close()
	}
}

// Selectors names the keys as "selector/algo" items, for log lines.
func (s *Stream) Selectors() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.Selector + "/" + k.Algo
	}
	return out
}
