import type { Registry } from "prom-client";

/** Latency buckets (seconds) of `http_request_duration_seconds`. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Series {
  labels: { method: string; route: string; status: string };
  count: number;
  sum: number;
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  perBucket: Float64Array;
}

/** The shape prom-client's registry reads from a metric. */
interface CollectedMetric {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: { metricName?: string; labels?: Record<string, string | number>; value: number }[];
}

/**
 * Request counts and latencies, recorded into plain numbers and handed to
 * prom-client only when Prometheus scrapes. prom-client's own counter and
 * histogram hash their label set on every observation, which costs more on the
 * hot path than the request's gate and validation together.
 */
export class RequestMetrics {
  private readonly series = new Map<string, Series>();
  /** Requests being handled now. */
  inFlight = 0;

  /** Records one answered request. */
  record(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${route} ${status}`;
    let series = this.series.get(key);
    if (!series) {
      series = {
        labels: { method, route, status: String(status) },
        count: 0,
        sum: 0,
        perBucket: new Float64Array(BUCKETS.length + 1),
      };
      this.series.set(key, series);
    }
    series.count++;
    series.sum += seconds;
    let bucket = 0;
    while (bucket < BUCKETS.length && seconds > (BUCKETS[bucket] as number)) bucket++;
    (series.perBucket[bucket] as number)++;
  }

  /** Registers the three request metrics with `registry`. */
  register(registry: Registry): void {
    const all = () => [...this.series.values()];
    const metrics: {
      name: string;
      help: string;
      type: CollectedMetric["type"];
      values: () => CollectedMetric["values"];
    }[] = [
      {
        name: "http_requests_total",
        help: "HTTP requests answered, by method, route pattern and status.",
        type: "counter",
        values: () => all().map((s) => ({ labels: s.labels, value: s.count })),
      },
      {
        name: "http_request_duration_seconds",
        help: "HTTP request latency, by method, route pattern and status.",
        type: "histogram",
        values: () =>
          all().flatMap((s) => {
            let cumulative = 0;
            const buckets = BUCKETS.map((le, i) => {
              cumulative += s.perBucket[i] as number;
              return { metricName: `${this.histogramName}_bucket`, labels: { le, ...s.labels }, value: cumulative };
            });
            return [
              ...buckets,
              { metricName: `${this.histogramName}_bucket`, labels: { le: "+Inf", ...s.labels }, value: s.count },
              { metricName: `${this.histogramName}_sum`, labels: s.labels, value: s.sum },
              { metricName: `${this.histogramName}_count`, labels: s.labels, value: s.count },
            ];
          }),
      },
      {
        name: "http_requests_in_flight",
        help: "HTTP requests being handled.",
        type: "gauge",
        values: () => [{ value: this.inFlight }],
      },
    ];
    for (const { name, help, type, values } of metrics) {
      const metric = {
        name,
        help,
        type,
        get: async (): Promise<CollectedMetric> => ({ name, help, type, values: values() }),
      };
      // prom-client reads any object with name, help, type and get(); its types name only its own classes.
      registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
    }
  }

  private readonly histogramName = "http_request_duration_seconds";
}
