package smtpd

import (
	"context"
	"testing"
)

// Unicode case folding of local parts: with SMTPUTF8, "alİce" (U+0130)
// must not reach alice and U+212A KELVIN SIGN must not reach k.
func TestRcptLocalPartFoldsASCIIOnly(t *testing.T) {
	ts := newTestServer(t, nil)
	if err := ts.srv.d.Dir.AddUser(context.Background(), "k@example.org", "x"); err != nil {
		t.Fatal(err)
	}
	cl := ts.dial(t, RoleMX)
	cl.cmd("EHLO client.remote.test", "250 ")
	cl.cmd("MAIL FROM:<a@remote.test> SMTPUTF8", "250 2.1.0")
	cl.cmd("RCPT TO:<al\u0130ce@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<\u212A@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<ALICE@example.org>", "250 2.1.5")
	cl.cmd("RCPT TO:<K@example.org>", "250 2.1.5")
}
