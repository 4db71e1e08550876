// Command dnsfix is the benchmark's fixture DNS server, for a server
// under test that can only find the next hop through the system's
// resolver (chasquid): it answers MX for each -mx domain with one host
// whose A record is 127.0.0.1, and NXDOMAIN to everything else, so SPF
// and other lookups end at once without leaving the machine.
package main

import (
	"flag"
	"log"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	addr := flag.String("addr", "127.0.0.153:53", "address to serve on (UDP and TCP)")
	mx := flag.String("mx", "remote.test", "comma-separated domains whose MX is 127.0.0.1")
	flag.Parse()
	domains := map[string]bool{}
	for _, d := range strings.Split(*mx, ",") {
		domains[dns.Fqdn(strings.ToLower(d))] = true
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
		if len(q.Question) == 1 {
			name := strings.ToLower(q.Question[0].Name)
			switch {
			case domains[name] && q.Question[0].Qtype == dns.TypeMX:
				m.Rcode = dns.RcodeSuccess
				m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 3600},
					Preference: 10, Mx: "mx." + name})
			case domains[strings.TrimPrefix(name, "mx.")] && strings.HasPrefix(name, "mx."):
				m.Rcode = dns.RcodeSuccess
				if q.Question[0].Qtype == dns.TypeA {
					rr, _ := dns.NewRR(name + " 3600 IN A 127.0.0.1")
					m.Answer = append(m.Answer, rr)
				}
			case domains[name]:
				m.Rcode = dns.RcodeSuccess // the name exists, no record of that type
			}
		}
		w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	for _, n := range []string{"udp", "tcp"} {
		go func() { errs <- (&dns.Server{Addr: *addr, Net: n, Handler: h}).ListenAndServe() }()
	}
	log.Fatal(<-errs)
}
