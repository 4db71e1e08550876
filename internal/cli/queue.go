package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"kanmon/internal/admin"
	"kanmon/internal/scheduler"
)

// cmdQueue talks to the running server's admin listener (/queue/...), so
// the scheduler, not this process, touches the spool.
func cmdQueue(args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"queue: list|show|flush|hold|release|delete"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("queue", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (for listeners.admin)")
	adminAddr := fs.String("admin", "", "admin listener HOST:PORT (instead of --config)")
	tokenFile := fs.String("token-file", "", "admin token file (default: DATA_DIR/admin.token of --config)")
	asJSON := fs.Bool("json", false, "JSON output (list, show)")
	sender := fs.String("sender", "", "filter: envelope sender; <> is the null sender")
	domain := fs.String("domain", "", "filter: recipient domain")
	client := fs.String("client", "", "filter: client address")
	older := fs.String("older", "", "filter: at least this old, e.g. 2h")
	lane := fs.String("lane", "", "filter: normal or bounce")
	filterFlag := fs.Bool("filter", false, "act on every message matching the filter flags")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	addr, tokPath := *adminAddr, *tokenFile
	// With --admin and neither --config nor --token-file there is no
	// token to send: the server then answers 401 and says where it is.
	if addr == "" || tokPath == "" && *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		if addr == "" {
			if addr = cfg.Listeners.Admin; addr == "" {
				return errors.New("listeners.admin is off: the queue commands need it")
			}
		}
		if tokPath == "" {
			tokPath = cfg.AdminTokenPath()
		}
	}
	token := ""
	if tokPath != "" {
		if token, err = admin.ReadToken(tokPath); err != nil {
			return fmt.Errorf("queue: %w (run as the user kanmon serve runs as)", err)
		}
	}
	addr = dialable(addr)
	q := url.Values{}
	for k, v := range map[string]string{"sender": *sender, "domain": *domain, "client": *client, "older": *older, "lane": *lane} {
		if v != "" {
			q.Set(k, v)
		}
	}
	base := "http://" + addr + "/queue/"
	hc := &http.Client{Timeout: 60 * time.Second, Transport: bearer{token}}
	switch sub {
	case "list":
		var list []scheduler.Info
		if err := getJSON(hc, base+"list?"+q.Encode(), &list); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.Stdout, list)
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAGE\tLANE\tSIZE\tFROM\tRECIPIENTS\tSTATE")
		for _, in := range list {
			from := in.From
			if from == "" {
				from = "<>"
			}
			var rcpts []string
			for _, r := range in.Rcpts {
				rcpts = append(rcpts, r.Addr+"("+r.Status+")")
			}
			state := "active"
			if in.Held {
				// The reason says what to do, e.g. after unclean stops.
				state = "held: " + in.HoldReason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", in.ID, time.Since(in.Received).Round(time.Second), in.Lane, in.Size,
				from, strings.Join(rcpts, ","), state)
		}
		tw.Flush()
		fmt.Fprintf(env.Stdout, "%d message(s)\n", len(list))
		return nil
	case "show":
		if len(pos) != 1 {
			return usageError{"queue show ID"}
		}
		var in scheduler.Info
		if err := getJSON(hc, base+"show?id="+url.QueryEscape(pos[0]), &in); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(env.Stdout, in)
		}
		from := in.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(env.Stdout, "id: %s\nfrom: %s\nreceived: %s\norigin: %s\nclient: %s\nlane: %s\nsize: %d\nheld: %v\n",
			in.ID, from, in.Received.Format(time.RFC3339), in.Origin, in.ClientIP, in.Lane, in.Size, in.Held)
		if in.Held {
			fmt.Fprintf(env.Stdout, "hold_reason: %s\n", in.HoldReason)
		}
		if in.UncleanStops > 0 {
			fmt.Fprintf(env.Stdout, "unclean_stops: %d\n", in.UncleanStops)
		}
		for _, r := range in.Rcpts {
			fmt.Fprintf(env.Stdout, "rcpt: %s %s attempts=%d", r.Addr, r.Status, r.Attempts)
			if r.Verified != "" {
				fmt.Fprintf(env.Stdout, " verified=%q", r.Verified)
			}
			if r.Last != "" {
				fmt.Fprintf(env.Stdout, " last=%q", r.Last)
			}
			if !r.Next.IsZero() && r.Status == "pending" {
				fmt.Fprintf(env.Stdout, " next=%s", r.Next.Format(time.RFC3339))
			}
			fmt.Fprintln(env.Stdout)
		}
		fmt.Fprintf(env.Stdout, "\n%s", in.Headers)
		return nil
	case "flush", "hold", "release", "delete":
		switch {
		case len(pos) == 1 && !*filterFlag:
			q = url.Values{"id": {pos[0]}}
		case len(pos) == 0 && (*filterFlag || sub == "flush"):
			if sub != "flush" && len(q) == 0 {
				return usageError{"queue " + sub + " --filter needs at least one of --sender, --domain, --client, --older, --lane"}
			}
		default:
			return usageError{"queue " + sub + " ID | --filter [--sender S] [--domain D] [--client IP] [--older DUR] [--lane L]"}
		}
		req, _ := http.NewRequest("POST", base+sub+"?"+q.Encode(), nil)
		req.Header.Set("X-Kanmon-Admin", "1")
		var out struct {
			IDs []string `json:"ids"`
		}
		if err := doJSON(hc, req, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s: %d message(s)\n", sub, len(out.IDs))
		for _, id := range out.IDs {
			fmt.Fprintln(env.Stdout, id)
		}
		return nil
	}
	return usageError{fmt.Sprintf("queue: unknown subcommand %q", sub)}
}

// bearer sends the admin token with every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// dialable turns a wildcard listen address (":8025", "0.0.0.0:8025",
// "[::]:8025") into the loopback address to reach it at.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func getJSON(hc *http.Client, u string, v any) error {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	return doJSON(hc, req, v)
}

func doJSON(hc *http.Client, req *http.Request, v any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin listener: %w (is kanmon serve running?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin listener: %s", resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("admin listener: bad answer: %w", err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
