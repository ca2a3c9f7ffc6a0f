// A small OpenTelemetry Go SDK program for the receiver tests: it sends spans through
// otlptracehttp to the endpoint given as the first argument, as service argv[2], traces
// argv[3] (each a server span with a client child: attributes of every type, an event with
// attributes, a link to the previous trace's root, an error status), then flushes and exits
// non-zero if the export failed.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goclient ENDPOINT_URL SERVICE TRACES")
		os.Exit(2)
	}
	traces, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", os.Args[2]),
		attribute.String("pod", "p-1"),
	)
	failed := false
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(failingExporter{exporter, &failed}),
		sdktrace.WithResource(res),
	)
	tracer := provider.Tracer("checkout-lib", trace.WithInstrumentationVersion("2.1.0"))
	var previous trace.SpanContext
	for i := 0; i < traces; i++ {
		options := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
		if previous.IsValid() {
			link := trace.Link{
				SpanContext: previous,
				Attributes:  []attribute.KeyValue{attribute.String("link.why", "retry-of")},
			}
			options = append(options, trace.WithLinks(link))
		}
		rootCtx, root := tracer.Start(ctx, fmt.Sprintf("GET /orders/%d", i), options...)
		root.SetAttributes(
			attribute.String("http.method", "GET"),
			attribute.Int("http.status_code", 200),
			attribute.Float64("ratio", 0.25),
			attribute.Bool("cached", true),
			attribute.StringSlice("tags", []string{"a", "b"}),
			attribute.Int("seq", i),
		)
		root.AddEvent("cache.miss", trace.WithAttributes(
			attribute.String("key", fmt.Sprintf("order:%d", i)),
			attribute.Int("attempt", 2),
		))
		_, child := tracer.Start(rootCtx, "SELECT orders", trace.WithSpanKind(trace.SpanKindClient))
		child.SetAttributes(attribute.String("db.system", "postgresql"))
		child.SetStatus(codes.Error, "deadlock detected")
		child.End()
		root.End()
		previous = root.SpanContext()
	}
	if err := provider.Shutdown(ctx); err != nil || failed {
		fmt.Fprintln(os.Stderr, "export failed:", err)
		os.Exit(1)
	}
}

// failingExporter remembers whether any export failed (a syncer only logs errors).
type failingExporter struct {
	sdktrace.SpanExporter
	failed *bool
}

func (e failingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		*e.failed = true
	}
	return err
}
