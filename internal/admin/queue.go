package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kanmon/internal/scheduler"
)

// Queue is what the operator queue commands need from the scheduler,
// which owns a message while it works on it (see package scheduler).
type Queue interface {
	List(f scheduler.Filter) ([]scheduler.Info, error)
	Show(id string) (scheduler.Info, error)
	Apply(op scheduler.Op, id string, f scheduler.Filter) ([]string, error)
}

// QueueHandler serves the operator commands under /queue/ on the admin
// listener, behind the Guard's Host and token checks. Failures are logged
// to log as `admin` lines. Changes
// also need POST and the header "X-Kanmon-Admin: 1", which a browser will
// not send cross-origin without asking first.
//
// An error reply says what went wrong in plain words; the error itself,
// which may name files of the spool, goes to the log only.
//
//	GET  /queue/list?sender=&domain=&client=&older=&lane=
//	GET  /queue/show?id=
//	POST /queue/{flush,hold,release,delete}?id=  (or the filter parameters)
func QueueHandler(q Queue, log *slog.Logger) http.Handler {
	api := &queueAPI{q: q, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue/list", api.list)
	mux.HandleFunc("GET /queue/show", api.show)
	mux.HandleFunc("POST /queue/{op}", api.change)
	return mux
}

// queueAPI serves the /queue/ requests.
type queueAPI struct {
	q   Queue
	log *slog.Logger
}

func (a *queueAPI) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// fail answers text and logs one `admin` line with err's details.
func (a *queueAPI) fail(w http.ResponseWriter, r *http.Request, code int, text string, err error) {
	args := []any{"listener", "admin", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"queue_id", r.URL.Query().Get("id"), "code", code, "reply", text}
	if err != nil {
		args = append(args, "err", err.Error())
	}
	a.log.Info("admin", args...)
	a.reply(w, code, map[string]string{"error": text})
}

// notFound tells a missing message from a spool that cannot be read.
func (a *queueAPI) notFound(w http.ResponseWriter, r *http.Request, err error) {
	id := r.URL.Query().Get("id")
	if errors.Is(err, fs.ErrNotExist) {
		a.fail(w, r, http.StatusNotFound, "no such message in the queue", err)
		return
	}
	if id == "" || strings.ContainsAny(id, `/\`) || id[0] == '.' {
		a.fail(w, r, http.StatusBadRequest, "not a queue id", err)
		return
	}
	a.fail(w, r, http.StatusInternalServerError, "the queue could not be read; the server log has the details", err)
}

func (a *queueAPI) list(w http.ResponseWriter, r *http.Request) {
	f, err := filterFrom(r)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	list, err := a.q.List(f)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "the queue could not be read; the server log has the details", err)
		return
	}
	a.reply(w, http.StatusOK, list)
}

func (a *queueAPI) show(w http.ResponseWriter, r *http.Request) {
	in, err := a.q.Show(r.URL.Query().Get("id"))
	if err != nil {
		a.notFound(w, r, err)
		return
	}
	a.reply(w, http.StatusOK, in)
}

// change runs one of the POST operations (flush, hold, release, delete)
// by id or filter.
func (a *queueAPI) change(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Kanmon-Admin") != "1" {
		a.fail(w, r, http.StatusForbidden, "missing X-Kanmon-Admin: 1 header", nil)
		return
	}
	op := scheduler.Op(r.PathValue("op"))
	switch op {
	case "flush", "hold", "release", "delete":
	default:
		a.fail(w, r, http.StatusNotFound, fmt.Sprintf("unknown queue operation %q: use flush, hold, release or delete", truncate(string(op), 64)), nil)
		return
	}
	f, err := filterFrom(r)
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, err.Error(), nil)
		return
	}
	id := r.URL.Query().Get("id")
	if id == "" && f.Empty() && op != "flush" {
		a.fail(w, r, http.StatusBadRequest, "a filter needs at least one criterion (or give an id)", nil)
		return
	}
	ids, err := a.q.Apply(op, id, f)
	if err != nil && id != "" && len(ids) == 0 {
		a.notFound(w, r, err)
		return
	}
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("%s failed for some messages; the server log has the details", op), err)
		return
	}
	if ids == nil {
		ids = []string{}
	}
	a.reply(w, http.StatusOK, map[string]any{"op": op, "ids": ids})
}

func filterFrom(r *http.Request) (scheduler.Filter, error) {
	q := r.URL.Query()
	f := scheduler.Filter{Sender: q.Get("sender"), RcptDomain: q.Get("domain"), ClientIP: q.Get("client"), Lane: q.Get("lane")}
	if f.Lane != "" && f.Lane != scheduler.LaneNormal && f.Lane != scheduler.LaneBounce {
		return f, fmt.Errorf("lane %q: use normal or bounce", f.Lane)
	}
	if v := q.Get("older"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			if n, nerr := strconv.Atoi(v); nerr == nil {
				d = time.Duration(n) * time.Second
			} else {
				return f, fmt.Errorf("older %q: not a duration (e.g. 2h)", v)
			}
		}
		f.OlderThan = d
	}
	return f, nil
}
