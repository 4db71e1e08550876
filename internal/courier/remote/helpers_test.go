package remote

import (
	"io"
	"net"

	"kanmon/internal/queue"
)

// ownUser is an envelope from our authenticated user alice.
func ownUser(rcpts ...string) queue.Envelope {
	env := queue.Envelope{From: "alice@example.org", Origin: queue.OriginAuthenticated, AuthUser: "alice@example.org", ClientIP: "127.0.0.1"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
	}
	return env
}

func testMessage(from, to, subject string) string {
	return "Received: from client (127.0.0.1) by mx.example.org\r\nFrom: " + from + "\r\nTo: " + to +
		"\r\nSubject: " + subject + "\r\nMessage-Id: <" + subject + "@example.org>\r\n\r\nbody of " + subject + "\r\n"
}

// readerConn reads through r (a bufio.Reader over Conn) and writes to Conn.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }
