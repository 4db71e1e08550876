package cli

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"text/template"
)

func TestZZGenSeed(t *testing.T) {
	render := func(m map[string]string) string {
		var b strings.Builder
		template.Must(template.New("cfg").Parse(configTemplate)).Execute(&b, m)
		return b.String()
	}
	write := func(name, s string) {
		os.WriteFile("../config/testdata/fuzz/FuzzParse/"+name, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)), 0o644)
	}
	write("init_template", render(map[string]string{
		"Path": "/etc/kanmon/kanmon.toml", "Hostname": "mx.example.org", "Domains": `"example.org", "example.net"`,
		"MX": ":25", "Submission": ":587", "SMTPS": ":465", "POP3": "", "POP3S": "", "Admin": "127.0.0.1:8025",
		"Cert": "cert.pem", "Key": "key.pem"}))
	s := render(map[string]string{
		"Path": "/srv/kanmon/kanmon.toml", "Hostname": "mail.example.com", "Domains": `"example.com"`,
		"MX": "127.0.0.1:2525", "Submission": "127.0.0.1:2587", "SMTPS": "127.0.0.1:2465", "POP3": "127.0.0.1:2110", "POP3S": "[::1]:2995", "Admin": "127.0.0.1:8025",
		"Cert": "/etc/ssl/kanmon/cert.pem", "Key": "/etc/ssl/kanmon/key.pem"})
	s = strings.Replace(s, `pop_before_smtp = "0s"`, `pop_before_smtp = "10m"`, 1)
	s = strings.Replace(s, `trusted_networks = []`, `trusted_networks = ["192.0.2.0/24", "2001:db8::/48", "::ffff:10.0.0.0/104"]`, 1)
	s = strings.Replace(s, `relay_domains = []`, `relay_domains = ["partner.example"]`, 1)
	write("init_template_pop3", s)
}
