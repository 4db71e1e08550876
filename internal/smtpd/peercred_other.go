//go:build !linux

package smtpd

import (
	"errors"
	"net"
)

// peerUID is only implemented on Linux (SO_PEERCRED); elsewhere the local
// socket refuses every client.
func peerUID(nc net.Conn) (uint32, error) {
	return 0, errors.New("peer credentials are not supported on this system")
}
