package remote

// Outgoing connection reuse. Opening a connection costs a TCP handshake,
// a greeting, EHLO, often a TLS handshake and EHLO again, and a dozen
// system calls on our side, for a transaction that is itself a few
// commands. After a transaction that ended in step with the peer, the
// connection waits here for the next message to the same host; the next
// user sends RSET (RFC 5321 4.1.1.5) first, which both starts a clean
// transaction and tells a live connection from one the peer has dropped.
//
// SECURITY: a connection is only ever reused for the same address, host
// name and kind (MX or smarthost), so TLS and authentication are what a
// fresh connection would have had. The pool is bounded in connections,
// in messages per connection and in idle time; a connection that erred
// or saw a 421 is never put back.

import (
	"sync"
	"time"
)

// Defaults for reuse, chosen like Postfix's connection cache: a
// connection carries at most 100 messages and waits at most 5 s for the
// next one; at most 100 wait at once.
const (
	defaultReuseMessages = 100
	defaultReuseIdle     = 5 * time.Second
	defaultReuseConns    = 100
	// rsetTimeout bounds the reply to RSET on a reused connection: a
	// live peer answers at once, and a slow one is replaced by a fresh
	// connection rather than waited for.
	rsetTimeout = 10 * time.Second
)

// poolKey names the connections that may carry a message for a hop.
type poolKey struct {
	addr, host string
	smarthost  bool
}

func keyOf(h hop) poolKey { return poolKey{addr: h.addr, host: h.host, smarthost: h.smarthost} }

// pooled is an open session between transactions.
type pooled struct {
	c *smtpClient
	// uses counts the transactions the connection has carried.
	uses  int
	timer *time.Timer
}

// connPool holds idle connections by hop.
type connPool struct {
	maxConns int
	idle     time.Duration

	mu     sync.Mutex
	conns  map[poolKey][]*pooled
	n      int
	closed bool
}

// get takes the most recently used idle connection for k, or nil.
func (p *connPool) get(k poolKey) *pooled {
	p.mu.Lock()
	defer p.mu.Unlock()
	for list := p.conns[k]; len(list) > 0; list = p.conns[k] {
		e := list[len(list)-1]
		p.drop(k, len(list)-1)
		// A timer that already fired is closing this connection.
		if e.timer.Stop() {
			return e
		}
	}
	return nil
}

// put keeps e for the next transaction to k; false when the pool is full
// or closed, and the caller ends the session itself.
func (p *connPool) put(k poolKey, e *pooled) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.n >= p.maxConns {
		return false
	}
	if p.conns == nil {
		p.conns = map[poolKey][]*pooled{}
	}
	p.conns[k] = append(p.conns[k], e)
	p.n++
	e.timer = time.AfterFunc(p.idle, func() {
		if p.remove(k, e) {
			e.end()
		}
	})
	return true
}

// remove takes e out of the pool; false if someone else already did.
func (p *connPool) remove(k poolKey, e *pooled) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.conns[k] {
		if x == e {
			p.drop(k, i)
			return true
		}
	}
	return false
}

// drop removes entry i of k's list; p.mu is held.
func (p *connPool) drop(k poolKey, i int) {
	list := p.conns[k]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.conns, k)
	} else {
		p.conns[k] = list
	}
	p.n--
}

// close ends every idle connection with QUIT and keeps new ones out.
func (p *connPool) close() {
	p.mu.Lock()
	var all []*pooled
	for _, list := range p.conns {
		all = append(all, list...)
	}
	p.conns, p.n, p.closed = nil, 0, true
	p.mu.Unlock()
	// In parallel, so shutdown waits one QUIT timeout at most.
	var wg sync.WaitGroup
	for _, e := range all {
		if e.timer.Stop() {
			wg.Go(e.end)
		}
	}
	wg.Wait()
}

// end says QUIT and closes the connection.
func (e *pooled) end() {
	e.c.quit()
	e.c.conn.Close()
}

// idleConns counts the connections waiting in the pool.
func (p *connPool) idleConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
