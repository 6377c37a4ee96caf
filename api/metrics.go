package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Serving /metrics. Each component (a node, a hub member, the auditor's
// watch) owns a registry with its metrics and the Go runtime and process
// collectors; the API registers its own collectors (limits, the hub's HTTP
// counters) in that registry and serves it here. The global registry is
// never used: several components share a process in tests and in hcx dev.

// Bounds of a scrape: a scrape reads counters and a few badger prefix
// counts, so more than a handful at once or one taking more than the
// timeout means something is wrong; promhttp answers 503 past either.
const (
	maxScrapesInFlight = 4
	scrapeTimeout      = 10 * time.Second
)

// MetricsHandler serves reg in the Prometheus exposition format the
// scraper asks for (text by default). A collector that fails does not
// blank the scrape: the rest is served and the error logged.
func MetricsHandler(reg prometheus.Gatherer, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            scrapeLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesInFlight,
		Timeout:             scrapeTimeout,
	})
}

// scrapeLog passes promhttp's errors to slog.
type scrapeLog struct{ log *slog.Logger }

func (l scrapeLog) Println(v ...any) { l.log.Error("metrics scrape", "err", fmt.Sprint(v...)) }

// registerOnce registers c in reg and returns the collector reg holds: c,
// or the equal collector a handler built earlier over the same component
// registered (a second handler then counts into the same series rather
// than failing). Any other registration error is a programming error
// (a name registered with another type or help), found by the tests.
func registerOnce[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c
	case errors.As(err, &are):
		if prev, ok := are.ExistingCollector.(C); ok {
			return prev
		}
	}
	panic(fmt.Sprintf("api: register metrics: %v", err))
}
