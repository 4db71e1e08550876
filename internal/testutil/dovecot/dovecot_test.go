package dovecot

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartGreetsAndStops(t *testing.T) {
	inst := Start(t, Options{})
	c, err := net.DialTimeout("tcp", addr(inst.POP3), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("POP3 greeting %q, %v\n%s", line, err, inst.Log())
	}
	inst.Stop()
	if c, err := net.DialTimeout("tcp", addr(inst.IMAP), time.Second); err == nil {
		c.Close()
		t.Errorf("instance still answers after Stop")
	}
	inst.Stop()
}
