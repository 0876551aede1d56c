/**
 * The metric names a PromQL expression reads, for checking dashboards and alert rules against a live /metrics body.
 * A small lexer, not a parser: strings, label matchers, ranges and grouping label lists are removed, then every
 * identifier that is not a function call or a keyword is a metric name.
 */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'])

export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
  const names = new Set<string>()
  for (const match of stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const [, name, call] = match
    if (call || KEYWORDS.has(name!.toLowerCase())) continue
    names.add(name!)
  }
  return [...names]
}

/** The sample names a /metrics body exposes: every family, and a histogram's _bucket, _sum and _count. */
export function exposedNames(body: string): Set<string> {
  const names = new Set<string>()
  for (const [, name, type] of body.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!)
    if (type === 'histogram' || type === 'summary') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
  }
  for (const [, name] of body.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{| )/gm)) names.add(name!)
  return names
}
