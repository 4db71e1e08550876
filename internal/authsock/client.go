package authsock

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"time"
)

// Ask sends one request to the server listening on the socket at path and
// returns its answer. timeout bounds the whole exchange (a password check
// of a throttled client is answered after a delay of up to 8 seconds).
func Ask(path string, r Request, timeout time.Duration) (Result, string, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return Temp, "", fmt.Errorf("authsock: connect %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(r.encode()); err != nil {
		return Temp, "", fmt.Errorf("authsock: send to %s: %w", path, err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
	if err != nil {
		return Temp, "", fmt.Errorf("authsock: reply from %s: %w", path, err)
	}
	return parseReply(line)
}
