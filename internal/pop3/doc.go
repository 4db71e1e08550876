// Package pop3 serves the Maildirs that local delivery writes over POP3.
//
// # Protocol
//
// RFC 1939 POP3 (USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP,
// UIDL), RFC 2449 CAPA with PIPELINING and RESP-CODES (RFC 3206 [SYS/TEMP],
// [SYS/PERM], [AUTH], [IN-USE]), RFC 2595 STLS and RFC 5034 SASL with the
// PLAIN mechanism (RFC 4616, with or without an initial response; PLAIN is a
// dozen lines, parsed here). One Server serves one listener: a plain one
// (the port 110 role) offers STLS when Config.TLS is set; a TLS listener
// (the port 995 role, POP3S) is recognised from its *tls.Conn connections.
//
// USER/PASS and AUTH are refused on a connection that is not encrypted
// ("-ERR [AUTH] ... use STLS first") unless Config.AllowPlaintextAuth is
// set, and CAPA does not advertise them there. Commands pipelined behind
// STLS are refused and the connection closed, so nothing said in clear is
// carried into the TLS session.
//
// APOP is not offered: it needs the server to keep every password in a
// form equivalent to plain text (the MD5 digest is computed from the
// password itself), while kanmon stores only argon2id hashes; and APOP's
// MD5 challenge-response is broken anyway. The greeting therefore has no
// <timestamp>, and "APOP" is answered with -ERR. Clients use USER/PASS or
// AUTH PLAIN inside TLS instead.
//
// # Mailbox
//
// After login the mailbox is listed once (maildir.Dir.List, which moves new
// messages to cur/) and is fixed for the session, as RFC 1939 says. Unique
// ids are derived from the Maildir unique name, so they are the same in
// every session. DELE only marks; QUIT in the TRANSACTION state enters the
// UPDATE state and removes the marked messages all or nothing
// (maildir.Dir.Remove, journalled); a session that ends any other way
// (dropped connection, timeout, limit, server shutdown deadline) deletes
// nothing. RSET clears the marks. Messages are streamed from their files
// with CRLF line endings and dot-stuffing, so memory does not depend on
// message size, and LIST/STAT sizes are the octets as sent (CRLF counted,
// stuffing not).
//
// A mailbox is open in at most one session at a time in the process (POP3
// and POP3S Servers share the lock): a second login gets "-ERR [IN-USE]".
//
// # Limits
//
// Every input is bounded (Config): line length (an overlong line closes the
// connection), commands per session (MaxCommands plus five per message, so
// a whole mailbox can always be fetched and deleted in one session),
// refused commands per session, idle time (autologout, 10 minutes by
// default as RFC 1939 requires at least), connections per client address
// (an IPv6 client by its /64) and in total. Failed logins go through
// auth.Authenticator, whose throttle is shared with SMTP AUTH: failures in
// either protocol count toward one limit per address and per account, and a
// throttled login gets "-ERR [SYS/TEMP]".
//
// # Logs
//
// Each connection gets an id (logging.NewID('c')), named in the greeting
// and in refusals, and every log line of the connection carries it with
// the listener name: connect, tls, each command (cmd; PASS, AUTH and APOP
// payloads and SASL responses logged as "[redacted]"), each reply (the
// status line only, never message content), each auth outcome (auth, with
// rule when refused) and disconnect with counts. See docs/logging.md.
//
// # POP-before-SMTP
//
// When Config.PopBefore is set, every successful login records the
// client's address in the popbefore.Registry, and the SMTP server lets that
// address relay for the configured window. It exists only for old clients
// that cannot do SMTP AUTH, and is off by default. SMTP AUTH is better:
// POP-before-SMTP authorises an address, not a person, so everyone sharing
// the address (a NAT, a carrier-grade NAT, a proxy, a café's Wi-Fi) can
// relay during the window; and the mail it lets through carries no
// per-message identity, so the server cannot check the sender address
// against an account or say in the logs who sent a message.
//
// SECURITY: the server trusts nothing the client says before a successful
// login, and after it only message numbers of its own mailbox. Passwords
// travel only inside TLS unless AllowPlaintextAuth is set, are checked by
// auth.Authenticator (argon2id, constant time, throttled with SMTP AUTH),
// and never reach a log. The account name returned by the authenticator is
// validated (directory.Normalize) before it becomes a mailbox path; file
// names are read from the Maildir, never taken from the client, and only
// regular files are served. It exposes to a logged-in user their own
// mailbox only; to anyone else the greeting (host name, no software name or
// version), the capability list and refusals.
package pop3
