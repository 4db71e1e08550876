package cli

// configTemplate is the commented kanmon.toml that `kanmon init` writes.
// Every setting is present with its safe default.
const configTemplate = `# kanmon configuration. Relative paths are relative to this file.
# Check it with: kanmon check-config --config {{.Path}}

# Name this server gives in its greeting and Received: lines.
hostname = "{{.Hostname}}"

# Domains whose mail is delivered to local accounts here.
domains = [{{.Domains}}]

# Partner domains this server accepts mail for and forwards (backup MX).
# Mail for them is accepted from anyone, like local mail, and queued, but
# only for recipients the partner has: each is verified at RCPT (see
# [verify] and [relay_verify."DOMAIN"] at the end).
relay_domains = []

# Client networks allowed to relay without authentication, e.g.
# ["192.0.2.0/24", "2001:db8::/48"]. Empty by default: even loopback is
# not trusted unless listed. Prefer SMTP AUTH on the submission port.
trusted_networks = []

# Where the account database, the queue and the Maildirs live.
data_dir = "{{.DataDir}}"

# The user "kanmon serve" serves as. Started as root, it binds its ports
# and reads its certificate, then becomes this user for good; started as
# root without run_as, it refuses. Started as an ordinary user (systemd
# User=), it must be that user or run_as must be "". The data directory
# belongs to this user (kanmon init --user sets that up).
run_as = "{{.RunAs}}"

# Logs: "json" (for kanmon trace) or "text"; level debug, info, warn, error.
log_format = "json"
log_level = "info"
# Log to this file instead of stderr ("" = stderr).
log_file = ""

[listeners]
# Each listener is off when its address is "".
mx = "{{.MX}}"                 # port 25 role: mail from other servers, no AUTH
submission = "{{.Submission}}" # port 587 role: STARTTLS, then AUTH, then MAIL
smtps = "{{.SMTPS}}"           # port 465 role: implicit TLS, AUTH required
pop3 = "{{.POP3}}"             # port 110 role: STLS before login
pop3s = "{{.POP3S}}"           # port 995 role: implicit TLS
admin = "{{.Admin}}"           # /healthz, /metrics, /queue/ (kanmon queue); keep it on loopback
# Requests to the admin listener must name it in their Host header by its
# own address or localhost; list other names it may be called by here.
# Everything but /healthz and /metrics also needs the token in
# DATA_DIR/admin.token (Authorization: Bearer ...).
admin_hosts = []

[tls]
cert = "{{.Cert}}"
key = "{{.Key}}"

[limits]
max_message_size = "25MiB"      # advertised in SIZE; 552 5.3.4 above it
max_line_length = 2048          # command lines (RFC 5321 allows 512)
max_data_line_length = 65536    # lines inside a message
max_recipients = 100            # per message; 452 4.5.3 above it
mailbox_quota = "1GiB"          # per Maildir (0 = none; kanmon user quota sets one account's); 452 4.2.2 at RCPT when full
max_errors = 5                  # rejected commands before 421 and close
max_commands = 10000            # commands per connection
command_timeout = "5m"          # RFC 5321 4.5.3.2
data_timeout = "10m"
# Connections are counted per listener: each has its own pool, so a
# flood on mx cannot lock out submission or POP3 users.
max_connections = 1000          # per listener; 421 4.7.0 above it
max_connections_per_ip = 20     # per listener and client (IPv6: per /64)
# Pools of their own size, e.g. { mx = 2000, submission = 200 }
# (mx, submission, smtps, pop3, pop3s, sendmail).
max_connections_by_listener = {}
# Stress mode: when an SMTP listener's pool is this full (percent), its
# new and idle sessions get a short command timeout and error limit, so
# idle connections give their slots back first.
stress_threshold = 80
stress_command_timeout = "10s"
stress_max_errors = 2
auth_max_failures = 10          # failed logins per address or account ...
auth_failure_window = "15m"     # ... within this window before 454 4.7.0

[queue]
max_messages = 100000           # above any of these bounds new mail gets
max_size = "4GiB"               # 452 4.3.1 (temporary): nothing is dropped
min_free_space = "512MiB"
workers = 16                    # delivery workers (DSNs get their own quarter)
retry_min = "5m"                # first retry after a temporary failure,
retry_max = "4h"                # doubling up to this
expire = "120h"                 # then give up (a DSN for our own users' mail)

[delivery]
# Static next hops: recipient domain -> "HOST:PORT", bypassing MX lookup,
# e.g. { "partner.example" = "192.0.2.25:25" }.
routes = {}
# Send all outbound mail through this server instead of MX lookup:
# "HOST:587" (STARTTLS required) or "HOST:465" (implicit TLS). Its
# certificate is verified. "" = deliver directly (port 25, MX lookup).
smarthost = ""
# AUTH PLAIN credentials for the smarthost. The password is read from its
# own file (keep it mode 0600); it never goes in this file or in logs.
smarthost_user = ""
smarthost_password_file = ""
# PEM CA certificate(s) to trust for the smarthost ("" = system roots).
smarthost_ca_file = ""
# Name sent in EHLO ("" = hostname).
helo_name = ""
max_concurrency = 32            # outgoing connections in total
max_per_domain = 20             # outgoing connections per destination domain
# Our own users are told when their mail has waited this long ("0s" = never).
delay_warning = "4h"
# One SMTP session with a remote server ends after this (plus 10m for the
# message itself), however promptly the server answers each command.
transaction_timeout = "30m"

[dns]
# Every DNS question (delivery's MX and address lookups, and the checks of
# incoming mail) goes to this server, e.g. "127.0.0.1:53"; "" = the
# system resolver. (Formerly delivery.dns_server.)
server = ""
timeout = "5s"                  # bound of each question

[policy]
# Refuse mail from outside that claims one of our domains as its envelope
# sender (our users send through submission).
reject_forged_local_sender = true

[inbound]
# Checks of mail arriving on the MX listener, decided during the SMTP
# dialogue. Submission, SMTPS, trusted_networks and the sendmail socket
# are exempt. Each action is "reject", "tempfail", "log" (only a decision
# line: watch a rule before enforcing it) or "off".
# Wait this long before greeting on MX; a client that talks first is an
# early talker (zombie bots do not wait). "0s" = no wait.
greet_delay = "2s"
early_talker = "reject"         # 554 5.5.1
# A client that waited is greeted at once for this long (kept in memory).
greet_remember = "24h"
# Access lists: addresses, networks ("192.0.2.0/24"), host names or
# domain patterns (".example.com"); names count only when the reverse name
# resolves back to the client. allow skips every check below; deny
# answers 554 5.7.1.
allow = []
deny = []
# Home PCs speaking straight to an MX: a reverse name that looks dynamic
# (the address in the name, or labels such as dyn, dhcp, ppp, pool, dsl,
# cable, client; add your own in dynamic_labels): 550 5.7.1.
dynamic_client = "reject"
dynamic_labels = []
# Policy-block zones (PBL style): listed addresses should not send mail
# directly, e.g. ["pbl.example.org"]: 550 5.7.1.
policy_block_zones = []
policy_block = "reject"
missing_ptr = "tempfail"        # no reverse name at all: 450 4.7.25
fcrdns_mismatch = "log"         # reverse name does not resolve back
# DNS blocklists: each { zone = "bl.example.org", weight = 1.0,
# codes = ["127.0.0.2"], url = "https://bl.example.org/lookup?ip=" }
# (codes empty: any 127.0.0.x answer counts). The weights of the lists
# naming the client add up; at dnsbl_threshold it gets 554 5.7.1.
dnsbl = []
dnsbl_threshold = 1.0
dnsbl_listed = "reject"
dnsbl_timeout = "3s"            # a list slower than this counts as not listing
dnsbl_cache = "1h"              # longest a list's answer is kept (its TTL, at least 1m); 0 = no cache
# MAIL FROM: the sender domain must exist (NXDOMAIN 550 5.1.8, null MX
# 550 5.7.27; a DNS failure is always 451 4.4.3).
sender_domain = "reject"
spf_fail = "reject"             # SPF fail: 550 5.7.23
spf_temperror = "tempfail"      # 451 4.7.24 (tempfail, log or off)
# Greylisting at RCPT: a new (client /24 or /64, sender, recipient)
# triplet gets 451 4.7.1 until greylist_delay has passed; real servers
# retry, most spam software does not. "on", "log" or "off". Kept in
# DATA_DIR/state.db.
greylist = "off"
greylist_delay = "5m"           # how long a new triplet waits
greylist_expiry = "4h"          # how long its retry may take to come
greylist_pass_ttl = "840h"      # a triplet that passed passes at once (35 days)
# DATA: the header From: must hold exactly one valid address, else
# 550 5.6.0.
from_header = "reject"
# DKIM signatures are verified (at most 5 per message) and the From:
# domain's DMARC policy applied: "enforce" (p=reject: 550 5.7.1;
# p=quarantine: delivered into the recipient's Junk folder), "log"
# (recorded only) or "off" (no DKIM verification, no DMARC).
dmarc = "enforce"
# Our name in the Authentication-Results header we add (any such header
# already claiming it is removed first); "" = the hostname.
authserv_id = ""

[pop3]
allow_plaintext_auth = false    # never let passwords cross the network in clear
idle_timeout = "10m"            # RFC 1939 autologout
# POP-before-SMTP (legacy, off): a POP3 login lets that address relay for
# this long, e.g. "10m". SMTP AUTH is better: see the README.
pop_before_smtp = "0s"
pop_before_smtp_on_mx = false

[sendmail]
# Local submission for programs on this machine (cron, scripts): the
# server listens on DATA_DIR/public/kanmon.sock and "kanmon sendmail" (installed
# as /usr/sbin/sendmail by symlink) hands messages to it. The server knows
# the Unix user from the socket itself (SO_PEERCRED), never from what the
# program says, and lets it send only as the address mapped here.
enabled = false
# The socket; "" = DATA_DIR/public/kanmon.sock (the data directory is then
# mode 0711 so that local users can reach public/, and nothing else in it
# is readable by them). A path outside keeps the data directory 0700.
socket = ""
# Unix user name -> the address it sends as, e.g. { "root" = "root@example.org" }.
users = {}
# Unmapped users send as USER@default_domain; "" = unmapped users may not send.
default_domain = ""

[checkpassword]
# IMAP through Dovecot (docs/imap-with-dovecot.md): Dovecot runs
# "kanmon checkpassword", which asks this server over a local socket, so
# IMAP logins use kanmon's accounts and the same login throttle as SMTP
# and POP3.
enabled = false
# The socket; "" = DATA_DIR/public/auth.sock (the data directory is then
# mode 0711, as for the sendmail socket).
socket = ""
# Unix users allowed to ask (the server checks the socket's peer): they
# report the client address, so name only the IMAP server's auth user.
users = ["dovecot"]

[verify]
# Recipients of relay_domains are verified while the client waits for the
# answer to RCPT: by default the partner's own server is asked (its route
# in [delivery] routes, or its MX hosts other than this one) with EHLO,
# MAIL FROM:<>, RCPT TO and RSET, never DATA. An unknown recipient gets the
# partner's own 5xx; no answer (partner down, 4xx) gets 450 4.1.1.
positive_ttl = "168h"           # how long "exists" answers are cached
negative_ttl = "3h"             # how long "no such user" answers are cached
probe_timeout = "20s"           # bound of one verification
max_probes = 8                  # probes in flight at once
cache_size = 100000             # entries of each cache

# Per relay domain (optional; without a table the domain is probed):
# [relay_verify."partner.example"]
# method = "list"               # "probe" (default) or "list"
# list = "partner-recipients.txt" # one address per line, reloaded on change
# unverified = "defer"          # "accept" takes what cannot be verified;
#                               # unknown ones are then dropped unseen

[dkim]
# DKIM-sign (RFC 6376) mail from authenticated users, trusted networks
# and the sendmail socket whose envelope sender is in a local domain:
# one ed25519-sha256 and one rsa-sha256 signature, relaxed/relaxed, From:
# oversigned. Keys: DATA_DIR/dkim/DOMAIN/SELECTOR.ALGO.key (mode 0600);
# publish them with "kanmon dns-records DOMAIN", rotate with
# "kanmon dkim keygen" and "kanmon dkim activate".
sign = true
# Keys made for a local domain that has none (kanmon init, and the server
# at start, so a new domain signs from its first message): "both",
# "ed25519" or "rsa".
new_keys = "both"

[ratelimit]
# What authenticated users may send through submission and SMTPS, as
# token buckets: PER_HOUR refill over an hour, at most BURST at once.
# Over a limit: 450 4.7.1 with the time a retry passes. Counters live in
# DATA_DIR/state.db (see docs/ratelimits.md).
messages_per_hour = 100         # per account
messages_burst = 50
recipients_per_hour = 500
recipients_burst = 200
domains_per_hour = 100          # distinct recipient domains
domains_burst = 50
# The same per client address (IPv4, IPv6 /64): higher, since an office
# behind one NAT address shares it.
address_messages_per_hour = 1000
address_messages_burst = 300
address_recipients_per_hour = 5000
address_recipients_burst = 1000
address_domains_per_hour = 1000
address_domains_burst = 300
# An account that tries to send messages or recipients at this many times
# its limit is suspended (550 5.7.1 at MAIL; kanmon user unsuspend lifts
# it). 0 = never.
suspend_factor = 3.0
# Compromised-account alert (rule account.anomaly): this hour's
# recipients above anomaly_factor times the account's hourly average and
# above anomaly_floor, or more than anomaly_new_share of at least
# anomaly_min_sample recipients never written to before. "off", "log"
# or "suspend".
anomaly = "log"
anomaly_factor = 5.0
anomaly_floor = 50
anomaly_new_share = 0.9
anomaly_min_sample = 40
# New connections per minute from one client (IPv4, IPv6 /64) on the MX
# listener; more get 421 4.7.0 before the greeting. trusted_networks are
# exempt; 0 = off.
mx_connections_per_minute = 60

[batv]
# Bounce address tags (BATV, prvs): mail our users send to other servers
# leaves with the envelope sender prvs=KDDDSSSSSS=user@domain, signed
# with a key in DATA_DIR/batv/keys and valid for 7 days; a bounce (MAIL
# FROM:<>) to one of our addresses is accepted only when its recipient
# carries a valid tag, else 550 5.7.1 at RCPT. "enforce" refuses, "log"
# tags and only logs what it would refuse, "off" neither tags nor checks.
# A domain that sent untagged mail before (an upgrade, or turned on
# after "off") accepts untagged bounces for 7 days. Rotate the key with
# "kanmon batv rotate".
mode = "enforce"
# A mode of their own for some domains, e.g. { "example.org" = "log" }.
domains = {}

[submission]
# Header binding: a logged-in user (submission, SMTPS, or the sendmail
# socket when its address is an account) may put in From: and Sender:
# only its own address, its aliases and the domains delegated to it below;
# anything else gets "553 5.7.1" at the end of DATA (rule
# data.from_binding). "reject", "log" (decision line only) or "off".
from_binding = "reject"
# Domains whose every address an account may use in From:, e.g.
#   delegate = [{ account = "alice@example.org", domains = ["example.net"] }]
delegate = []
# Domains a trusted network (inside trusted_networks) may use in From:; a
# trusted network without an entry is not checked, e.g.
#   trusted_from = [{ network = "10.0.0.0/8", domains = ["example.org"] }]
trusted_from = []
`
