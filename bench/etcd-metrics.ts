/** etcd's Prometheus metrics (its client URL's /metrics), read and summed over the members of a cluster. */

/** One scrape of every member: metric samples by series (`name{labels}`), summed over members. */
export interface Scrape {
  /** performance.now() when taken. */
  at: number;
  series: Map<string, number>;
}

/** Scrapes `/metrics` of every endpoint (`host:port`) that answers; a member that is down adds nothing. */
export async function scrape(endpoints: string[]): Promise<Scrape> {
  const series = new Map<string, number>();
  const texts = await Promise.all(
    endpoints.map((endpoint) =>
      fetch(`http://${endpoint}/metrics`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.text())
        .catch(() => ""),
    ),
  );
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const space = line.lastIndexOf(" ");
      const name = line.slice(0, space);
      series.set(name, (series.get(name) ?? 0) + Number(line.slice(space + 1)));
    }
  }
  return { at: performance.now(), series };
}

/** The sum of the series of metric `name` whose labels contain every `label="value"` of `labels`. */
export function total(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  const wanted = Object.entries(labels).map(([label, value]) => `${label}="${value}"`);
  for (const [series, value] of scrape.series) {
    const brace = series.indexOf("{");
    if ((brace === -1 ? series : series.slice(0, brace)) !== name) continue;
    if (wanted.every((pair) => series.includes(pair))) sum += value;
  }
  return sum;
}

/** Whether any member exported metric `name`: what etcd 3.4 exports is read, not assumed. */
export const exported = (scrape: Scrape, name: string): boolean =>
  [...scrape.series.keys()].some((series) => series === name || series.startsWith(`${name}{`));

/** How much a counter grew per second between two scrapes. */
export function ratePerSecond(from: Scrape, to: Scrape, name: string, labels: Record<string, string> = {}): number {
  return (total(to, name, labels) - total(from, name, labels)) / ((to.at - from.at) / 1000);
}
