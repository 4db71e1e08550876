package queue

import (
	"errors"
	"fmt"
	"strconv"
)

// The prepend block: header fields that go on top of a message but are
// known only once all of it was read (DKIM signatures). See the package
// doc for the format.
const (
	// magicPrepend marks a file with a prepend block after the message.
	// An older kanmon refuses it as "not a queue file" rather than
	// delivering the block as part of the message.
	magicPrepend = "KANMON-QUEUE 2 "
	// footerLen is len("\nKANMON-PREPEND 0000000000\n").
	footerLen = 27
	// MaxPrepend bounds the prepend block.
	MaxPrepend = 64 << 10
)

// SetPrepend sets the header fields that go on top of the message (only
// for CreateWithPrepend; at most MaxPrepend bytes, each field ending in
// CRLF). Without a call the block is empty.
func (w *Writer) SetPrepend(p []byte) error {
	switch {
	case !w.withPrepend:
		return fmt.Errorf("queue: prepend %s: file created without a prepend block", w.env.ID)
	case len(p) > MaxPrepend:
		return fmt.Errorf("queue: prepend %s: %d bytes, over %d", w.env.ID, len(p), MaxPrepend)
	}
	w.prepend = append(w.prepend[:0], p...)
	return nil
}

// writeTrailer writes the prepend block and its footer after the message.
func (w *Writer) writeTrailer() error {
	if !w.withPrepend {
		return nil
	}
	w.bw.Write(w.prepend)
	_, err := fmt.Fprintf(w.bw, "\nKANMON-PREPEND %010d\n", len(w.prepend))
	return err
}

// trailerLen is the bytes the prepend block and footer add to the file.
func (w *Writer) trailerLen() int64 {
	if !w.withPrepend {
		return 0
	}
	return int64(len(w.prepend) + footerLen)
}

// readFooter finds the prepend block from the footer at the file's end.
func (m *Message) readFooter() error {
	if m.body < footerLen {
		return errors.New("prepend footer missing")
	}
	var ft [footerLen]byte
	if _, err := m.f.ReadAt(ft[:], m.offset+m.body-footerLen); err != nil {
		return fmt.Errorf("prepend footer: %w", err)
	}
	const tag = "\nKANMON-PREPEND "
	if string(ft[:len(tag)]) != tag || ft[footerLen-1] != '\n' {
		return errors.New("prepend footer malformed")
	}
	p, err := strconv.ParseInt(string(ft[len(tag):footerLen-1]), 10, 64)
	if err != nil || p < 0 || p > MaxPrepend || p > m.body-footerLen {
		return errors.New("prepend footer: bad length")
	}
	m.prepend = p
	m.body -= footerLen + p
	return nil
}

// CreateWithPrepend is Create for a message whose first header fields are
// known only at its end (DKIM signatures): set them with SetPrepend before
// Commit. The file gets the prepend block format (see the package doc).
func (s *Spool) CreateWithPrepend(env Envelope) (*Writer, error) {
	return s.create1(env, true)
}

// Prepend returns the message's prepend block (nil without one): header
// fields only kanmon wrote, which a courier may trust (the quarantine
// mark of internal/msgauth).
func (m *Message) Prepend() ([]byte, error) {
	if m.prepend == 0 {
		return nil, nil
	}
	p := make([]byte, m.prepend)
	if _, err := m.f.ReadAt(p, m.offset+m.body); err != nil {
		return nil, fmt.Errorf("queue: read prepend %s: %w", m.Envelope.ID, err)
	}
	return p, nil
}
