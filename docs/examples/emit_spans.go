// Command emit_spans writes finished spans as span-json lines (docs/span-format.md),
// standard library only. Run `go run emit_spans.go [FILE]` for a small demo trace.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"
)

// Event is something that happened during a span.
type Event struct {
	Name       string         `json:"name"`
	TimeNanos  int64          `json:"time_unix_nano"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Span is one span-json record; End writes it.
type Span struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_span_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	StartNanos int64             `json:"start_time_unix_nano"`
	EndNanos   int64             `json:"end_time_unix_nano"`
	Attributes map[string]any    `json:"attributes,omitempty"`
	Events     []Event           `json:"events,omitempty"`
	Status     map[string]string `json:"status,omitempty"`
	Service    string            `json:"service"`
	tracer     *Tracer
}

// Tracer writes one whole JSON line per span, safe for concurrent use.
type Tracer struct {
	mu      sync.Mutex
	out     io.Writer
	service string
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Start begins a span; pass the parent span, or nil for a new trace.
func (t *Tracer) Start(name, kind string, parent *Span) *Span {
	s := &Span{Name: name, Kind: kind, SpanID: randomHex(8), Service: t.service, tracer: t,
		StartNanos: time.Now().UnixNano(), Attributes: map[string]any{}}
	if parent != nil {
		s.TraceID, s.ParentID = parent.TraceID, parent.SpanID
	} else {
		s.TraceID = randomHex(16)
	}
	return s
}

// AddEvent records an event at the current time.
func (s *Span) AddEvent(name string, attributes map[string]any) {
	s.Events = append(s.Events, Event{name, time.Now().UnixNano(), attributes})
}

// SetError marks the span as failed.
func (s *Span) SetError(message string) {
	s.Status = map[string]string{"code": "error", "message": message}
}

// End finishes the span and writes its line.
func (s *Span) End() error {
	s.EndNanos = time.Now().UnixNano()
	line, err := json.Marshal(s)
	if err != nil {
		return err
	}
	s.tracer.mu.Lock()
	defer s.tracer.mu.Unlock()
	_, err = s.tracer.out.Write(append(line, '\n'))
	return err
}

func main() {
	var out io.Writer = os.Stdout
	if len(os.Args) > 1 {
		f, err := os.OpenFile(os.Args[1], os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		out = f
	}
	tracer := &Tracer{out: out, service: "emit-spans-demo-go"}
	req := tracer.Start("GET /jobs", "server", nil)
	req.Attributes["http.method"] = "GET"
	req.AddEvent("cache miss", map[string]any{"key": "jobs:page:1"})
	db := tracer.Start("SELECT jobs", "client", req)
	db.Attributes["db.rows"] = 20
	if err := db.End(); err != nil {
		panic(err)
	}
	req.Attributes["http.status_code"] = 200
	if err := req.End(); err != nil {
		panic(err)
	}
}
